//! The paper's effect, end to end on a reduced default experiment (4 seeds, 100 epochs, 4,000
//! examples, 9 checkpoints, the last hidden layer): small-batch SGD with weight decay first
//! encodes colour and then discards it while large-batch SGD keeps it (C2 and C3 hold); without
//! weight decay the colour information is not discarded (C2 does not hold).

use std::path::Path;

use stages::table::Table;
use uinfo_tests::{stderr, uinfo};

fn reduced(weight_decay: &str) -> String {
    format!(
        "name = \"reduced\"\n[dataset]\nn = 4000\n[train]\nseeds = 4\nepochs = 100\nlr = 0.05\n\
         batch = [32, 1024]\nweight_decay = {weight_decay}\ncheckpoints = [0, 1, 2, 3, 5, 10, 25, 50, 100]\n\
         [probe]\nlabels = [\"color\", \"direction\"]\nlayers = [\"hidden3\"]\n"
    )
}

/// Runs the reduced experiment and returns (claim, verdict, condition outcomes) per claim.
fn verdicts(dir: &Path, weight_decay: &str) -> Vec<(String, String, Vec<String>)> {
    std::fs::write(dir.join("reduced.toml"), reduced(weight_decay)).unwrap();
    let store = dir.join("store");
    let o = uinfo(dir, &store, &["run", "-q", "-j", "2", "reduced.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let claims =
        Table::from_parquet(&std::fs::read(store.join("out/reduced/claims.parquet")).unwrap())
            .unwrap();
    let (id, verdict, outcome) = (
        claims.str("claim").unwrap(),
        claims.str("verdict").unwrap(),
        claims.str("outcome").unwrap(),
    );
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    for i in 0..claims.rows() {
        if out.last().is_none_or(|c| c.0 != id[i]) {
            out.push((id[i].clone(), verdict[i].clone(), Vec::new()));
        }
        out.last_mut().unwrap().2.push(outcome[i].clone());
    }
    out
}

fn verdict<'a>(
    all: &'a [(String, String, Vec<String>)],
    claim: &str,
) -> &'a (String, String, Vec<String>) {
    all.iter().find(|c| c.0 == claim).unwrap()
}

#[test]
fn with_weight_decay_colour_is_encoded_then_discarded_only_with_small_batches() {
    let dir = tempfile::tempdir().unwrap();
    let all = verdicts(dir.path(), "5e-3");
    assert_eq!(verdict(&all, "C1").1, "holds", "{all:?}");
    assert_eq!(verdict(&all, "C2").1, "holds", "{all:?}");
    assert_eq!(verdict(&all, "C3").1, "holds", "{all:?}");
}

#[test]
fn without_weight_decay_colour_is_not_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let all = verdicts(dir.path(), "0.0");
    let c2 = verdict(&all, "C2");
    assert_eq!(c2.1, "does not hold", "{all:?}");
    // Colour still rises; it is the discarding that fails.
    assert_eq!(c2.2.first().map(String::as_str), Some("pass"), "{c2:?}");
    assert_eq!(c2.2.last().map(String::as_str), Some("fail"), "{c2:?}");
    assert_eq!(verdict(&all, "C1").1, "holds", "{all:?}");
}
