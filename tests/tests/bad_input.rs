//! Bad input ends with exit code 2 and one message naming the file and the key (or path), and
//! leaves the store untouched.

use std::path::Path;

use uinfo_tests::{
    process_uid, shared_tempdir, snapshot, stderr, stdout, tiny, uinfo, uinfo_as_nobody,
};

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

#[test]
fn a_store_path_that_is_a_file_is_a_usage_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("results.txt");
    std::fs::write(&file, "my notes").unwrap();
    std::fs::write(dir.path().join("ok.toml"), tiny("", "")).unwrap();
    for args in [&["status", "ok.toml"][..], &["verify"], &["run", "ok.toml"]] {
        let o = uinfo(dir.path(), &file, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}{err}", stdout(&o));
        assert!(
            err.contains("results.txt"),
            "{args:?} names the path: {err}"
        );
    }
    let o = uinfo(dir.path(), &file, &["status", "ok.toml"]);
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"my notes");
}

#[test]
fn a_store_the_user_cannot_read_is_a_usage_error_not_an_empty_store() {
    if process_uid() != 0 {
        eprintln!("skipped: switching to an unprivileged user needs root");
        return;
    }
    let (_dir, store) = populated_store();
    let dir = shared_tempdir();
    std::fs::write(dir.path().join("ok.toml"), tiny("", "")).unwrap();
    // Root's store is private (0700): `nobody` cannot look inside.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o700)).unwrap();
    let parent = store.parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
    for args in [&["status", "ok.toml"][..], &["verify"]] {
        let o = uinfo_as_nobody(dir.path(), &store, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}{err}", stdout(&o));
        assert!(
            err.contains("cannot read store") && err.contains("Permission denied"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn zero_workers_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    for args in [
        &["run", "-j", "0"][..],
        &["verify", "--recompute", "-j", "0"],
        &["push", "-j", "0"],
    ] {
        let o = uinfo(dir.path(), &store, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("at least 1"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!store.exists());
}

#[test]
fn an_unreadable_cached_result_stops_the_run_naming_the_node() {
    let (dir, store) = populated_store();
    let o = uinfo(dir.path(), &store, &["--json", "show", "dataset"]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key = shown["manifest"]["key"].as_str().unwrap();
    let path = store.join("ac").join(&key[..2]).join(format!("{key}.json"));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, "{ truncated").unwrap();
    let before = snapshot(&store);
    for args in [&["run", "ok.toml"][..], &["status", "ok.toml"]] {
        let o = uinfo(dir.path(), &store, args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}{err}", stdout(&o));
        assert!(
            err.contains("node dataset") && err.contains("does not parse"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(snapshot(&store), before);
}
