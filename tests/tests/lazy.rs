//! Lazy results (issue 14, "build without the bytes"): a store that runs an experiment with
//! `--remote` takes the remote's manifests and fetches only the blobs it reads (the final
//! tables, report and figures, every table, and the inputs of what it computes); `status`, `verify`, `gc`,
//! `show` and `export` tell results here from results on the remote; a remote that cannot be
//! reached when bytes are needed means computing locally, with one warning. Against the
//! loopback SeaweedFS and a `file://` directory.

mod remote_support;

use std::collections::BTreeSet;
use std::path::Path;

use artifacts::{Digest, Manifest, Store};
use pipeline::experiment;
use pipeline::graph::build;
use pipeline::plan::plan;
use remote_support::{
    add_remote, clean_up, clone_source_dir, copy_store, ok_json, outputs, push_with_uinfo, source,
    u, Kind, Target,
};
use serde_json::Value;
use uinfo_tests::{s3_read_only_env, snapshot, stderr, stdout, tiny};

/// Bytes of the blobs a store holds, as on disk.
fn blob_bytes(store: &Path) -> u64 {
    snapshot(&store.join("blobs")).iter().map(|f| f.1).sum()
}

/// Every node's manifest for the experiment in `t/tiny.toml`, all cached in `store`.
fn manifests(t: &Path, store: &Path) -> Vec<Manifest> {
    let path = t.join("tiny.toml");
    let mut exp = experiment::load(path.to_str().unwrap()).unwrap();
    experiment::choose_devices(&mut exp, None, None);
    experiment::locate_data(&mut exp, None).unwrap();
    let graph = build(&exp);
    let cached = plan(&graph, Some(&Store::open(store).unwrap()), None)
        .unwrap()
        .into_cached();
    assert_eq!(cached.len(), graph.nodes.len(), "every result is cached");
    cached
}

fn is_final(m: &Manifest) -> bool {
    m.stage == "analyze" || m.stage == "report"
}

/// The blobs a store takes with the results: the final outputs and every table.
fn always_here(ms: &[Manifest]) -> BTreeSet<Digest> {
    ms.iter()
        .flat_map(|m| {
            m.outputs
                .iter()
                .filter(|(name, _)| is_final(m) || name.ends_with(".parquet"))
                .map(|(_, d)| *d)
        })
        .collect()
}

fn outputs_of<'a>(ms: impl IntoIterator<Item = &'a Manifest>) -> BTreeSet<Digest> {
    ms.into_iter()
        .flat_map(|m| m.outputs.values().copied())
        .collect()
}

fn blobs(store: &Path) -> BTreeSet<Digest> {
    Store::open(store)
        .unwrap()
        .blobs()
        .unwrap()
        .into_iter()
        .collect()
}

