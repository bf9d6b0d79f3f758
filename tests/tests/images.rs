//! The image half of the paper on the CPU: CIFAR-format files written by the test, small
//! `allcnn` and `resnet18` networks trained on the coarse label, coarse, fine and
//! `fine_beyond_coarse` measured at every probed layer, C1 and C5 judged, and the report drawn.

use std::path::Path;

use stages::table::Table;
use uinfo_tests::{stderr, stdout, uinfo_env, write_cifar};

fn env(data: &Path) -> Vec<(String, String)> {
    vec![("UINFO_DATA".into(), data.display().to_string())]
}

fn table(store: &Path, exp: &str, name: &str) -> Table {
    Table::from_parquet(&std::fs::read(store.join(format!("out/{exp}/{name}.parquet"))).unwrap())
        .unwrap()
}

const CIFAR10: &str = "name = \"small-cifar10\"
[dataset]
task = \"cifar10\"
[model]
arch = [\"allcnn\", \"resnet18\"]
width_mult = 0.0625
[train]
seeds = 2
epochs = 4
lr = [0.05, 0.005]
batch = 32
momentum = 0.9
weight_decay = 5e-4
checkpoints = [0, 1, 2, 4]
[probe]
steps = 100
[extract]
train_examples = 300
";

#[test]
fn a_small_cifar10_experiment_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_cifar(&data, false, 400, 100, 1);
    std::fs::write(dir.path().join("small.toml"), CIFAR10).unwrap();
    let store = dir.path().join("store");
    let o = uinfo_env(
        dir.path(),
        &store,
        &["run", "-q", "-j", "2", "small.toml"],
        &env(&data),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let usable = table(&store, "small-cifar10", "usable_info");
    let (layer, label) = (usable.str("layer").unwrap(), usable.str("label").unwrap());
    for l in [
        "conv3", "conv6", "conv8", "layer1", "layer2", "layer3", "layer4",
    ] {
        for lb in ["coarse", "fine", "fine_beyond_coarse"] {
            assert!(
                (0..usable.rows()).any(|i| layer[i] == l && label[i] == lb),
                "no {lb} rows at {l}"
            );
        }
    }
    let claims = table(&store, "small-cifar10", "claims");
    let (id, verdict) = (claims.str("claim").unwrap(), claims.str("verdict").unwrap());
    let of = |c: &str| verdict[id.iter().position(|i| i == c).unwrap()].clone();
    eprintln!("{}", claims.str("measured").unwrap().join("\n"));
    assert_eq!(of("C1"), "holds");
    assert_ne!(of("C5"), "not evaluated");
    assert_eq!(of("C2"), "not evaluated", "C5 is C2's image counterpart");
    let report = std::fs::read_to_string(store.join("out/small-cifar10/report.md")).unwrap();
    assert!(report.contains("compare-conv8-layer4"), "{report}");
    assert!(report.contains("fine_beyond_coarse"), "{report}");
}

const CIFAR100: &str = "name = \"small-cifar100\"
[dataset]
task = \"cifar100\"
[model]
arch = \"allcnn\"
width_mult = 0.0625
[train]
seeds = 1
epochs = 2
lr = 0.05
batch = [32, 128]
checkpoints = [0, 1, 2]
[probe]
steps = 50
[extract]
keep = false
";

#[test]
fn cifar100_runs_with_extraction_fused_into_probing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_cifar(&data, true, 300, 100, 2);
    std::fs::write(dir.path().join("small.toml"), CIFAR100).unwrap();
    let store = dir.path().join("store");
    let o = uinfo_env(
        dir.path(),
        &store,
        &["--json", "run", "-q", "small.toml"],
        &env(&data),
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let dag = uinfo_env(dir.path(), &store, &["--json", "dag", "small.toml"], &[]);
    let nodes: serde_json::Value = serde_json::from_slice(&dag.stdout).unwrap();
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["stage"] != "extract"),
        "keep = false stores no representations"
    );
    let usable = table(&store, "small-cifar100", "usable_info");
    let (label, h) = (
        usable.str("label").unwrap(),
        usable.f64("h_y_bits").unwrap(),
    );
    let fine_beyond = (0..usable.rows())
        .find(|&i| label[i] == "fine_beyond_coarse")
        .unwrap();
    let fine = (0..usable.rows()).find(|&i| label[i] == "fine").unwrap();
    let coarse = (0..usable.rows()).find(|&i| label[i] == "coarse").unwrap();
    assert!((h[fine_beyond] - (h[fine] - h[coarse])).abs() < 1e-12);
    assert!(
        h[fine] > 5.5 && h[coarse] > 3.5,
        "100 and 20 classes: {} {}",
        h[fine],
        h[coarse]
    );
}

