//! Devices on a machine without a usable GPU, with the CPU build: cuda nodes are refused before
//! anything runs (exit 2, one line naming the node and why), yet they can be planned, and the
//! device never changes what the CPU computed.

use std::path::Path;

use uinfo_tests::{snapshot, stderr, stdout, tiny, uinfo, uinfo_env};

/// A store holding the results of a one-seed, one-batch tiny experiment run on the CPU.
fn cpu_results(dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let small = tiny("", "")
        .replace("seeds = 2", "seeds = 1")
        .replace("batch = [32, 256]", "batch = 256");
    std::fs::write(dir.join("ok.toml"), small).unwrap();
    let o = uinfo(dir, &store, &["run", "-q", "ok.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    store
}

fn env(k: &str, v: &str) -> Vec<(String, String)> {
    vec![(k.to_string(), v.to_string())]
}

/// Runs and expects exit 2 with one line containing each of `expect`, the store untouched.
fn refused(dir: &Path, store: &Path, args: &[&str], vars: &[(String, String)], expect: &[&str]) {
    let before = snapshot(store);
    let o = uinfo_env(dir, store, args, vars);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    let first = err.lines().next().unwrap_or_default();
    let rest = err.lines().skip(1).filter(|l| !l.is_empty());
    // Past the message, only clap's pointer to --help.
    assert!(
        rest.clone().all(|l| l.contains("--help")),
        "one message: {err}"
    );
    for e in expect {
        assert!(first.contains(e), "expected `{e}` in: {err}");
    }
    assert_eq!(snapshot(store), before, "the store changed");
}

#[test]
fn cuda_nodes_without_the_cuda_build_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = cpu_results(d);
    let without = "built without the `cuda` feature";
    refused(
        d,
        &store,
        &["run", "--device", "cuda", "ok.toml"],
        &[],
        &["node train/", "cuda:0", "cuda-f32", without],
    );
    refused(
        d,
        &store,
        &["run", "ok.toml"],
        &env("UINFO_DEVICE", "cuda:1"),
        &["cuda:1", without],
    );
    std::fs::write(
        d.join("gpu.toml"),
        std::fs::read_to_string(d.join("ok.toml"))
            .unwrap()
            .replace("[train]", "[train]\ndevice = \"cuda\""),
    )
    .unwrap();
    refused(
        d,
        &store,
        &["run", "gpu.toml"],
        &[],
        &["node train/", without],
    );
    // The command line wins over the file: on the CPU only the report (it shows the file's
    // text) is not cached already.
    let o = uinfo(d, &store, &["status", "--device", "cpu", "gpu.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let to_run: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| l.starts_with("run "))
        .map(str::to_string)
        .collect();
    assert_eq!(to_run.len(), 1, "{to_run:?}");
    assert!(to_run[0].starts_with("run     report"), "{to_run:?}");
}

#[test]
fn bad_device_names_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = cpu_results(d);
    refused(
        d,
        &store,
        &["run", "--device", "gpu", "ok.toml"],
        &[],
        &["gpu", "cuda:N"],
    );
    refused(
        d,
        &store,
        &["run", "ok.toml"],
        &env("UINFO_DEVICE", "tpu"),
        &["UINFO_DEVICE", "tpu"],
    );
    let text = std::fs::read_to_string(d.join("ok.toml")).unwrap();
    std::fs::write(
        d.join("bad.toml"),
        text.replace("[probe]", "[probe]\ndevice = \"cuda\""),
    )
    .unwrap();
    refused(
        d,
        &store,
        &["run", "bad.toml"],
        &[],
        &["bad.toml", "probe.device", "CPU only"],
    );
    std::fs::write(
        d.join("bad.toml"),
        text.replace("[train]", "[train]\ndevice = \"cuda:x\""),
    )
    .unwrap();
    refused(
        d,
        &store,
        &["run", "bad.toml"],
        &[],
        &["bad.toml", "train.device", "cuda:x"],
    );
}

#[test]
fn cuda_nodes_can_be_planned_without_a_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = cpu_results(d);
    let o = uinfo(d, &store, &["status", "--device", "cuda", "ok.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("[cuda:0]: "),
        "train nodes are to run on the GPU: {out}"
    );
    assert!(
        out.contains("run     probe/"),
        "probes are to run (their inputs will change): {out}"
    );
    let o = uinfo(
        d,
        &store,
        &["--json", "status", "--device", "cuda", "ok.toml"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = uinfo(d, &store, &["dag", "--device", "cuda:3", "ok.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_device_check_without_a_gpu_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let o = uinfo(dir.path(), &store, &["check-device", "--device", "cuda:2"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
    assert!(
        err.contains("cuda:2") && err.contains("`cuda` feature"),
        "{err}"
    );
}