/// Acceptance 1: B runs what A pushed and gets A's tables and report byte for byte while it
/// holds only their blobs; status, verify, gc, show and export know what is on the remote; a
/// changed probe setting then fetches exactly the blobs the recomputed nodes read.
fn run_without_the_bytes(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "lazy");
    let a = clone_source_dir(t, "a");
    push_with_uinfo(t, &a, &target);
    let ms = manifests(t, &a);
    let n = ms.len();

    let b = t.join("b");
    add_remote(t, &b, &target);
    let run = ok_json(
        t,
        &b,
        &target,
        &["run", "tiny.toml", "--remote", "lab", "-q"],
    );
    assert_eq!(
        (run["computed"].as_u64(), run["fetched"].as_u64()),
        (Some(0), Some(n as u64)),
        "{run}"
    );
    assert_eq!(
        outputs(&b, "tiny"),
        outputs(&a, "tiny"),
        "B's tables and report differ from A's"
    );
    assert_eq!(
        blobs(&b),
        always_here(&ms),
        "B holds the final outputs' and the tables' blobs, nothing else"
    );
    let (held, full) = (blob_bytes(&b), blob_bytes(&a));
    eprintln!("{kind:?}: B holds {held} bytes of blobs, A {full}");

    // What the store knows: here, on the remote, or missing.
    let status = ok_json(t, &b, &target, &["status", "tiny.toml"]);
    let count = |state: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["state"] == state)
            .count()
    };
    let always = always_here(&ms);
    let here = ms
        .iter()
        .filter(|m| m.outputs.values().all(|d| always.contains(d)))
        .count();
    assert_eq!(
        (count("cached"), count("remote"), count("run")),
        (here, n - here, 0),
        "{status}"
    );
    assert!(status
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "remote")
        .all(|l| l["reason"] == "on remote `lab`"));
    let verify = ok_json(t, &b, &target, &["verify", "--repair"]);
    assert_eq!(verify["on_remote"], n - here, "{verify}");
    assert!(
        verify["missing"].as_array().unwrap().is_empty()
            && verify["repaired"].as_array().unwrap().is_empty(),
        "{verify}"
    );
    let gc = ok_json(t, &b, &target, &["gc"]);
    assert_eq!(
        (gc["blobs"].as_u64(), gc["manifests"].as_u64()),
        (Some(0), Some(0)),
        "{gc}"
    );
    assert_eq!(
        manifests(t, &b).len(),
        n,
        "gc and verify --repair kept every result"
    );

    // show fetches the node's blobs; export writes the tables.
    let train = ms.iter().find(|m| m.stage == "train").unwrap();
    let shown = ok_json(t, &b, &target, &["show", &train.key.hex()]);
    assert_eq!(shown["held"], "here", "{shown}");
    let checkpoint = shown["files"]["checkpoint.safetensors"].as_str().unwrap();
    assert!(Path::new(checkpoint).is_file());
    let exported = ok_json(
        t,
        &b,
        &target,
        &["export", "tiny", t.join("exported").to_str().unwrap()],
    );
    assert!(exported.as_array().unwrap().len() > 4, "{exported}");

    // A changed probe setting: the probes, analysis and report run here and read the
    // representations, the dataset and the training logs; nothing else comes.
    let before = blobs(&b);
    std::fs::write(t.join("tiny.toml"), tiny("", "lr = 0.02")).unwrap();
    let run = ok_json(
        t,
        &b,
        &target,
        &["run", "tiny.toml", "--remote", "lab", "-q"],
    );
    let changed = manifests(t, &b);
    let computed: Vec<&Manifest> = changed
        .iter()
        .filter(|m| !ms.iter().any(|o| o.key == m.key))
        .collect();
    assert_eq!(run["computed"], computed.len(), "{run}");
    assert!(computed
        .iter()
        .all(|m| ["probe", "analyze", "report"].contains(&m.stage.as_str())));
    let read: BTreeSet<Digest> = computed
        .iter()
        .flat_map(|m| m.inputs.values().copied())
        .collect();
    let made = outputs_of(computed.iter().copied());
    let fetched: BTreeSet<Digest> = blobs(&b)
        .difference(&before)
        .copied()
        .filter(|d| !made.contains(d))
        .collect();
    let expected: BTreeSet<Digest> = read
        .difference(&made)
        .copied()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(
        fetched, expected,
        "fetched exactly what the recomputed nodes read"
    );
    let producers = |d: &Digest| {
        ms.iter()
            .find(|m| m.outputs.values().any(|o| o == d))
            .unwrap()
            .stage
            .clone()
    };
    let stages: BTreeSet<String> = fetched.iter().map(producers).collect();
    assert_eq!(
        stages,
        BTreeSet::from(["dataset".to_string(), "extract".into()]),
        "the representations and the dataset, nothing else"
    );
    assert!(u(t, &b, &target, &["verify"]).status.success());
    clean_up(kind, &target);
}

#[test]
fn s3_run_without_the_bytes() {
    run_without_the_bytes(Kind::S3);
}

#[test]
fn file_run_without_the_bytes() {
    run_without_the_bytes(Kind::File);
}

