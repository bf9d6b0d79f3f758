//! Blobs larger than the part size through a `file://` remote: multipart pushes, ranged pulls,
//! and uploads aborted on a corrupt source leaving no object.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use artifacts::remote::{Fetch, Remote, Silent};
use artifacts::{Digest, Store, StoreError};

mod support;

use support::{corrupt_blob, store_with_blob, MIB};

fn file_remote(dir: &Path, part: usize, jobs: usize) -> Remote {
    let url = format!("file://{}", dir.display());
    Remote::open("lab", &url)
        .unwrap()
        .with_part_size(part)
        .with_jobs(jobs)
}

/// Every file under `dir`, relative, sorted (staging files of uploads included).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn tmp_is_empty(store: &Store) -> bool {
    std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn multipart_push_and_ranged_pull_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, m) = store_with_blob(tmp.path(), 40 * MIB + 123, "large");
    let d = m.outputs["blob"];
    let dir = tmp.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();

    // One part in memory at a time: a part waiting for the budget must not block the others.
    let pushed = file_remote(&dir, MIB, 1)
        .push(&a, std::slice::from_ref(&m), &Silent)
        .unwrap();
    assert_eq!((pushed.objects, pushed.present), (2, 0));
    assert!(pushed.bytes > 40 * MIB as u64);
    let on_remote = dir.join("blobs").join(d.hex());
    assert_eq!(Digest::of_file(&on_remote).unwrap(), d);
    assert_eq!(
        files_under(&dir),
        vec![
            format!("ac/{}.json", m.key.hex()),
            format!("blobs/{}", d.hex())
        ]
    );

    let again = file_remote(&dir, MIB, 4)
        .push(&a, std::slice::from_ref(&m), &Silent)
        .unwrap();
    assert_eq!((again.objects, again.present), (0, 2));

    let remote = file_remote(&dir, 3 * MIB, 4);
    let b = Store::open(&tmp.path().join("b")).unwrap();
    let (manifests, problems) = remote.get_manifests(&[m.key]).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let pulled = remote.pull(&b, &manifests, &Silent).unwrap();
    assert!(pulled.problems.is_empty(), "{:?}", pulled.problems);
    assert_eq!(pulled.objects, 2);
    b.verify_blob(&d).unwrap();
    let mode = std::fs::metadata(b.blob_path(&d))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o444);
    assert!(b.is_complete(&m));
    assert!(tmp_is_empty(&b));

    // `fetch` does not list the remote: the blob's size comes from the manifest.
    let c = Store::open(&tmp.path().join("c")).unwrap();
    match remote.fetch(&c, &m.key).unwrap() {
        Fetch::Fetched(got) => assert_eq!(*got, m),
        other => panic!("{other:?}"),
    }
    c.verify_blob(&d).unwrap();
    assert!(tmp_is_empty(&c));
}

#[test]
fn corrupt_source_aborts_the_upload_leaving_no_object() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, m) = store_with_blob(tmp.path(), 40 * MIB, "large");
    let d = m.outputs["blob"];
    // One flipped byte in the last part: every part is sent before the content is found bad.
    corrupt_blob(&a, &d, 10);

    let dir = tmp.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();
    let remote = file_remote(&dir, 4 * MIB, 3);
    let e = remote
        .push(&a, std::slice::from_ref(&m), &Silent)
        .unwrap_err();
    assert!(
        e.to_string().contains("corrupt") && e.to_string().contains(&d.short()),
        "{e}"
    );
    assert!(
        files_under(&dir).is_empty(),
        "left on the remote: {:?}",
        files_under(&dir)
    );
    assert_eq!(remote.manifest_keys().unwrap(), vec![]);
    let b = Store::open(&tmp.path().join("b")).unwrap();
    assert!(matches!(remote.fetch(&b, &m.key).unwrap(), Fetch::Absent));

    // Blobs named in `replace` take the same path.
    let e = remote
        .push_one(&a, &m, &std::collections::BTreeSet::from([d]))
        .unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(files_under(&dir).is_empty(), "{:?}", files_under(&dir));
}

#[test]
fn missing_local_blob_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, m) = store_with_blob(tmp.path(), 2 * MIB, "large");
    let d = m.outputs["blob"];
    a.remove_blob(&d).unwrap();
    let dir = tmp.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();
    let e = file_remote(&dir, MIB, 2)
        .push(&a, std::slice::from_ref(&m), &Silent)
        .unwrap_err();
    assert!(
        matches!(&e, artifacts::remote::RemoteError::Local(StoreError::Missing { digest, .. }) if *digest == d),
        "{e:?}"
    );
}

#[test]
fn corrupt_remote_blob_is_refused_by_a_ranged_pull() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, m) = store_with_blob(tmp.path(), 10 * MIB + 1, "large");
    let d = m.outputs["blob"];
    let dir = tmp.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();
    let remote = file_remote(&dir, MIB, 4);
    remote.push(&a, std::slice::from_ref(&m), &Silent).unwrap();
    let on_remote = dir.join("blobs").join(d.hex());
    let mut bytes = std::fs::read(&on_remote).unwrap();
    bytes[5 * MIB] ^= 1;
    std::fs::write(&on_remote, bytes).unwrap();

    let b = Store::open(&tmp.path().join("b")).unwrap();
    let pulled = remote.pull(&b, std::slice::from_ref(&m), &Silent).unwrap();
    assert_eq!(pulled.problems.len(), 2, "{:?}", pulled.problems);
    assert!(
        pulled.problems[0].contains("corrupt"),
        "{:?}",
        pulled.problems
    );
    assert!(!b.has_blob(&d));
    assert!(b.get_manifest(&m.key).unwrap().is_none());
    assert!(tmp_is_empty(&b));
    match remote.fetch(&b, &m.key).unwrap() {
        Fetch::Rejected { bad, .. } => assert_eq!(bad, vec![d]),
        other => panic!("{other:?}"),
    }
    assert!(tmp_is_empty(&b));
}
