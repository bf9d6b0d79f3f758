//! Remote requests scale with the work, not with the remote (issue 14): push and pull of the
//! tiny experiment to a remote that also holds 100,000 unrelated objects, with every request
//! counted by `artifacts::counting::Counting` around the real store (the loopback SeaweedFS
//! of `scripts/s3-local.sh`, and a `file://` directory); and push records, one per push, never
//! overwritten.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use artifacts::counting::{Counting, Requests};
use artifacts::remote::{file_store, Remote, Silent};
use artifacts::{Digest, Manifest, PushRecord, Store};
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pipeline::experiment::{self, Experiment};
use pipeline::graph::build;
use pipeline::plan::{plan, State};
use pipeline::transfer;
use serde_json::Value;
use uinfo_tests::{s3_env, stderr, stdout, tiny, uinfo_env};

/// Unrelated objects planted on the remote before the experiment is pushed.
const UNRELATED: usize = 100_000;

#[derive(Clone, Copy, Debug)]
enum Kind {
    S3,
    File,
}

/// A remote for one test, with the real object store behind it.
struct Target {
    url: String,
    /// The real store: the S3 bucket, or the directory.
    objects: Arc<dyn ObjectStore>,
    /// The remote's prefix inside `objects`.
    prefix: String,
    /// The environment `uinfo` needs to reach it.
    env: Vec<(String, String)>,
}

impl Target {
    fn new(kind: Kind, tmp: &Path, label: &str) -> Target {
        match kind {
            Kind::S3 => {
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let prefix = format!("test-{label}-{}-{nanos}", std::process::id());
                Target {
                    url: format!("s3://cache/{prefix}"),
                    objects: s3_bucket(),
                    prefix,
                    env: s3_env().to_vec(),
                }
            }
            Kind::File => {
                let dir = tmp.join(format!("remote-{label}"));
                std::fs::create_dir_all(&dir).unwrap();
                Target {
                    url: format!("file://{}", dir.display()),
                    objects: Arc::new(file_store(&dir).unwrap()),
                    prefix: String::new(),
                    env: Vec::new(),
                }
            }
        }
    }

    /// A remote over `objects` as given (e.g. counted).
    fn remote(&self, objects: Arc<dyn ObjectStore>) -> Remote {
        Remote::from_store("lab", &self.url, objects, &self.prefix).unwrap()
    }

    /// A remote whose requests `counting` counts.
    fn counted(&self) -> (Remote, Arc<Counting>) {
        let counting = Arc::new(Counting::new(Arc::clone(&self.objects)));
        (self.remote(counting.clone()), counting)
    }

    fn key(&self, rel: &str) -> ObjectPath {
        match self.prefix.as_str() {
            "" => ObjectPath::from(rel),
            p => ObjectPath::from(format!("{p}/{rel}")),
        }
    }
}

/// The `cache` bucket of the loopback S3 server, configured from its environment the way
/// `AmazonS3Builder::from_env` would be, without touching this process's environment.
fn s3_bucket() -> Arc<dyn ObjectStore> {
    let mut builder = AmazonS3Builder::new().with_bucket_name("cache");
    for (k, v) in s3_env() {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, v);
        }
    }
    Arc::new(builder.build().unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

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

/// Deletes everything under an S3 test prefix (bulk deletes).
fn clean_up(kind: Kind, target: &Target) {
    if let Kind::S3 = kind {
        runtime().block_on(async {
            let prefix = ObjectPath::from(target.prefix.as_str());
            let listed = target.objects.list(Some(&prefix));
            let paths = listed.map(|meta| meta.map(|m| m.location)).boxed();
            let deleted: Vec<_> = target.objects.delete_stream(paths).collect().await;
            assert!(deleted.iter().all(Result::is_ok));
        });
    }
}

/// A store with the tiny experiment computed once per test binary; tests work on copies.
struct Source {
    dir: PathBuf,
    store: PathBuf,
}

fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("uinfo-remote-scale")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(dir.join("tiny.toml"), tiny("", "")).unwrap();
        let store = dir.join("store");
        let out = uinfo_env(&dir, &store, &["run", "tiny.toml", "-q"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        Source { dir, store }
    })
}

/// A copy of the source store at `tmp/name`, with `tiny.toml` beside it.
fn clone_source(tmp: &Path, name: &str) -> Store {
    let dst = tmp.join(name);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&source().store)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::copy(source().dir.join("tiny.toml"), tmp.join("tiny.toml")).unwrap();
    Store::open(&dst).unwrap()
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
    let cached: Vec<Manifest> = p
        .states
        .into_iter()
        .filter_map(|s| match s {
            State::Cached(m) => Some(*m),
            State::ToRun(_) => None,
        })
        .collect();
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
    assert_eq!((repush.head, repush.put), (objects, 1), "{repush:?}");

    let b = Store::open(&t.join("b")).unwrap();
    let (remote, counting) = target.counted();
    let pulled = transfer::pull(Some(&exp), &b, &remote, &Silent).unwrap();
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

    eprintln!(
        "{kind:?}: {UNRELATED} unrelated objects planted in {planted:.1} s; tiny experiment: \
         {nodes} nodes, {objects} objects; requests: push {} {push:?}, second push {} \
         {repush:?}, pull {} {pull:?}",
        push.total(),
        repush.total(),
        pull.total()
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

/// `uinfo push tiny.toml --json` from `store`; returns the record's digest.
fn push_with_uinfo(t: &Path, store: &Path, target: &Target) -> Digest {
    let add = uinfo_env(t, store, &["remote", "add", "lab", &target.url], &[]);
    assert!(add.status.success(), "{}", stderr(&add));
    let out = uinfo_env(
        t,
        store,
        &["push", "tiny.toml", "-q", "--json"],
        &target.env,
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["record"].as_str().unwrap().parse().unwrap()
}

/// The bytes of the record `d` of the tiny experiment on the remote.
fn record_bytes(target: &Target, d: &Digest) -> Vec<u8> {
    let key = target.key(&format!("records/tiny/{}.json", d.hex()));
    runtime().block_on(async {
        let got = target.objects.get(&key).await.unwrap();
        got.bytes().await.unwrap().to_vec()
    })
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
    let add = uinfo_env(t, &c, &["remote", "add", "lab", &target.url], &[]);
    assert!(add.status.success(), "{}", stderr(&add));
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
