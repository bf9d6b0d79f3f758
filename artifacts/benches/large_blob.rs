//! One large blob (1 GiB; `LARGE_BLOB_MIB` to change) through store put, push and pull, to a
//! `file://` remote and to S3 (the loopback SeaweedFS server of `scripts/s3-local.sh`, started
//! if `AWS_ENDPOINT` is unset), with its digest checked after each pull. Each phase runs in a
//! child process (this binary again) that reports its peak resident memory (`VmHWM`); the
//! bench fails if a phase peaks at 300 MB or more.
//!
//! `cargo bench -p artifacts --bench large_blob`

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use artifacts::remote::{Remote, Silent, DEFAULT_JOBS, DEFAULT_PART_SIZE};
use artifacts::{canonical_key, Digest, Manifest, Provenance, Store};

/// Peak resident memory allowed to any phase.
#[path = "../tests/support/mod.rs"]
mod support;

const LIMIT_BYTES: u64 = 300_000_000;

/// Environment variable naming the phase a child process runs.
const PHASE: &str = "LARGE_BLOB_PHASE";

fn mib() -> u64 {
    std::env::var("LARGE_BLOB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn key() -> Digest {
    canonical_key(&serde_json::json!({ "bench": "large_blob", "mib": mib() }))
}

fn arg(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"))
}

/// Runs one phase (in a child) and prints `seconds bytes peak_kib`.
fn child(phase: &str) {
    let store = || Store::open(Path::new(&arg("LARGE_BLOB_STORE"))).unwrap();
    let remote = || {
        let r = Remote::open("bench", &arg("LARGE_BLOB_URL")).unwrap();
        r.check().unwrap();
        r
    };
    let clock = Instant::now();
    let bytes = match phase {
        "idle" => {
            let (_s, _r) = (store(), remote());
            0
        }
        "put" => {
            let s = store();
            let src = PathBuf::from(arg("LARGE_BLOB_SRC"));
            let d = s.put_file(&src).unwrap();
            let m = Manifest {
                key: key(),
                stage: "bench".into(),
                stage_version: 1,
                params: serde_json::json!({}),
                inputs: BTreeMap::new(),
                outputs: BTreeMap::from([("blob".to_string(), d)]),
                sizes: BTreeMap::from([("blob".to_string(), s.blob_size(&d))]),
                provenance: Provenance::now_for("large", "bench", SystemTime::now(), "bench"),
            };
            s.put_manifest(&m).unwrap();
            s.blob_size(&d)
        }
        "push" => {
            let s = store();
            let m = s.get_manifest(&key()).unwrap().unwrap();
            let sent = remote().push(&s, &[m], &Silent).unwrap();
            assert_eq!(sent.objects, 2, "{sent:?}");
            sent.bytes
        }
        "pull" => {
            let s = store();
            let r = remote();
            let (manifests, problems) = r.get_manifests(&[key()]).unwrap();
            assert!(problems.is_empty() && manifests.len() == 1, "{problems:?}");
            let got = r.pull(&s, &manifests, &Silent).unwrap();
            assert!(got.problems.is_empty(), "{:?}", got.problems);
            got.bytes
        }
        "verify" => {
            let s = store();
            let d: Digest = arg("LARGE_BLOB_DIGEST").parse().unwrap();
            s.verify_blob(&d).unwrap();
            s.blob_size(&d)
        }
        other => panic!("unknown phase {other}"),
    };
    let seconds = clock.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    println!("{seconds} {bytes} {peak_kib}");
}

struct Row {
    phase: &'static str,
    backend: String,
    seconds: f64,
    bytes: u64,
    peak: u64,
}

/// Runs `phase` in a child process with the given settings.
fn run(phase: &'static str, backend: &str, env: &[(&str, String)]) -> Row {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(PHASE, phase)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "phase {phase} ({backend}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    Row {
        phase,
        backend: backend.to_string(),
        seconds: f[0].parse().unwrap(),
        bytes: f[1].parse().unwrap(),
        peak: f[2].parse::<u64>().unwrap() * 1024,
    }
}

