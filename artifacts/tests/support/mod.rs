//! What the large-blob tests and benches share: pseudo-random files, a store holding one blob,
//! a corrupted blob, and the loopback S3 server's environment.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use artifacts::{canonical_key, Digest, Manifest, Provenance, Store};

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// `len` pseudo-random bytes (xorshift, distinct per `seed`).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `len` pseudo-random bytes (xorshift, distinct per `seed`) to `path` in 1 MiB chunks.
pub fn random_file(path: &Path, seed: u64, len: usize) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut chunk = vec![0u8; MIB];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB);
        for b in chunk[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        out.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

/// A store in `dir/a` holding one blob of `len` pseudo-random bytes (checked against its
/// digest) and a manifest naming it, keyed by `label` and `len`.
pub fn store_with_blob(dir: &Path, len: usize, label: &str) -> (Store, Manifest) {
    let store = Store::open(&dir.join("a")).unwrap();
    let src = dir.join("src.bin");
    random_file(&src, len as u64, len);
    let d = store.put_file(&src).unwrap();
    assert_eq!(d, Digest::of_file(&src).unwrap());
    let m = Manifest {
        key: canonical_key(&serde_json::json!({ label: len })),
        stage: "test".into(),
        stage_version: 1,
        params: serde_json::json!({}),
        inputs: BTreeMap::new(),
        outputs: BTreeMap::from([("blob".to_string(), d)]),
        sizes: BTreeMap::from([("blob".to_string(), len as u64)]),
        provenance: Provenance::now_for("large", "test", SystemTime::now(), "test"),
    };
    assert!(store.put_manifest(&m).unwrap());
    (store, m)
}

/// Flips one bit of a stored blob, `back` bytes before its end.
pub fn corrupt_blob(store: &Store, d: &Digest, back: usize) {
    let path = store.blob_path(d);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - back;
    bytes[at] ^= 1;
    std::fs::write(&path, bytes).unwrap();
}

/// Starts the loopback S3 server (`scripts/s3-local.sh`, a no-op when it runs) and sets its
/// AWS environment in this process (while single-threaded), for its children to inherit.
pub fn s3_env() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-local.sh");
    let status = Command::new("bash").arg(&script).status().unwrap();
    assert!(status.success(), "{} failed", script.display());
    let run = std::env::var("S3_LOCAL_RUN").unwrap_or_else(|_| "/run/s3-local".into());
    let text = std::fs::read_to_string(Path::new(&run).join("env")).unwrap();
    for (k, v) in text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
    {
        std::env::set_var(k, v);
    }
}
