//! Remote requests scale with the work, not with the remote (issue 14): push and pull of the
//! tiny experiment to a remote that also holds 100,000 unrelated objects, with every request
//! counted by `artifacts::counting::Counting` around the real store (the loopback SeaweedFS
//! of `scripts/s3-local.sh`, and a `file://` directory); and push records, one per push, never
//! overwritten.

mod remote_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use artifacts::counting::Requests;
use artifacts::remote::Silent;
use artifacts::{Digest, Manifest, PushRecord, Store};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use pipeline::experiment::{self, Experiment};
use pipeline::graph::build;
use pipeline::plan::plan;
use pipeline::transfer;
use remote_support::{
    add_remote, clean_up, clone_source, push_with_uinfo, record_bytes, runtime, source, Kind,
    Target,
};
use serde_json::Value;
use uinfo_tests::{stderr, stdout, uinfo_env};

/// Unrelated objects planted on the remote before the experiment is pushed.
const UNRELATED: usize = 100_000;

/// Objects the remote's layout could hold but no experiment names: nine in ten under
/// `blobs/`, the rest under `ac/`. Written straight into the directory of a `file://` remote,
/// and as concurrent small puts to S3. Returns the seconds it took.
fn plant_unrelated(kind: Kind, target: &Target, tmp: &Path, label: &str) -> f64 {
    let clock = Instant::now();
    let rel = |i: usize| {
        let hex = Digest::of(format!("unrelated {i}").as_bytes()).hex();
        match i % 10 {
            0 => format!("ac/{hex}.json"),
            _ => format!("blobs/{hex}"),
        }
    };
    match kind {
        Kind::File => {
            let dir = tmp.join(format!("remote-{label}"));
            std::fs::create_dir_all(dir.join("blobs")).unwrap();
            std::fs::create_dir_all(dir.join("ac")).unwrap();
            for i in 0..UNRELATED {
                std::fs::write(dir.join(rel(i)), "unrelated").unwrap();
            }
        }
        Kind::S3 => runtime().block_on(async {
            let puts = (0..UNRELATED).map(|i| {
                let (objects, key) = (Arc::clone(&target.objects), target.key(&rel(i)));
                async move { objects.put(&key, PutPayload::from("unrelated")).await }
            });
            let mut done = futures::stream::iter(puts).buffer_unordered(64);
            while let Some(put) = done.next().await {
                put.unwrap();
            }
        }),
    }
    clock.elapsed().as_secs_f64()
}

/// The tiny experiment, as `uinfo` loads it.
fn tiny_experiment() -> Experiment {
    let path = source().dir.join("tiny.toml");
    let mut exp = experiment::load(path.to_str().unwrap()).unwrap();
    experiment::choose_devices(&mut exp, None, None);
    experiment::locate_data(&mut exp, None).unwrap();
    exp
}

/// The manifests of every node of `exp`, all cached in `store`.
fn manifests(exp: &Experiment, store: &Store) -> Vec<Manifest> {
    let graph = build(exp);
    let p = plan(&graph, Some(store), None).unwrap();
    let cached = p.into_cached();
    assert_eq!(
        cached.len(),
        graph.nodes.len(),
        "the source store is complete"
    );
    cached
}

/// Requests that only name objects: no listing beyond the one top-level check, nothing
/// deleted, copied or uploaded in parts (the tiny experiment's blobs are small).
fn assert_no_listing(what: &str, r: &Requests) {
    assert_eq!(r.list, 1, "{what}: one listing (the check): {r:?}");
    assert!(
        r.listed <= 3,
        "{what}: the check lists blobs/, ac/, records/: {r:?}"
    );
    assert_eq!((r.delete, r.copy, r.multipart), (0, 0, 0), "{what}: {r:?}");
}