/// When the remote holding a result's bytes cannot be reached, a run that needs them computes
/// the result here, with one warning, and gets the tables a store computing everything gets;
/// with or without `--remote`.
fn unreachable_remote_means_computing_here(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut target = Target::new(kind, t, "down");
    let a = clone_source_dir(t, "a");
    push_with_uinfo(t, &a, &target);
    let lazy = t.join("lazy");
    add_remote(t, &lazy, &target);
    ok_json(
        t,
        &lazy,
        &target,
        &["run", "tiny.toml", "--remote", "lab", "-q"],
    );

    std::fs::write(t.join("tiny.toml"), tiny("", "lr = 0.02")).unwrap();
    let full = t.join("full");
    copy_store(&source().store, &full);
    ok_json(t, &full, &target, &["run", "tiny.toml", "-q"]);

    match kind {
        Kind::File => std::fs::rename(t.join("remote-down"), t.join("remote-gone")).unwrap(),
        Kind::S3 => target
            .env
            .push(("AWS_ENDPOINT".into(), "http://127.0.0.1:9".into())),
    }
    for (name, args) in [
        ("plain", vec!["run", "tiny.toml", "-q", "--json"]),
        (
            "remote",
            vec!["run", "tiny.toml", "--remote", "lab", "-q", "--json"],
        ),
    ] {
        let store = t.join(name);
        copy_store(&lazy, &store);
        let out = u(t, &store, &target, &args);
        let err = stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "{name}: one warning: {err}");
        assert!(warnings[0].contains("locally"), "{name}: {err}");
        let run: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(run["computed"].as_u64().unwrap() > 0, "{run}");
        assert!(run["failed"].as_array().unwrap().is_empty(), "{run}");
        assert_eq!(outputs(&store, "tiny"), outputs(&full, "tiny"), "{name}");
        assert!(
            u(t, &store, &target, &["verify"]).status.success(),
            "{name}"
        );
    }
    if let Kind::File = kind {
        std::fs::rename(t.join("remote-gone"), t.join("remote-down")).unwrap();
    }
    clean_up(kind, &target);
}

#[test]
fn s3_unreachable_remote_means_computing_here() {
    unreachable_remote_means_computing_here(Kind::S3);
}

#[test]
fn file_unreachable_remote_means_computing_here() {
    unreachable_remote_means_computing_here(Kind::File);
}

/// Acceptance 5: with the credentials of a SeaweedFS identity that may only read and list,
/// `run --remote` and `pull` work; `gc --remote`, which must delete, exits 1 with one line and
/// leaves the remote whole, as does a push.
#[test]
fn s3_read_only_credentials_run_and_pull_but_cannot_collect() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut target = Target::new(Kind::S3, t, "readonly");
    let a = clone_source_dir(t, "a");
    push_with_uinfo(t, &a, &target);
    target.env = s3_read_only_env();

    let b = t.join("b");
    add_remote(t, &b, &target);
    let run = ok_json(
        t,
        &b,
        &target,
        &["run", "tiny.toml", "--remote", "lab", "-q"],
    );
    assert_eq!(run["computed"], 0, "{run}");
    assert_eq!(outputs(&b, "tiny"), outputs(&a, "tiny"));
    let c = t.join("c");
    add_remote(t, &c, &target);
    let pulled = ok_json(
        t,
        &c,
        &target,
        &["pull", "tiny.toml", "-q", "--fetch", "all"],
    );
    assert!(
        pulled["problems"].as_array().unwrap().is_empty(),
        "{pulled}"
    );
    assert_eq!(manifests(t, &c).len(), manifests(t, &a).len());

    // Far in the future every push record has expired: gc must delete, and may not.
    let gc = u(
        t,
        &b,
        &target,
        &[
            "gc",
            "--remote",
            "lab",
            "--now",
            "2100-01-01T00:00:00Z",
            "--grace",
            "0s",
        ],
    );
    let err = stderr(&gc);
    assert_eq!(gc.status.code(), Some(1), "{}\n{err}", stdout(&gc));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("remote `lab`"), "{err}");
    let push = u(t, &a, &target, &["push", "tiny.toml", "-q"]);
    assert_eq!(push.status.code(), Some(1), "{}", stderr(&push));
    assert_eq!(stderr(&push).trim().lines().count(), 1, "{}", stderr(&push));
    let verify = ok_json(t, &b, &target, &["verify", "--remote", "lab"]);
    assert!(verify["missing"].as_array().unwrap().is_empty(), "{verify}");
    let fresh = t.join("fresh");
    add_remote(t, &fresh, &target);
    let run = ok_json(
        t,
        &fresh,
        &target,
        &["run", "tiny.toml", "--remote", "lab", "-q"],
    );
    assert_eq!(run["computed"], 0, "the remote is whole: {run}");
    clean_up(Kind::S3, &target);
}

