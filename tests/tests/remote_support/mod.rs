//! What the remote tests share: a remote over the real object store (the loopback SeaweedFS
//! of `scripts/s3-local.sh`, or a `file://` directory), and copies of a store holding the tiny
//! experiment. Each test binary uses what it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use artifacts::counting::Counting;
use artifacts::remote::{file_store, Remote};
use artifacts::{Digest, Store};
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;
use uinfo_tests::{s3_env, snapshot, stderr, stdout, tiny, uinfo_env};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    S3,
    File,
}

/// A remote for one test, with the real object store behind it.
pub struct Target {
    pub url: String,
    /// The real store: the S3 bucket, or the directory.
    pub objects: Arc<dyn ObjectStore>,
    /// The remote's prefix inside `objects`.
    pub prefix: String,
    /// The environment `uinfo` needs to reach it.
    pub env: Vec<(String, String)>,
}

impl Target {
    pub fn new(kind: Kind, tmp: &Path, label: &str) -> Target {
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
    pub fn remote(&self, objects: Arc<dyn ObjectStore>) -> Remote {
        Remote::from_store("lab", &self.url, objects, &self.prefix).unwrap()
    }

    /// A remote whose requests `counting` counts.
    pub fn counted(&self) -> (Remote, Arc<Counting>) {
        let counting = Arc::new(Counting::new(Arc::clone(&self.objects)));
        (self.remote(counting.clone()), counting)
    }

    pub fn key(&self, rel: &str) -> ObjectPath {
        match self.prefix.as_str() {
            "" => ObjectPath::from(rel),
            p => ObjectPath::from(format!("{p}/{rel}")),
        }
    }
}

/// The `cache` bucket of the loopback S3 server, configured from its environment the way
/// `AmazonS3Builder::from_env` would be, without touching this process's environment.
pub fn s3_bucket() -> Arc<dyn ObjectStore> {
    let mut builder = AmazonS3Builder::new().with_bucket_name("cache");
    for (k, v) in s3_env() {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, v);
        }
    }
    Arc::new(builder.build().unwrap())
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Deletes everything under an S3 test prefix (bulk deletes).
pub fn clean_up(kind: Kind, target: &Target) {
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
pub struct Source {
    pub dir: PathBuf,
    pub store: PathBuf,
    /// The experiment's nodes.
    pub nodes: usize,
}

pub fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("uinfo-remote-source")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(dir.join("tiny.toml"), tiny("", "")).unwrap();
        let store = dir.join("store");
        let out = uinfo_env(&dir, &store, &["run", "tiny.toml", "-q", "--json"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let run: Value = serde_json::from_slice(&out.stdout).unwrap();
        let nodes = run["nodes"].as_u64().unwrap() as usize;
        Source { dir, store, nodes }
    })
}

/// A copy of the store at `from` (files, modes and times) at `to`.
pub fn copy_store(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status();
    assert!(ok.unwrap().success());
}

/// A copy of the source store at `tmp/name`, with `tiny.toml` beside it; returns its root.
pub fn clone_source_dir(tmp: &Path, name: &str) -> PathBuf {
    let dst = tmp.join(name);
    copy_store(&source().store, &dst);
    std::fs::copy(source().dir.join("tiny.toml"), tmp.join("tiny.toml")).unwrap();
    dst
}

/// Where a test's `uinfo` reaches its remote: the URL, and the environment it needs.
pub trait Reach {
    fn url(&self) -> &str;
    fn env(&self) -> &[(String, String)];
}

impl Reach for Target {
    fn url(&self) -> &str {
        &self.url
    }
    fn env(&self) -> &[(String, String)] {
        &self.env
    }
}

/// `uinfo --store STORE ARGS` in `t`, with the remote's environment.
pub fn u(t: &Path, store: &Path, r: &impl Reach, args: &[&str]) -> Output {
    uinfo_env(t, store, args, r.env())
}

/// Runs `uinfo ARGS --json`, asserts exit 0, returns the JSON it printed.
pub fn ok_json(t: &Path, store: &Path, r: &impl Reach, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = u(t, store, r, &args);
    assert!(
        out.status.success(),
        "uinfo {args:?}: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)))
}

/// Adds the remote as `lab` to the store.
pub fn add_remote(t: &Path, store: &Path, r: &impl Reach) {
    let out = u(t, store, r, &["remote", "add", "lab", r.url()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every output file of `experiment` in the store but `timings.parquet` (where and when each
/// node was computed: differs between stores by design), by relative path, with its bytes.
pub fn outputs(store: &Path, experiment: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    let dir = store.join("out").join(experiment);
    let files: BTreeMap<PathBuf, Vec<u8>> = snapshot(&dir)
        .into_iter()
        .filter(|(p, _, _)| !p.ends_with("timings.parquet"))
        .map(|(p, _, _)| {
            let rel = p.strip_prefix(&dir).unwrap().to_path_buf();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect();
    assert!(files.keys().any(|p| p.ends_with("usable_info.parquet")));
    assert!(files.keys().any(|p| p.ends_with("report.html")));
    files
}

/// [`clone_source_dir`], opened.
pub fn clone_source(tmp: &Path, name: &str) -> Store {
    Store::open(&clone_source_dir(tmp, name)).unwrap()
}

/// `uinfo push tiny.toml --json` from `store`; returns the record's digest.
pub fn push_with_uinfo(t: &Path, store: &Path, target: &Target) -> Digest {
    add_remote(t, store, target);
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
pub fn record_bytes(target: &Target, d: &Digest) -> Vec<u8> {
    let key = target.key(&format!("records/tiny/{}.json", d.hex()));
    runtime().block_on(async {
        let got = target.objects.get(&key).await.unwrap();
        got.bytes().await.unwrap().to_vec()
    })
}
