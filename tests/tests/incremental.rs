//! Make-style behaviour: a rerun computes nothing; each kind of change reruns exactly the nodes
//! it should, and `uinfo status` names them beforehand with a reason.

use std::path::Path;

use serde_json::Value;
use uinfo_tests::{stdout, tiny, uinfo};

fn run_json(dir: &Path, store: &Path, file: &str) -> Value {
    let o = uinfo(dir, store, &["--json", "run", file]);
    assert!(
        o.status.success(),
        "run failed: {}",
        uinfo_tests::stderr(&o)
    );
    serde_json::from_slice(&o.stdout).expect("json")
}

fn status_json(dir: &Path, store: &Path, file: &str) -> Vec<Value> {
    let o = uinfo(dir, store, &["--json", "status", file]);
    assert!(
        o.status.success(),
        "status failed: {}",
        uinfo_tests::stderr(&o)
    );
    serde_json::from_slice::<Vec<Value>>(&o.stdout).expect("json")
}

fn to_run(status: &[Value]) -> Vec<(String, String)> {
    status
        .iter()
        .filter(|l| l["state"] == "run")
        .map(|l| {
            (
                l["node"].as_str().unwrap().to_string(),
                l["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn setup(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), text).unwrap();
    let store = dir.path().join("store");
    let first = run_json(dir.path(), &store, "tiny.toml");
    assert_eq!(first["failed"].as_array().unwrap().len(), 0);
    assert_eq!(first["computed"], first["nodes"]);
    (dir, store)
}

#[test]
fn second_run_computes_nothing() {
    let (dir, store) = setup(&tiny("", ""));
    let o = uinfo(dir.path(), &store, &["run", "tiny.toml"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("nothing to do"), "{out}");
    assert!(out.contains("out/tiny"), "{out}");
    assert!(to_run(&status_json(dir.path(), &store, "tiny.toml")).is_empty());
}

#[test]
fn decoder_change_reruns_only_probes_and_what_reads_them() {
    let (dir, store) = setup(&tiny("", ""));
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "lr = 0.02")).unwrap();
    let plan = to_run(&status_json(dir.path(), &store, "tiny.toml"));
    // 2 seeds x 2 batches x 5 checkpoints probes, less the 2 epoch-0 probes that both batch
    // sizes share (same seed, same initial network), plus analyze and report.
    assert_eq!(plan.len(), 20, "{plan:?}");
    for (node, reason) in &plan {
        if node.starts_with("probe/") {
            assert!(
                reason.contains("decoder.lr: 0.01 -> 0.02"),
                "{node}: {reason}"
            );
        } else {
            assert!(node == "analyze" || node == "report", "{node}");
        }
    }
    let r = run_json(dir.path(), &store, "tiny.toml");
    assert_eq!(r["computed"], 20);
}

#[test]
fn more_epochs_train_only_the_new_segments() {
    let (dir, store) = setup(&tiny("", ""));
    std::fs::write(
        dir.path().join("tiny.toml"),
        tiny("", "").replace("epochs = 4", "epochs = 6"),
    )
    .unwrap();
    let plan = to_run(&status_json(dir.path(), &store, "tiny.toml"));
    let names: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
    // Per run: segment e4-6, its extract and probe; then analyze and report.
    assert_eq!(plan.len(), 4 * 3 + 2, "{names:?}");
    assert!(names.contains(&"train/batch=32,seed=0/e4-6"), "{names:?}");
    assert!(
        plan.iter()
            .filter(|p| p.0.starts_with("train/"))
            .all(|p| p.1.contains("new node")),
        "{plan:?}"
    );
    let r = run_json(dir.path(), &store, "tiny.toml");
    assert_eq!(r["computed"], 14);
}

#[test]
fn one_more_seed_runs_only_that_seed() {
    let (dir, store) = setup(&tiny("", ""));
    std::fs::write(
        dir.path().join("tiny.toml"),
        tiny("", "").replace("seeds = 2", "seeds = 3"),
    )
    .unwrap();
    let plan = to_run(&status_json(dir.path(), &store, "tiny.toml"));
    for (node, _) in &plan {
        assert!(
            node.contains("seed=2") || node == "analyze" || node == "report",
            "{node}"
        );
    }
    // One init and one epoch-0 extract and probe shared by both batch sizes; per batch size 4
    // segments and 4 extracts and probes; then analyze and report.
    assert_eq!(plan.len(), 3 + 2 * 12 + 2, "{plan:?}");
    let r = run_json(dir.path(), &store, "tiny.toml");
    assert_eq!(r["computed"], 29);
}

#[test]
fn checkpoint_added_in_the_middle_reruns_only_the_affected_stretch() {
    let base = tiny("", "").replace(
        "checkpoints = [0, 1, 2, 3, 4]",
        "checkpoints = [0, 1, 2, 4]",
    );
    let (dir, store) = setup(&base);
    std::fs::write(dir.path().join("tiny.toml"), tiny("", "")).unwrap();
    let plan = to_run(&status_json(dir.path(), &store, "tiny.toml"));
    let names: Vec<&str> = plan.iter().map(|p| p.0.as_str()).collect();
    assert!(names.contains(&"train/batch=256,seed=1/e2-3"), "{names:?}");
    assert!(names.contains(&"train/batch=256,seed=1/e3-4"), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("/e1") || n.contains("e0-") || n.ends_with("/e2")),
        "{names:?}"
    );
    let r = run_json(dir.path(), &store, "tiny.toml");
    // Per run: two segments, extract and probe at epoch 3; the epoch-4 checkpoint is
    // bit-identical, so its extract and probe are cut off early. Then analyze and report.
    assert_eq!(r["computed"], 4 * 4 + 2, "{r}");
    assert_eq!(r["cut_off"], 4 * 2, "{r}");
}

#[test]
fn experiments_share_the_nodes_where_their_dags_overlap() {
    let (dir, store) = setup(&tiny("", ""));
    // First k epochs at batch 32, then 2 epochs at batch 256: k = 0 is the tiny run's batch-256
    // start, k = 2 its batch-32 start.
    let perturb = "name = \"perturb\"\n[dataset]\nn = 2000\n[train]\nseeds = 2\n\
        [[train.phases]]\nepochs = [0, 2]\nbatch = 32\n[[train.phases]]\nepochs = 2\nbatch = 256\n\
        [probe]\nlabels = [\"color\", \"direction\"]\nsteps = 60\n";
    std::fs::write(dir.path().join("perturb.toml"), perturb).unwrap();
    let status = status_json(dir.path(), &store, "perturb.toml");
    let cached: Vec<&str> = status
        .iter()
        .filter(|l| l["state"] == "cached")
        .map(|l| l["node"].as_str().unwrap())
        .collect();
    for shared in [
        "train/epochs=0,seed=0/e0-1",
        "train/epochs=0,seed=1/e1-2",
        "train/epochs=2,seed=0/e0-1",
        "train/epochs=2,seed=1/e1-2",
    ] {
        assert!(cached.contains(&shared), "{shared} not cached: {cached:?}");
    }
    // Per seed: both k share init and 2 segments each with the tiny runs, with their extracts and probes.
    assert_eq!(
        cached.iter().filter(|n| n.starts_with("train/")).count(),
        2 * 4,
        "{cached:?}"
    );
    let r = run_json(dir.path(), &store, "perturb.toml");
    let claims = std::fs::read(store.join("out/perturb/claims.parquet")).unwrap();
    assert!(!claims.is_empty());
    assert_eq!(r["failed"].as_array().unwrap().len(), 0);
}
