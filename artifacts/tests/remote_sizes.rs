//! Blob sizes recorded in manifests: a pull sizes its progress from them and asks the remote
//! nothing more; a manifest in the old format (without sizes) is still pushed and pulled, its
//! blobs' sizes asked for (HEAD). Requests counted by `Counting` around a real `file://`
//! remote.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use artifacts::counting::Counting;
use artifacts::remote::{file_store, Progress, Remote, Silent};
use artifacts::{canonical_key, Manifest, Provenance, Store};

mod support;

use support::random_bytes;

/// What a transfer announced and then reported.
#[derive(Default)]
struct Recorded {
    start: Mutex<Option<(u64, u64)>>,
    bytes: AtomicU64,
}

impl Progress for Recorded {
    fn start(&self, objects: u64, bytes: u64) {
        *self.start.lock().unwrap() = Some((objects, bytes));
    }
    fn advance(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A store holding three blobs of different sizes and a manifest naming them, with their
/// sizes or (`old`) in the format written before sizes were recorded.
fn store_with_manifest(dir: &Path, old: bool) -> (Store, Manifest, u64) {
    let store = Store::open(&dir.join("a")).unwrap();
    let mut outputs = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for (i, len) in [10_000, 70_000, 1].into_iter().enumerate() {
        let name = format!("out{i}");
        outputs.insert(
            name.clone(),
            store.put_bytes(&random_bytes(i as u64, len)).unwrap(),
        );
        sizes.insert(name, len as u64);
    }
    let total = sizes.values().sum();
    let m = Manifest {
        key: canonical_key(&serde_json::json!({ "sizes": !old })),
        stage: "test".into(),
        stage_version: 1,
        params: serde_json::json!({}),
        inputs: BTreeMap::new(),
        outputs,
        sizes: if old { BTreeMap::new() } else { sizes },
        provenance: Provenance::now_for("n", "test", SystemTime::now(), "test"),
    };
    store.put_manifest(&m).unwrap();
    if old {
        let text = std::fs::read_to_string(store.manifest_path(&m.key)).unwrap();
        assert!(
            !text.contains("\"sizes\""),
            "written in the old format: {text}"
        );
    }
    (store, m, total)
}

/// Pushes the manifest to a fresh `file://` remote, then pulls it into an empty store through
/// a counted remote; returns the HEAD requests of the pull and what its progress announced.
fn push_then_pull(old: bool) -> (u64, (u64, u64), u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, m, total) = store_with_manifest(tmp.path(), old);
    let dir = tmp.path().join("remote");
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("file://{}", dir.display());
    let real = Arc::new(file_store(&dir).unwrap());
    let pushed = Remote::open("lab", &url)
        .unwrap()
        .push(&a, std::slice::from_ref(&m), &Silent)
        .unwrap();
    assert_eq!(pushed.objects, 4);

    let counting = Arc::new(Counting::new(real));
    let remote = Remote::from_store("lab", &url, counting.clone(), "").unwrap();
    let (manifests, problems) = remote.get_manifests(&[m.key]).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(manifests, vec![m.clone()], "read back as written");
    let b = Store::open(&tmp.path().join("b")).unwrap();
    let progress = Recorded::default();
    let pulled = remote.pull(&b, &manifests, &progress).unwrap();
    assert!(pulled.problems.is_empty(), "{:?}", pulled.problems);
    assert!(b.is_complete(&m));
    let announced = progress.start.lock().unwrap().expect("started");
    (counting.requests().head, announced, total, pulled.bytes)
}

#[test]
fn pull_sizes_its_progress_from_the_manifests() {
    let (heads, announced, total, pulled) = push_then_pull(false);
    assert_eq!(heads, 0, "no blob's size was asked for");
    assert_eq!(
        announced,
        (4, total),
        "3 blobs and the manifest, of {total} bytes"
    );
    assert_eq!(pulled, total);
}

#[test]
fn old_manifests_without_sizes_are_pulled_asking_each_blob_size() {
    let (heads, announced, total, pulled) = push_then_pull(true);
    assert_eq!(heads, 3, "one HEAD per blob of the old manifest");
    assert_eq!(announced, (4, total));
    assert_eq!(pulled, total);
}

#[test]
fn a_store_reads_a_manifest_written_in_the_old_format() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, m, _) = store_with_manifest(tmp.path(), true);
    let read = store.get_manifest(&m.key).unwrap().unwrap();
    assert!(read.sizes.is_empty());
    assert!(read.blobs().all(|(_, size)| size.is_none()));
    assert!(store.is_complete(&read));
}
