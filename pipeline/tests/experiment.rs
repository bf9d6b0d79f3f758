//! Experiment files parsed and validated directly, without running anything.

use pipeline::experiment::{self, parse, Experiment};
use stages::analysis::ParamValue;

fn parsed(text: &str) -> Experiment {
    parse(text, "test.toml", "test").unwrap_or_else(|e| panic!("{e}"))
}

fn rejected(text: &str) -> String {
    parse(text, "test.toml", "test").unwrap_err().to_string()
}

#[test]
fn the_default_experiment_expands_to_six_runs() {
    let exp = experiment::load("checkerboard").unwrap();
    let ids: Vec<&str> = exp.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "batch=32,seed=0",
            "batch=32,seed=1",
            "batch=32,seed=2",
            "batch=1024,seed=0",
            "batch=1024,seed=1",
            "batch=1024,seed=2"
        ]
    );
    assert_eq!(exp.runs[0].checkpoints.len(), 21);
    assert_eq!(exp.runs[0].params, [("batch".into(), ParamValue::I64(32))]);
}

#[test]
fn the_null_runs_for_the_first_seed_of_each_configuration() {
    let exp =
        parsed("[train]\nseeds = [4, 2, 9]\nbatch = [32, 64]\n[probe]\nnull = \"first-seed\"\n");
    let null: Vec<(u64, bool)> = exp
        .runs
        .iter()
        .map(|r| (r.seed, r.probe.decoders.iter().all(|d| d.null)))
        .collect();
    assert_eq!(
        null,
        [
            (4, true),
            (2, false),
            (9, false),
            (4, true),
            (2, false),
            (9, false)
        ]
    );
    let all = parsed("[probe]\nnull = true\n");
    assert!(all.runs.iter().all(|r| r.probe.decoders[0].null));
    let err = rejected("[probe]\nnull = \"sometimes\"\n");
    assert!(
        err.contains("probe.null") && err.contains("first-seed"),
        "{err}"
    );
}

#[test]
fn a_sweep_mixing_integers_and_floats_is_a_float_sweep() {
    let exp = parsed("[train]\nlr = [0.1, 1]\n");
    let values: Vec<&ParamValue> = exp.runs.iter().map(|r| &r.params[0].1).collect();
    assert_eq!(values, [&ParamValue::F64(0.1), &ParamValue::F64(1.0)]);
    assert_eq!(exp.runs[1].phases[0].optimiser.lr, 1.0);
    assert_eq!(exp.runs[1].id, "lr=1,seed=0");
}

#[test]
fn a_sweep_mixing_text_and_numbers_is_rejected_naming_the_key() {
    let err = rejected("[train]\nlr = [0.1, \"fast\"]\n");
    assert!(err.starts_with("test.toml: key `train.lr`"), "{err}");
    assert!(err.contains("one type"), "{err}");
}

#[test]
fn bad_values_name_the_file_and_key() {
    for (text, expect) in [
        ("[train]\nlrr = 0.1\n", "lrr"),
        ("[train]\nlr = -1.0\n", "train.lr"),
        (
            "[train]\nepochs = 10\ncheckpoints = [0, 20]\n",
            "train.checkpoints",
        ),
        ("[probe]\nlayers = [\"hidden9\"]\n", "probe.layers"),
        ("[dataset]\ntask = \"cifar11\"\n", "dataset.task"),
        ("[train]\nbatch = 100000\n", "train.batch"),
    ] {
        let err = rejected(text);
        assert!(err.starts_with("test.toml: "), "{err}");
        assert!(err.contains(expect), "{text}: {err}");
    }
}

#[test]
fn a_swept_initial_phase_is_the_perturbation_axis() {
    let exp = parsed(
        "[train]\n[[train.phases]]\nepochs = [0, 5]\nbatch = 32\n[[train.phases]]\nepochs = 10\nbatch = 256\n",
    );
    assert_eq!(exp.runs.len(), 2);
    assert_eq!(exp.runs[0].phase_axes, ["epochs"]);
    assert_eq!(
        exp.runs[0].phases.len(),
        1,
        "a phase of 0 epochs is dropped"
    );
    assert_eq!(exp.runs[1].epochs(), 15);
}
