//! Blobs larger than the part size through the loopback SeaweedFS S3 server
//! (`scripts/s3-local.sh`, started here if it is not running): multipart pushes, ranged pulls,
//! an upload aborted on a corrupt source leaving no object, a corrupt remote blob refused.
//! One test in this binary, as it sets the AWS environment of the process.

use std::process::Command;
use std::time::SystemTime;

use artifacts::remote::{Remote, Silent};
use artifacts::Store;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

mod support;

use support::{corrupt_blob, random_bytes, s3_env, store_with_blob, MIB};

/// The multipart uploads in progress under `prefix` (ListMultipartUploads), as XML.
fn uploads_in_progress(prefix: &str) -> String {
    let env = |k: &str| std::env::var(k).unwrap();
    let out = Command::new("curl")
        .args(["-sSf", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", env("AWS_REGION")))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--user"])
        .arg(format!(
            "{}:{}",
            env("AWS_ACCESS_KEY_ID"),
            env("AWS_SECRET_ACCESS_KEY")
        ))
        .arg(format!(
            "{}/cache?prefix={prefix}&uploads=",
            env("AWS_ENDPOINT")
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.contains("ListMultipartUploadsResult"), "{xml}");
    xml
}

#[test]
fn s3_large_blobs() {
    s3_env();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("test-large-{}-{nanos}", std::process::id());
    let bucket = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("cache")
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listed = |under: &str| -> Vec<String> {
        let p = ObjectPath::from(format!("{prefix}/{under}"));
        rt.block_on(async {
            use futures::TryStreamExt;
            let metas: Vec<_> = bucket.list(Some(&p)).try_collect().await.unwrap();
            metas.into_iter().map(|m| m.location.to_string()).collect()
        })
    };
    let open = |part: usize, jobs: usize| {
        Remote::open("lab", &format!("s3://cache/{prefix}"))
            .unwrap()
            .with_part_size(part)
            .with_jobs(jobs)
    };

    // 40 MiB in 5 MiB parts (S3's smallest), pushed with two parts in flight at most.
    let tmp = tempfile::tempdir().unwrap();
    let (a, m) = store_with_blob(tmp.path(), 40 * MIB + 7, "large-s3");
    let d = m.outputs["blob"];
    let pushed = open(5 * MIB, 2)
        .push(&a, std::slice::from_ref(&m), &Silent)
        .unwrap();
    assert_eq!((pushed.objects, pushed.present), (2, 0));
    assert_eq!(
        listed("blobs/"),
        vec![format!("{prefix}/blobs/{}", d.hex())]
    );
    let remote = open(6 * MIB, 4);
    let b = Store::open(&tmp.path().join("b")).unwrap();
    let pulled = remote.pull(&b, std::slice::from_ref(&m), &Silent).unwrap();
    assert!(pulled.problems.is_empty(), "{:?}", pulled.problems);
    b.verify_blob(&d).unwrap();
    assert!(b.is_complete(&m));

    // A corrupt local blob: all parts go out, then the upload is aborted; no object appears.
    let tmp2 = tempfile::tempdir().unwrap();
    let (c, m2) = store_with_blob(tmp2.path(), 12 * MIB, "large-s3");
    let d2 = m2.outputs["blob"];
    corrupt_blob(&c, &d2, 1);
    let e = open(5 * MIB, 4)
        .push(&c, std::slice::from_ref(&m2), &Silent)
        .unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    let head = rt.block_on(bucket.head(&ObjectPath::from(format!("{prefix}/blobs/{}", d2.hex()))));
    assert!(
        matches!(head, Err(object_store::Error::NotFound { .. })),
        "{head:?}"
    );
    assert_eq!(listed("blobs/").len(), 1);
    assert_eq!(listed("ac/").len(), 1);
    let pending = uploads_in_progress(&prefix);
    assert!(
        !pending.contains("<Upload>"),
        "parts left behind: {pending}"
    );

    // A corrupt remote blob is refused by a ranged pull and leaves nothing behind.
    let key = ObjectPath::from(format!("{prefix}/blobs/{}", d.hex()));
    let bad = random_bytes(1, 40 * MIB + 7);
    rt.block_on(bucket.put(&key, PutPayload::from(bad)))
        .unwrap();
    let e2 = Store::open(&tmp.path().join("e")).unwrap();
    let pulled = remote.pull(&e2, std::slice::from_ref(&m), &Silent).unwrap();
    assert!(
        pulled.problems.iter().any(|p| p.contains("corrupt")),
        "{:?}",
        pulled.problems
    );
    assert!(!e2.has_blob(&d));
    assert!(std::fs::read_dir(e2.root().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}
