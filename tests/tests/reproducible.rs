//! The default experiment is reproducible: two stores computing it with one and with two
//! workers hold byte-identical tables, and recomputing every node of one finds no difference.
//! It runs the full default experiment three times (6 minutes here), so it is ignored by
//! default: `cargo test --release -p uinfo-tests --test reproducible -- --ignored`.

use serde_json::Value;
use uinfo_tests::{stderr, stdout, uinfo};

const TABLES: [&str; 4] = ["usable_info", "summary", "claims", "training_log"];

#[test]
#[ignore = "runs the default experiment three times (6 minutes)"]
fn the_default_experiment_gives_the_same_bytes_with_one_or_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let tables = |jobs: &str| {
        let store = dir.path().join(format!("store-j{jobs}"));
        let o = uinfo(dir.path(), &store, &["run", "-q", "-j", jobs]);
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes: Vec<Vec<u8>> = TABLES
            .iter()
            .map(|t| std::fs::read(store.join(format!("out/checkerboard/{t}.parquet"))).unwrap())
            .collect();
        (store, bytes)
    };
    let (store, one) = tables("1");
    let (_, two) = tables("2");
    for (name, (a, b)) in TABLES.iter().zip(one.iter().zip(&two)) {
        assert!(a == b, "{name}.parquet differs between -j 1 and -j 2");
    }
    let o = uinfo(
        dir.path(),
        &store,
        &["--json", "verify", "--recompute", "-j", "2"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let recomputed = v["recomputed"].as_array().unwrap();
    assert_eq!(
        recomputed.len(),
        372,
        "every node, analyze and report included"
    );
    let differing: Vec<&Value> = recomputed
        .iter()
        .filter(|r| !r["differing"].as_array().unwrap().is_empty())
        .collect();
    assert!(differing.is_empty(), "{differing:?}");
}
