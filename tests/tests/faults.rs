//! Faults: `uinfo run` killed with SIGKILL at random moments leaves a valid store and a rerun
//! gives the same tables as an uninterrupted run; several processes running one experiment on
//! one store compute every node exactly once between them and agree on the results.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use uinfo_tests::{stderr, stdout, tiny, uinfo, uinfo_bin};

/// The digests of every table of an experiment (each is a function of its node's key).
fn table_digests(store: &Path, name: &str) -> Vec<String> {
    ["usable_info", "summary", "claims", "training_log"]
        .iter()
        .map(|t| {
            blake3::hash(&std::fs::read(store.join(format!("out/{name}/{t}.parquet"))).unwrap())
                .to_hex()
                .to_string()
        })
        .collect()
}

fn experiment() -> String {
    tiny("", "")
        .replace("seeds = 2", "seeds = 1")
        .replace("n = 2000", "n = 1000")
}

fn reference(dir: &Path) -> Vec<String> {
    let store = dir.join("reference");
    let o = uinfo(dir, &store, &["run", "-q", "tiny.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    table_digests(&store, "tiny")
}

#[test]
fn sigkill_at_random_moments_never_damages_the_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), experiment()).unwrap();
    let clock = std::time::Instant::now();
    let expected = reference(dir.path());
    let full = clock.elapsed().as_millis() as u64;
    // Moments from a fixed-seed linear congruential generator, spread over a whole run (dataset,
    // training, extraction, probing, analysis, report), until 30 runs were killed mid-way.
    let mut state: u64 = 0x5eed;
    let (mut killed, mut trial) = (0, 0);
    while killed < 30 && trial < 120 {
        trial += 1;
        let store = dir.path().join(format!("store{trial}"));
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis((state >> 33) % full.max(1));
        let mut child = Command::new(uinfo_bin())
            .current_dir(dir.path())
            .args(["--store", store.to_str().unwrap(), "run", "-q", "tiny.toml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        if store.exists() {
            let v = uinfo(dir.path(), &store, &["verify"]);
            assert!(
                v.status.success(),
                "store invalid after a kill at {delay:?}: {}{}",
                stdout(&v),
                stderr(&v)
            );
        }
        let o = uinfo(dir.path(), &store, &["run", "-q", "tiny.toml"]);
        assert!(
            o.status.success(),
            "rerun after a kill at {delay:?}: {}",
            stderr(&o)
        );
        assert_eq!(
            table_digests(&store, "tiny"),
            expected,
            "tables after a kill at {delay:?}"
        );
        std::fs::remove_dir_all(&store).unwrap();
    }
    assert_eq!(
        killed, 30,
        "only {killed} of {trial} runs were killed before finishing"
    );
}

#[test]
fn concurrent_runs_compute_each_node_once_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), experiment()).unwrap();
    let expected = reference(dir.path());
    for processes in [2, 4] {
        let store = dir.path().join(format!("store{processes}"));
        let children: Vec<_> = (0..processes)
            .map(|_| {
                Command::new(uinfo_bin())
                    .current_dir(dir.path())
                    .args([
                        "--store",
                        store.to_str().unwrap(),
                        "--json",
                        "run",
                        "-j",
                        "2",
                        "tiny.toml",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut computed = 0;
        let mut nodes = 0;
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            computed += v["computed"].as_u64().unwrap();
            nodes = v["nodes"].as_u64().unwrap();
        }
        assert_eq!(
            computed, nodes,
            "{processes} processes computed {computed} nodes for {nodes}"
        );
        assert_eq!(table_digests(&store, "tiny"), expected);
    }
}

#[test]
fn a_diverging_run_is_reported_recorded_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let text = experiment().replace("batch = [32, 256]", "batch = 32\nlr = [0.05, 1000000.0]");
    std::fs::write(dir.path().join("tiny.toml"), text).unwrap();
    let store = dir.path().join("store");
    let o = uinfo(dir.path(), &store, &["run", "tiny.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "warning: run lr=1000000,seed=0 diverged: training diverged: loss is NaN at epoch 1"
        ),
        "{out}"
    );
    let report = std::fs::read_to_string(store.join("out/tiny/report.md")).unwrap();
    assert!(
        report.contains("## Diverged runs") && report.contains("`lr=1000000,seed=0`"),
        "{report}"
    );
    // In usable_info the healthy run has a measurement at every checkpoint; the diverged run's
    // rows after its divergence are marked and carry none.
    let bytes = std::fs::read(store.join("out/tiny/usable_info.parquet")).unwrap();
    let usable = stages::table::Table::from_parquet(&bytes).unwrap();
    let (ids, status, bits) = (
        usable.str("run_id").unwrap(),
        usable.str("status").unwrap(),
        usable.f64("bits").unwrap(),
    );
    for i in 0..usable.rows() {
        if ids[i].starts_with("lr=0.05") {
            assert!(
                status[i] == "ok" && bits[i].is_finite(),
                "row {i}: {} {}",
                status[i],
                bits[i]
            );
        }
    }
    let marked = (0..usable.rows())
        .filter(|&i| ids[i].starts_with("lr=1000000") && status[i].starts_with("diverged"))
        .count();
    assert!(marked > 0 && (0..usable.rows()).all(|i| status[i] == "ok" || bits[i].is_nan()));
    let summary = stages::table::Table::from_parquet(
        &std::fs::read(store.join("out/tiny/summary.parquet")).unwrap(),
    )
    .unwrap();
    assert!(
        summary
            .str("config")
            .unwrap()
            .iter()
            .all(|c| c == "lr=0.05"),
        "diverged runs are left out of the summary"
    );
}
