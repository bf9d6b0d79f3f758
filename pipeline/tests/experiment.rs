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

#[test]
fn every_built_in_parses() {
    for (name, _, _) in experiment::BUILTINS {
        let exp = experiment::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!exp.runs.is_empty(), "{name}");
    }
    let resnet = experiment::load("cifar10-resnet18").unwrap();
    assert_eq!(resnet.runs.len(), 6);
    assert_eq!(resnet.runs[0].target, "coarse");
    assert_eq!(resnet.runs[0].probe.labels, ["coarse", "fine"]);
    assert!(!resnet.runs[0].keep);
    assert_eq!(resnet.runs[0].c1_fraction, 0.8);
}

#[test]
fn image_tasks_validate_their_own_settings() {
    for (text, expect) in [
        ("[dataset]\ntask = \"cifar10\"\nn = 100\n", "key `dataset.n`: not a setting of task cifar10"),
        ("[dataset]\ntask = \"cifar100\"\ncoarse = [[0], [1]]\n", "dataset.coarse"),
        ("[dataset]\ntask = \"cifar10\"\ncoarse = [[0, 1], [2, 3, 4, 5, 6, 7, 8]]\n", "class 9 is in no group"),
        ("[model]\narch = \"resnet18\"\n", "resnet18 takes images"),
        ("[dataset]\ntask = \"cifar10\"\n[model]\narch = \"allcnn\"\n[probe]\nlayers = [\"hidden1\"]\n", "conv3, conv6, conv8"),
        ("[dataset]\ntask = \"cifar10\"\n[probe]\nlabels = [\"fine_beyond_coarse\"]\n", "derived from `fine` and `coarse`"),
        ("[dataset]\ntask = \"cifar10\"\n[train]\ntarget = \"color\"\n", "unknown label `color` (known: coarse, fine)"),
        ("[claims]\nc1_fraction = 1.5\n", "claims.c1_fraction"),
    ] {
        let err = rejected(text);
        assert!(err.contains(expect), "{text}: {err}");
    }
    let exp =
        parsed("[dataset]\ntask = \"cifar10\"\n[model]\narch = \"allcnn\"\nwidth_mult = 0.25\n");
    assert_eq!(exp.runs[0].input, [32, 32, 3]);
    assert_eq!(exp.runs[0].model.channels(96), 24);
}

#[test]
fn image_data_must_be_found_before_anything_runs() {
    let mut exp = experiment::load("cifar100-allcnn").unwrap();
    let err = experiment::locate_data(&mut exp, None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("built-in cifar100-allcnn: "), "{err}");
    assert!(
        err.contains("cifar-100-binary/ with train.bin and test.bin, or cifar-100-binary.tar.gz"),
        "{err}"
    );
    assert!(err.contains("--data DIR or UINFO_DATA"), "{err}");
    let mut checkerboard = experiment::load("checkerboard").unwrap();
    assert!(experiment::locate_data(&mut checkerboard, None).is_ok());
}