/// Writes `mib` MiB of xorshift bytes to `path`, 1 MiB at a time.
fn random_file(path: &Path, mib: u64) {
    let mut out = std::fs::File::create(path).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        out.write_all(&chunk).unwrap();
    }
}

fn main() {
    if let Ok(phase) = std::env::var(PHASE) {
        child(&phase);
        return;
    }
    if std::env::var_os("AWS_ENDPOINT").is_none() {
        support::s3_env();
    }
    let mib = mib();
    let base = std::env::var_os("LARGE_BLOB_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let t = tmp.path();
    let src = t.join("src.bin");
    random_file(&src, mib);
    let digest = Digest::of_file(&src).unwrap();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let file_dir = t.join("remote");
    std::fs::create_dir_all(&file_dir).unwrap();
    let s3_prefix = format!("bench-large-{nanos}");
    let backends = [
        ("file", format!("file://{}", file_dir.display())),
        ("s3", format!("s3://cache/{s3_prefix}")),
    ];
    let path = |p: &Path| p.display().to_string();
    let a = t.join("a");
    let mut env = vec![("LARGE_BLOB_MIB", mib.to_string())];
    env.push(("LARGE_BLOB_DIGEST", digest.hex()));
    env.push(("LARGE_BLOB_SRC", path(&src)));
    let with = |store: &Path, url: &str| {
        let mut e = env.clone();
        e.push(("LARGE_BLOB_STORE", path(store)));
        e.push(("LARGE_BLOB_URL", url.to_string()));
        e
    };

    let mut rows = vec![run("idle", "-", &with(&t.join("idle"), &backends[0].1))];
    rows.push(run("put", "local", &with(&a, &backends[0].1)));
    let stored = Store::open(&a)
        .unwrap()
        .get_manifest(&key())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.outputs["blob"], digest,
        "store put changed the digest"
    );
    for (backend, url) in &backends {
        let b = t.join(format!("b-{backend}"));
        rows.push(run("push", backend, &with(&a, url)));
        rows.push(run("pull", backend, &with(&b, url)));
        rows.push(run("verify", backend, &with(&b, url)));
        let pulled = Store::open(&b)
            .unwrap()
            .get_manifest(&key())
            .unwrap()
            .unwrap();
        assert_eq!(pulled.outputs["blob"], digest);
        assert_eq!(
            Digest::of_file(&Store::open(&b).unwrap().blob_path(&digest)).unwrap(),
            digest
        );
        std::fs::remove_dir_all(&b).unwrap();
    }

    println!(
        "{mib} MiB blob; part size {} MiB, {DEFAULT_JOBS} jobs; peak RSS = VmHWM of the phase's process",
        DEFAULT_PART_SIZE >> 20
    );
    println!(
        "{:<7} {:<6} {:>8} {:>8} {:>14}",
        "phase", "target", "seconds", "MB/s", "peak RSS MiB"
    );
    for r in &rows {
        let rate = if r.bytes == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", r.bytes as f64 / 1e6 / r.seconds)
        };
        println!(
            "{:<7} {:<6} {:>8.2} {:>8} {:>14.1}",
            r.phase,
            r.backend,
            r.seconds,
            rate,
            r.peak as f64 / f64::from(1 << 20)
        );
    }
    let worst = rows.iter().max_by_key(|r| r.peak).unwrap();
    assert!(
        worst.peak < LIMIT_BYTES,
        "{} ({}) peaked at {} bytes, over {LIMIT_BYTES}",
        worst.phase,
        worst.backend,
        worst.peak
    );
    println!("digest intact: {}", digest.short());
    cleanup_s3(&s3_prefix);
}

/// Deletes the bench's objects from the S3 bucket.
fn cleanup_s3(prefix: &str) {
    use futures::{StreamExt, TryStreamExt};
    use object_store::ObjectStore;
    let bucket = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("cache")
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let p = object_store::path::Path::from(prefix);
        let listed = bucket.list(Some(&p)).map_ok(|m| m.location).boxed();
        bucket
            .delete_stream(listed)
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
    });
}
