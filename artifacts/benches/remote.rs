//! Push and pull throughput (MB/s and objects/s) of 1,000 small and 10 large blobs, to the S3
//! server named by the AWS environment (see `bench/remote.sh`) and to a `file://` remote, with
//! a plain `std::fs::copy` of the same files in the same process as the baseline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use artifacts::remote::{Remote, Silent};
use artifacts::{canonical_key, Digest, Manifest, Provenance, Store};

#[path = "../tests/support/mod.rs"]
mod support;

use support::random_bytes;

/// Fills `store` with `count` blobs of `len` bytes and one manifest naming them all.
fn fill(store: &Store, label: &str, count: usize, len: usize) -> (Manifest, u64) {
    let mut outputs = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for i in 0..count {
        let seed = (len as u64) << 20 | i as u64;
        outputs.insert(
            format!("{i:04}"),
            store.put_bytes(&random_bytes(seed, len)).unwrap(),
        );
        sizes.insert(format!("{i:04}"), len as u64);
    }
    let key = canonical_key(&serde_json::json!({ "bench": label, "count": count, "len": len }));
    let m = Manifest {
        key,
        stage: "bench".into(),
        stage_version: 1,
        params: serde_json::json!({}),
        inputs: BTreeMap::new(),
        outputs,
        sizes,
        provenance: Provenance::now_for(label, "bench", SystemTime::now(), "bench"),
    };
    store.put_manifest(&m).unwrap();
    (m, (count * len) as u64)
}

/// Copies the blobs of `m` into `dir` with `std::fs::copy`; returns seconds.
fn copy_baseline(store: &Store, m: &Manifest, dir: &Path) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let clock = Instant::now();
    for d in m.outputs.values() {
        std::fs::copy(store.blob_path(d), dir.join(d.hex())).unwrap();
    }
    clock.elapsed().as_secs_f64()
}

fn line(target: &str, set: &str, op: &str, objects: u64, bytes: u64, secs: f64, baseline: f64) {
    println!(
        "{target:<6} {set:<13} {op:<5} {objects:>6} {:>9.1} {secs:>8.3} {:>9.1} {:>10.0} {:>8.2}",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        objects as f64 / secs,
        baseline / secs
    );
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let sets = [
        ("1000 x 4 KiB", fill(&store, "small", 1000, 4 << 10)),
        ("10 x 32 MiB", fill(&store, "large", 10, 32 << 20)),
    ];
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut targets = Vec::new();
    if std::env::var_os("AWS_ENDPOINT").is_some() {
        targets.push(("s3", format!("s3://cache/bench-{nanos}")));
    } else {
        println!("AWS_ENDPOINT is not set: S3 skipped (run bench/remote.sh)");
    }
    let dir = tmp.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();
    targets.push(("file", format!("file://{}", dir.display())));

    println!("ratio: baseline std::fs::copy seconds / these seconds (same blobs, same process)");
    println!(
        "{:<6} {:<13} {:<5} {:>6} {:>9} {:>8} {:>9} {:>10} {:>8}",
        "target", "blobs", "op", "objs", "MB", "seconds", "MB/s", "objects/s", "ratio"
    );
    for (i, (set, (m, _))) in sets.iter().enumerate() {
        let secs = copy_baseline(&store, m, &tmp.path().join(format!("copy{i}")));
        let bytes: u64 = m.outputs.values().map(|d| store.blob_size(d)).sum();
        line(
            "copy",
            set,
            "copy",
            m.outputs.len() as u64,
            bytes,
            secs,
            secs,
        );
    }
    for (target, url) in &targets {
        let remote = Remote::open("bench", url).unwrap();
        remote.check().unwrap();
        for (i, (set, (m, _))) in sets.iter().enumerate() {
            let baseline = copy_baseline(&store, m, &tmp.path().join(format!("copy-{target}-{i}")));
            let pushed = remote
                .push(&store, std::slice::from_ref(m), &Silent)
                .unwrap();
            line(
                target,
                set,
                "push",
                pushed.objects,
                pushed.bytes,
                pushed.seconds,
                baseline,
            );
            let into = Store::open(&tmp.path().join(format!("pull-{target}-{i}"))).unwrap();
            let pulled = remote
                .pull(&into, std::slice::from_ref(m), &Silent)
                .unwrap();
            assert!(pulled.problems.is_empty(), "{:?}", pulled.problems);
            line(
                target,
                set,
                "pull",
                pulled.objects,
                pulled.bytes,
                pulled.seconds,
                baseline,
            );
            let d: &Digest = m.outputs.values().next().unwrap();
            into.verify_blob(d).unwrap();
        }
    }
}
