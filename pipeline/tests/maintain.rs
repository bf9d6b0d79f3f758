//! Store maintenance called directly: gc never mistakes roots it cannot read for no roots.

use artifacts::Store;
use pipeline::maintain::gc;

#[test]
fn gc_refuses_when_its_roots_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let blob = store.put_bytes(b"a result some experiment needs").unwrap();
    // The records folder replaced by a file: listing it fails, as an I/O error would.
    let records = dir.path().join("experiments");
    std::fs::remove_dir(&records).unwrap();
    std::fs::write(&records, "not a folder").unwrap();
    let err = gc(&store, false, &[]).unwrap_err().to_string();
    assert!(err.contains("nothing was deleted"), "{err}");
    assert!(err.contains("experiments"), "names the path: {err}");
    assert!(store.has_blob(&blob));
}
