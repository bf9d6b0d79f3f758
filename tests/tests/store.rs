//! Store maintenance through the CLI: `verify` finds a flipped byte, the run that reads the blob
//! refuses it, `verify --repair` restores a store whose next run gives the original results; `gc`
//! removes exactly what no kept experiment reaches; `verify --recompute` finds the stages
//! deterministic.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use uinfo_tests::{
    process_uid, shared_tempdir, snapshot, stderr, stdout, tiny, uinfo, uinfo_as_nobody,
};

fn run_ok(dir: &Path, store: &Path, file: &str) -> Value {
    let o = uinfo(dir, store, &["--json", "run", file]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn blob_of(dir: &Path, store: &Path, node: &str, output: &str) -> std::path::PathBuf {
    let o = uinfo(dir, store, &["--json", "show", node]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["files"][output].as_str().unwrap().into()
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupt_blob_is_reported_refused_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    run_ok(dir.path(), &store, "tiny.toml");
    let original = std::fs::read(store.join("out/tiny/usable_info.parquet")).unwrap();
    let ok = uinfo(dir.path(), &store, &["verify"]);
    assert!(ok.status.success(), "{}", stdout(&ok));

    let reps = blob_of(
        dir.path(),
        &store,
        "extract/batch=32,seed=1/e2",
        "representations.safetensors",
    );
    flip_byte(&reps, 5000);
    let v = uinfo(dir.path(), &store, &["verify"]);
    assert_eq!(v.status.code(), Some(1));
    assert!(stdout(&v).contains("corrupt blob"), "{}", stdout(&v));

    // A changed decoder makes the probes read the representations again: the corrupt one is refused.
    std::fs::write(dir.path().join("changed.toml"), tiny("", "lr = 0.02")).unwrap();
    let o = uinfo(dir.path(), &store, &["run", "changed.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("probe/batch=32,seed=1/e2/linear") && stdout(&o).contains("corrupt"),
        "{}",
        stdout(&o)
    );

    let r = uinfo(dir.path(), &store, &["verify", "--repair"]);
    assert!(r.status.success(), "{}", stdout(&r));
    assert!(store.join("quarantine").read_dir().unwrap().count() == 1);
    assert!(uinfo(dir.path(), &store, &["verify"]).status.success());
    let again = run_ok(dir.path(), &store, "tiny.toml");
    assert!(again["computed"].as_u64().unwrap() >= 1, "{again}");
    assert_eq!(
        std::fs::read(store.join("out/tiny/usable_info.parquet")).unwrap(),
        original
    );
}

#[test]
fn gc_removes_exactly_what_no_kept_experiment_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    let other = tiny("", "")
        .replace("name = \"tiny\"", "name = \"other\"")
        .replace("n = 2000", "n = 1500");
    std::fs::write(dir.path().join("other.toml"), other).unwrap();
    run_ok(dir.path(), &store, "tiny.toml");
    run_ok(dir.path(), &store, "other.toml");
    let count = |sub: &str| walk(&store.join(sub)).len();
    let (blobs, manifests) = (count("blobs"), count("ac"));

    // One node of the experiment about to be forgotten is pinned: it and its outputs stay.
    let pinned = uinfo(dir.path(), &store, &["pin", "train/batch=32,seed=0/e0-1"]);
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let shown = uinfo(
        dir.path(),
        &store,
        &["--json", "show", "train/batch=32,seed=0/e0-1"],
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let pinned_blobs: Vec<String> = shown["manifest"]["outputs"]
        .as_object()
        .unwrap()
        .values()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let dry = uinfo(
        dir.path(),
        &store,
        &["--json", "gc", "--dry-run", "--forget", "other"],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert!(
        dry["blobs"].as_u64().unwrap() > 0 && dry["bytes"].as_u64().unwrap() > 0,
        "{dry}"
    );
    assert_eq!(
        (count("blobs"), count("ac")),
        (blobs, manifests),
        "a dry run deleted something"
    );

    let gc = uinfo(dir.path(), &store, &["--json", "gc", "--forget", "other"]);
    assert!(gc.status.success(), "{}", stderr(&gc));
    let gc: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["blobs"], dry["blobs"]);

    let record: Value =
        serde_json::from_slice(&std::fs::read(store.join("experiments/tiny.json")).unwrap())
            .unwrap();
    let reachable: BTreeSet<String> = record["nodes"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|e| {
            e["outputs"]
                .as_object()
                .unwrap()
                .values()
                .map(|d| d.as_str().unwrap().to_string())
        })
        .collect();
    let left: BTreeSet<String> = walk(&store.join("blobs"))
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    let mut expected = reachable.clone();
    expected.extend(pinned_blobs);
    assert_eq!(left, expected);
    assert_eq!(
        count("blobs"),
        blobs - gc["blobs"].as_u64().unwrap() as usize
    );

    let o = uinfo(dir.path(), &store, &["run", "tiny.toml"]);
    assert!(stdout(&o).contains("nothing to do"), "{}", stdout(&o));
    assert!(uinfo(dir.path(), &store, &["verify"]).status.success());
    let unknown = uinfo(dir.path(), &store, &["gc", "--forget", "never-run"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn sampled_recomputation_finds_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    run_ok(dir.path(), &store, "tiny.toml");
    let o = uinfo(
        dir.path(),
        &store,
        &["--json", "verify", "--recompute", "12"],
    );
    assert!(o.status.success(), "{}", stdout(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let re = v["recomputed"].as_array().unwrap();
    assert_eq!(re.len(), 12);
    assert!(
        re.iter()
            .all(|r| r["differing"].as_array().unwrap().is_empty()),
        "{v}"
    );
}

#[test]
fn recomputation_covers_every_node_and_can_be_aimed_at_the_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    let nodes = run_ok(dir.path(), &store, "tiny.toml")["nodes"]
        .as_u64()
        .unwrap();
    let recompute = |extra: &[&str]| -> Vec<(String, Vec<Value>)> {
        let mut args = vec!["--json", "verify", "--recompute"];
        args.extend(extra);
        let o = uinfo(dir.path(), &store, &args);
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["recomputed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["node"].as_str().unwrap().to_string(),
                    r["differing"].as_array().unwrap().clone(),
                )
            })
            .collect()
    };
    let aimed = recompute(&["--stage", "analyze", "--stage", "report"]);
    let names: Vec<&str> = aimed.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, ["analyze", "report"]);
    let all = recompute(&["-j", "2"]);
    assert_eq!(all.len() as u64, nodes, "every node is recomputed");
    let differing: Vec<_> = all.iter().filter(|r| !r.1.is_empty()).collect();
    assert!(differing.is_empty(), "{differing:?}");
    let one_run = recompute(&["--run", "batch=256,seed=1", "--stage", "train"]);
    assert_eq!(one_run.len(), 4, "{one_run:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    uinfo_tests::snapshot(dir)
        .into_iter()
        .map(|(p, _, _)| p)
        .collect()
}

#[test]
fn a_full_disk_fails_the_node_cleanly_and_leaves_a_valid_store() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    // A 3 MB file system: the dataset and checkpoints fit, the representations do not.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        assert_ne!(
            process_uid(),
            0,
            "mounting a tmpfs failed although running as root"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let store = mnt.join("store");
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    let o = uinfo(dir.path(), &store, &["run", "-j", "1", "tiny.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("No space left on device"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        std::fs::read_dir(store.join("tmp")).unwrap().count(),
        0,
        "partial files left in tmp/"
    );
    let v = uinfo(dir.path(), &store, &["verify"]);
    assert!(v.status.success(), "{}{}", stdout(&v), stderr(&v));
}

#[test]
fn gc_as_a_user_who_cannot_read_the_records_refuses_and_deletes_nothing() {
    if process_uid() != 0 {
        eprintln!("skipped: switching to an unprivileged user needs root");
        return;
    }
    let dir = shared_tempdir();
    let store = dir.path().join("store");
    std::fs::write(
        dir.path().join("tiny.toml"),
        tiny("", "").replace("seeds = 2", "seeds = 1"),
    )
    .unwrap();
    run_ok(dir.path(), &store, "tiny.toml");
    // The store belongs to `nobody`, except that its records folder cannot be listed: as on a
    // shared filesystem where another member's permissions hide it.
    let chown = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(chown.success());
    use std::os::unix::fs::PermissionsExt;
    let records = store.join("experiments");
    std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o000)).unwrap();
    let before = snapshot(&store);
    let o = uinfo_as_nobody(dir.path(), &store, &["gc"]);
    std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{}{err}", stdout(&o));
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("experiments") && err.contains("nothing was deleted"),
        "{err}"
    );
    assert_eq!(snapshot(&store), before, "gc deleted something");
}