/// Acceptance 1 at full size: the default experiment computed on A and pushed to SeaweedFS and
/// to a `file://` remote; an empty store B per remote runs it with `--remote`, computes
/// nothing, gets A's tables, report and figures byte for byte, and holds under 5% of A's blob
/// bytes.
#[test]
fn default_experiment_without_the_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let a = t.join("a");
    let none = Target::new(Kind::File, t, "unused");
    ok_json(t, &a, &none, &["run", "-q", "-j", "2"]);
    let full = blob_bytes(&a);
    for kind in [Kind::S3, Kind::File] {
        let target = Target::new(kind, t, "default");
        add_remote(t, &a, &target);
        ok_json(
            t,
            &a,
            &target,
            &["push", "checkerboard", "--remote", "lab", "-q"],
        );
        let b = t.join(format!("b-{kind:?}"));
        add_remote(t, &b, &target);
        let run = ok_json(t, &b, &target, &["run", "--remote", "lab", "-q"]);
        assert_eq!(run["computed"], 0, "{run}");
        assert_eq!(run["fetched"], run["nodes"], "{run}");
        let got = outputs(&b, "checkerboard");
        assert!(got.keys().any(|p| p.ends_with("summary.parquet")));
        assert!(
            got == outputs(&a, "checkerboard"),
            "{kind:?}: B's outputs differ from A's"
        );
        let held = blob_bytes(&b);
        eprintln!(
            "{kind:?}: B holds {held} bytes of blobs, A {full} ({:.2}%)",
            100.0 * held as f64 / full as f64
        );
        assert!(
            held * 20 < full,
            "{kind:?}: B holds {held} of A's {full} bytes"
        );
        let out = u(t, &a, &target, &["remote", "remove", "lab"]);
        assert!(out.status.success(), "{}", stderr(&out));
        clean_up(kind, &target);
    }
}

/// `pull` takes every manifest and the blobs of the final outputs and of every table; with
/// `--stage train` also the training nodes' blobs, and nothing else.
#[test]
fn file_pull_fetches_what_a_selector_names() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(Kind::File, t, "pull");
    let a = clone_source_dir(t, "a");
    push_with_uinfo(t, &a, &target);
    let ms = manifests(t, &a);
    let always = always_here(&ms);
    for (name, extra, stages) in [
        ("lazy", vec![], vec![]),
        ("train", vec!["--stage", "train"], vec!["train"]),
    ] {
        let store = t.join(name);
        add_remote(t, &store, &target);
        let mut args = vec!["pull", "tiny.toml", "-q"];
        args.extend(extra);
        let pulled = ok_json(t, &store, &target, &args);
        assert!(
            pulled["problems"].as_array().unwrap().is_empty(),
            "{pulled}"
        );
        assert_eq!(
            manifests(t, &store).len(),
            ms.len(),
            "{name}: every manifest"
        );
        let selected = ms.iter().filter(|m| stages.contains(&m.stage.as_str()));
        let want: BTreeSet<Digest> = always.union(&outputs_of(selected)).copied().collect();
        assert_eq!(blobs(&store), want, "{name}");
        let run = ok_json(t, &store, &target, &["run", "tiny.toml", "-q"]);
        assert_eq!(run["computed"], 0, "{name}: {run}");
    }
}
