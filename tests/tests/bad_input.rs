//! Bad input ends with exit code 2 and one message naming the file and the key (or path), and
//! leaves the store untouched.

use std::path::Path;

use uinfo_tests::{snapshot, stderr, tiny, uinfo};

fn populated_store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let small = tiny("", "")
        .replace("seeds = 2", "seeds = 1")
        .replace("batch = [32, 256]", "batch = 256");
    std::fs::write(dir.path().join("ok.toml"), small).unwrap();
    let o = uinfo(dir.path(), &store, &["run", "-q", "ok.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, store)
}

fn rejects(dir: &Path, store: &Path, text: &str, expect: &[&str]) {
    std::fs::write(dir.join("bad.toml"), text).unwrap();
    let before = snapshot(store);
    let o = uinfo(dir, store, &["run", "bad.toml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
    assert!(err.contains("bad.toml"), "names the file: {err}");
    for e in expect {
        assert!(err.contains(e), "expected `{e}` in: {err}");
    }
    assert_eq!(snapshot(store), before, "the store changed");
}

#[test]
fn bad_experiment_files_are_rejected_before_anything_runs() {
    let (dir, store) = populated_store();
    let d = dir.path();
    rejects(d, &store, "[train\nlr = 1", &["malformed TOML", "line 1"]);
    rejects(d, &store, &tiny("lrr = 0.1", ""), &["train", "lrr"]);
    rejects(
        d,
        &store,
        &tiny("lr = \"fast\"", ""),
        &["train.lr", "string"],
    );
    rejects(d, &store, &tiny("lr = -0.1", ""), &["train.lr", "positive"]);
    rejects(
        d,
        &store,
        &tiny("", "").replace("batch = [32, 256]", "batch = [32, 5000]"),
        &["train.batch", "larger than the training split"],
    );
    rejects(
        d,
        &store,
        &tiny("", "layers = [\"hidden7\"]"),
        &["probe.layers", "hidden7"],
    );
}

#[test]
fn unwritable_store_is_a_usage_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), b"a file, not a folder").unwrap();
    std::fs::write(dir.path().join("ok.toml"), tiny("", "")).unwrap();
    let store = dir.path().join("blocker").join("store");
    let o = uinfo(dir.path(), &store, &["run", "ok.toml"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&store.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("blocker")).unwrap(),
        b"a file, not a folder"
    );
}

#[test]
fn unknown_experiment_and_stage_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = uinfo(dir.path(), &store, &["run", "no-such-experiment"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("checkerboard"),
        "lists the built-ins: {}",
        stderr(&o)
    );
    let o = uinfo(dir.path(), &store, &["status", "--stage", "bogus"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!store.exists(), "a failed command created the store");
}