/// Acceptance 2: with 100,000 unrelated objects on the remote, a push asks about each of the
/// experiment's objects once and sends the missing ones, a second push only asks, and a pull
/// into an empty store fetches each manifest and blob once: requests are a small multiple of
/// the experiment's objects, none of them a listing of the remote.
fn requests_scale_with_the_experiment(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "scale");
    let planted = plant_unrelated(kind, &target, t, "scale");
    let a = clone_source(t, "a");
    let exp = tiny_experiment();
    let ms = manifests(&exp, &a);
    let blobs: BTreeSet<Digest> = ms
        .iter()
        .flat_map(|m| m.outputs.values().copied())
        .collect();
    let (nodes, objects) = (ms.len() as u64, (ms.len() + blobs.len()) as u64);

    let (remote, counting) = target.counted();
    let pushed = transfer::push(Some(&exp), &a, &remote, &Silent).unwrap();
    let push = counting.requests();
    assert_eq!(pushed.transfer.objects, objects, "everything was sent");
    assert_no_listing("push", &push);
    assert_eq!(
        push.head, objects,
        "push asks about each object once: {push:?}"
    );
    assert_eq!(
        push.put,
        objects + 1,
        "and sends each, then its record: {push:?}"
    );
    assert_eq!(push.get, 0, "{push:?}");

    let (remote, counting) = target.counted();
    let again = transfer::push(Some(&exp), &a, &remote, &Silent).unwrap();
    let repush = counting.requests();
    assert_eq!(
        (again.transfer.objects, again.transfer.present),
        (0, objects)
    );
    assert_no_listing("second push", &repush);
    assert_eq!(
        (repush.head, repush.put),
        (2 * objects, 1),
        "a second push asks about each object, and again after writing the manifests about \
         those it relied on (a remote gc may have removed them meanwhile): {repush:?}"
    );

    let b = Store::open(&t.join("b")).unwrap();
    let (remote, counting) = target.counted();
    let pulled = transfer::pull(Some(&exp), &b, &remote, transfer::Bytes::All, &Silent).unwrap();
    let pull = counting.requests();
    assert!(pulled.transfer.problems.is_empty(), "{:?}", pulled.transfer);
    assert_eq!(pulled.transfer.objects, objects, "everything was fetched");
    assert_no_listing("pull", &pull);
    assert_eq!(
        pull.get, objects,
        "pull fetches each manifest and blob once: {pull:?}"
    );
    assert_eq!(
        (pull.head, pull.put),
        (0, 0),
        "sizes come from the manifests: {pull:?}"
    );
    assert!(ms.iter().all(|m| b.is_complete(m)));

    // A lazy pull (the default) fetches every manifest, the final outputs' and the tables'
    // blobs, nothing else.
    let c = Store::open(&t.join("c")).unwrap();
    let (remote, counting) = target.counted();
    let lazy = transfer::pull(Some(&exp), &c, &remote, transfer::Bytes::Needed, &Silent).unwrap();
    let lazy_pull = counting.requests();
    let finals: BTreeSet<Digest> = ms
        .iter()
        .flat_map(|m| {
            let all = m.stage == "analyze" || m.stage == "report";
            m.outputs
                .iter()
                .filter(move |(name, _)| all || name.ends_with(".parquet"))
                .map(|(_, d)| *d)
        })
        .collect();
    assert!(lazy.transfer.problems.is_empty(), "{:?}", lazy.transfer);
    assert_no_listing("lazy pull", &lazy_pull);
    assert_eq!(
        (lazy_pull.get, lazy_pull.head),
        (nodes + finals.len() as u64, 0),
        "a lazy pull fetches each manifest, the final blobs and the tables: {lazy_pull:?}"
    );
    assert_eq!(c.blobs().unwrap(), finals.into_iter().collect::<Vec<_>>());
    assert!(ms.iter().all(|m| c.is_cached(m)), "every result is cached");

    eprintln!(
        "{kind:?}: {UNRELATED} unrelated objects planted in {planted:.1} s; tiny experiment: \
         {nodes} nodes, {objects} objects; requests: push {} {push:?}, second push {} \
         {repush:?}, pull {} {pull:?}, lazy pull {} {lazy_pull:?}",
        push.total(),
        repush.total(),
        pull.total(),
        lazy_pull.total()
    );
    clean_up(kind, &target);
}

#[test]
fn s3_push_and_pull_requests_scale_with_the_experiment() {
    requests_scale_with_the_experiment(Kind::S3);
}

#[test]
fn file_push_and_pull_requests_scale_with_the_experiment() {
    requests_scale_with_the_experiment(Kind::File);
}

/// Records: two stores push the same experiment; the remote then holds two records under
/// `records/tiny/`, each named by its digest, parseable, naming every manifest of its push,
/// and the first is byte for byte what it was before the second push. A third store's
/// `run --remote --push` (which fetches every node) leaves a third, naming what it fetched.
fn each_push_leaves_its_own_record(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let target = Target::new(kind, t, "records");
    let a = clone_source(t, "a");
    let b = clone_source(t, "b");
    let first = push_with_uinfo(t, a.root(), &target);
    let first_bytes = record_bytes(&target, &first);
    let second = push_with_uinfo(t, b.root(), &target);
    assert_ne!(first, second, "each push has its own record");
    assert_eq!(
        record_bytes(&target, &first),
        first_bytes,
        "not overwritten"
    );

    let c = t.join("c");
    add_remote(t, &c, &target);
    let args = [
        "run",
        "tiny.toml",
        "--remote",
        "lab",
        "--push",
        "-q",
        "--json",
    ];
    let out = uinfo_env(t, &c, &args, &target.env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["computed"], 0, "{run}");
    let third: Digest = run["record"].as_str().unwrap().parse().unwrap();
    let c = Store::open(&c).unwrap();

    let remote = target.remote(Arc::clone(&target.objects));
    let records = remote.records(Some("tiny")).unwrap();
    let names: BTreeSet<Digest> = records.iter().map(|(d, _)| *d).collect();
    assert_eq!(names, BTreeSet::from([first, second, third]));
    let exp = tiny_experiment();
    for (store, d) in [(&a, first), (&b, second), (&c, third)] {
        let keys: BTreeSet<Digest> = manifests(&exp, store).iter().map(|m| m.key).collect();
        let (_, r): &(Digest, PushRecord) = records.iter().find(|(n, _)| *n == d).unwrap();
        assert_eq!(r.experiment.as_deref(), Some("tiny"));
        assert_eq!(
            r.manifests,
            keys,
            "record {} names its push's manifests",
            d.short()
        );
        let blobs: BTreeSet<Digest> = manifests(&exp, store)
            .iter()
            .flat_map(|m| m.outputs.values().copied())
            .collect();
        assert_eq!(r.blobs.keys().copied().collect::<BTreeSet<_>>(), blobs);
        assert!(humantime_like(&r.pushed), "{}", r.pushed);
    }
    assert!(
        remote.records(None).unwrap().is_empty(),
        "no whole-store push"
    );
    clean_up(kind, &target);
}

/// RFC 3339 UTC with milliseconds, e.g. `2025-01-01T00:00:00.000Z`.
fn humantime_like(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

#[test]
fn s3_each_push_leaves_its_own_record() {
    each_push_leaves_its_own_record(Kind::S3);
}

#[test]
fn file_each_push_leaves_its_own_record() {
    each_push_leaves_its_own_record(Kind::File);
}
