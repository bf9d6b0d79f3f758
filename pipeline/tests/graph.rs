//! Expansion of experiments into DAGs, checked directly on the graph.

use pipeline::experiment::{self, parse};
use pipeline::graph::build;
use pipeline::stage::Stage;

fn count(g: &pipeline::graph::Graph, stage: Stage) -> usize {
    g.nodes.iter().filter(|n| n.stage == stage).count()
}

#[test]
fn the_default_experiment_has_372_nodes() {
    let g = build(&experiment::load("checkerboard").unwrap());
    // 6 runs of 20 segments; per seed one init and one epoch-0 extract and probe that both
    // batch sizes share, and per run 20 more of each.
    assert_eq!(count(&g, Stage::Dataset), 1);
    assert_eq!(count(&g, Stage::Init), 3);
    assert_eq!(count(&g, Stage::Train), 120);
    assert_eq!(count(&g, Stage::Extract), 3 + 6 * 20);
    assert_eq!(count(&g, Stage::Probe), 3 + 6 * 20);
    assert_eq!(g.nodes.len(), 372);
}

#[test]
fn parents_come_first_and_the_analysis_reads_every_probe_and_log() {
    let g = build(&experiment::load("checkerboard").unwrap());
    for n in &g.nodes {
        assert!(n.inputs.iter().all(|i| i.node < n.id), "{}", n.name);
    }
    let analyze = g.find("analyze").unwrap();
    let probes = analyze
        .inputs
        .iter()
        .filter(|i| i.name.starts_with("probe/"))
        .count();
    let logs = analyze
        .inputs
        .iter()
        .filter(|i| i.name.starts_with("log/"))
        .count();
    assert_eq!(probes, 6 * 21, "one probe table per run and checkpoint");
    assert_eq!(logs, 6 * 20, "one log per run and segment");
    let report = g.find("report").unwrap();
    assert!(report.inputs.iter().all(|i| i.node == analyze.id));
}

#[test]
fn runs_that_share_a_first_phase_share_its_segments() {
    let exp = parse(
        "[train]\nseeds = 1\n[[train.phases]]\nepochs = 4\nbatch = 32\n[[train.phases]]\nepochs = [2, 6]\nbatch = 256\n",
        "t.toml",
        "t",
    )
    .unwrap();
    let g = build(&exp);
    let first_phase: Vec<&str> = g
        .nodes
        .iter()
        .filter(|n| n.stage == Stage::Train && n.name.ends_with("e0-1"))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(first_phase.len(), 1, "{first_phase:?}");
    // Shared: the 4 segments of phase one, and the second phase up to epoch 6 (the shorter
    // run's end); then the longer run's segments 6-8 and 8-10.
    assert_eq!(count(&g, Stage::Train), 4 + 2 + 2);
}

#[test]
fn the_null_setting_changes_the_first_seeds_probes_only() {
    let text = "[train]\nseeds = 2\nepochs = 2\ncheckpoints = [0, 1, 2]\n";
    let plain = build(&parse(text, "a.toml", "a").unwrap());
    let null = build(
        &parse(
            &format!("{text}[probe]\nnull = \"first-seed\"\n"),
            "a.toml",
            "a",
        )
        .unwrap(),
    );
    assert_eq!(plain.nodes.len(), null.nodes.len());
    for (a, b) in plain.nodes.iter().zip(&null.nodes) {
        assert_eq!(a.name, b.name);
        // The report also records the experiment file's text.
        let changed =
            b.stage == Stage::Probe && b.name.contains("seed=0") || b.stage == Stage::Report;
        assert_eq!(a.params != b.params, changed, "{}", a.name);
    }
}