#[test]
fn the_dataset_is_keyed_by_its_files_contents_not_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_cifar(&data, false, 100, 20, 3);
    let text = CIFAR10
        .replace("arch = [\"allcnn\", \"resnet18\"]", "arch = \"allcnn\"")
        .replace("lr = [0.05, 0.005]", "lr = 0.05")
        .replace("seeds = 2", "seeds = 1")
        .replace("epochs = 4", "epochs = 1")
        .replace("checkpoints = [0, 1, 2, 4]", "checkpoints = [0, 1]");
    std::fs::write(dir.path().join("small.toml"), text).unwrap();
    let store = dir.path().join("store");
    let run = |data: &Path| {
        let o = uinfo_env(
            dir.path(),
            &store,
            &["--json", "run", "-q", "small.toml"],
            &env(data),
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let first = run(&data);
    assert_eq!(first["computed"], first["nodes"]);
    let moved = dir.path().join("elsewhere");
    std::fs::rename(&data, &moved).unwrap();
    assert_eq!(
        run(&moved)["computed"],
        0,
        "moving the folder reruns nothing"
    );
    let batch = moved.join("cifar-10-batches-bin/data_batch_2.bin");
    let mut bytes = std::fs::read(&batch).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&batch, bytes).unwrap();
    let again = run(&moved);
    // Everything but the initial weights, which do not read the data.
    assert_eq!(
        again["computed"].as_u64().unwrap(),
        again["nodes"].as_u64().unwrap() - 1,
        "one changed byte reruns everything downstream: {again}"
    );
}

#[test]
fn bad_data_exits_2_naming_the_file_and_leaves_the_store_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_cifar(&data, false, 50, 10, 4);
    std::fs::write(dir.path().join("small.toml"), CIFAR10).unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("keep.txt"), "store contents").unwrap();
    let folder = data.join("cifar-10-batches-bin");
    let fails = |data: &Path, expect: &[&str]| {
        let before = uinfo_tests::snapshot(&store);
        let o = uinfo_env(dir.path(), &store, &["run", "small.toml"], &env(data));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{}{err}", stdout(&o));
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for e in expect {
            assert!(err.contains(e), "expected `{e}` in: {err}");
        }
        assert_eq!(uinfo_tests::snapshot(&store), before, "the store changed");
    };
    fails(
        &dir.path().join("missing"),
        &[
            "missing: no such folder",
            "data_batch_1.bin",
            "cifar-10-binary.tar.gz",
        ],
    );
    let batch3 = folder.join("data_batch_3.bin");
    let good = std::fs::read(&batch3).unwrap();
    std::fs::remove_file(&batch3).unwrap();
    fails(&data, &["data_batch_3.bin: missing"]);
    std::fs::write(&batch3, &good[..good.len() - 7]).unwrap();
    fails(
        &data,
        &[
            "data_batch_3.bin",
            "not a whole number of 3073-byte records",
        ],
    );
    let mut bad = good.clone();
    bad[3073] = 10;
    std::fs::write(&batch3, bad).unwrap();
    fails(
        &data,
        &["data_batch_3.bin: record 1 has label 10, expected 0 to 9"],
    );
    let o = uinfo_env(dir.path(), &store, &["run", "small.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--data DIR or UINFO_DATA"),
        "{}",
        stderr(&o)
    );
}
