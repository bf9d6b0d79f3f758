//! Sharing results through remotes (SPEC §2.4): the store's list of remotes, `push`, `pull`, and
//! the remote a run fetches from before computing a node.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::Result;
use artifacts::remote::{Fetch, Location, Progress, Remote, RemoteError, Transfer};
use artifacts::{Digest, Manifest, Store};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::experiment::Experiment;
use crate::graph::{build, Graph};
use crate::ops::UsageError;
use crate::plan::{input_digests, key, plan, State};

/// The store's configuration file, relative to its root.
const CONFIG: &str = "config.json";

/// The store's own settings: for now, its remotes by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    remotes: BTreeMap<String, String>,
}

fn load_config(store: &Store) -> Result<Config> {
    Ok(store
        .read_json::<Config>(CONFIG)
        .map_err(|e| UsageError(e.to_string()))?
        .unwrap_or_default())
}

/// The configured remotes: name -> URL.
pub fn remotes(store: &Store) -> Result<BTreeMap<String, String>> {
    Ok(load_config(store)?.remotes)
}

/// Adds (or replaces) a remote after checking that its URL parses; no connection is made.
pub fn add_remote(store: &Store, name: &str, url: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(UsageError(format!(
            "bad remote name `{name}`: use letters, digits, '-', '_' or '.'"
        ))
        .into());
    }
    Location::parse(url).map_err(|e| UsageError(e.to_string()))?;
    let mut config = load_config(store)?;
    config.remotes.insert(name.to_string(), url.to_string());
    store.write_json(CONFIG, &config)?;
    Ok(())
}

/// Removes a remote; a usage error when there is no such remote.
pub fn remove_remote(store: &Store, name: &str) -> Result<()> {
    let mut config = load_config(store)?;
    if config.remotes.remove(name).is_none() {
        return Err(unknown_remote(name, &config));
    }
    store.write_json(CONFIG, &config)?;
    Ok(())
}

fn unknown_remote(name: &str, config: &Config) -> anyhow::Error {
    let known: Vec<&str> = config.remotes.keys().map(String::as_str).collect();
    UsageError(if known.is_empty() {
        format!(
            "no remote named `{name}`: add one with `uinfo remote add {name} s3://BUCKET/PREFIX`"
        )
    } else {
        format!("no remote named `{name}` (known: {})", known.join(", "))
    })
    .into()
}

/// Opens the remote named `name`, or the only one configured when `name` is `None`. Unknown
/// names and bad URLs are usage errors; nothing is sent yet.
pub fn open_remote(store: &Store, name: Option<&str>, jobs: Option<usize>) -> Result<Remote> {
    let config = load_config(store)?;
    let (name, url) =
        match name {
            Some(n) => match config.remotes.get(n) {
                Some(url) => (n.to_string(), url.clone()),
                None => return Err(unknown_remote(n, &config)),
            },
            None => match config.remotes.len() {
                1 => config.remotes.into_iter().next().expect("one remote"),
                0 => return Err(UsageError(
                    "no remote configured: add one with `uinfo remote add NAME s3://BUCKET/PREFIX`"
                        .into(),
                )
                .into()),
                _ => {
                    return Err(UsageError(format!(
                        "several remotes configured ({}): name one with --remote",
                        config
                            .remotes
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .into())
                }
            },
        };
    let remote = Remote::open(&name, &url).map_err(|e| match e {
        RemoteError::BadUrl { .. } => anyhow::Error::from(UsageError(e.to_string())),
        e => e.into(),
    })?;
    Ok(match jobs {
        Some(j) => remote.with_jobs(j),
        None => remote,
    })
}

/// What `push` or `pull` did, for printing.
#[derive(Debug, Serialize)]
pub struct Shared {
    /// The remote's name.
    pub remote: String,
    /// What was transferred.
    #[serde(flatten)]
    pub transfer: Transfer,
    /// Nodes of the experiment that neither side could provide (not computed locally for a
    /// push; not on the remote for a pull).
    pub unavailable: usize,
}

/// Sends an experiment's cached results (or, without one, every complete result in the store)
/// to the remote, those it lacks.
pub fn push(
    exp: Option<&Experiment>,
    store: &Store,
    remote: &Remote,
    progress: &dyn Progress,
) -> Result<Shared> {
    remote.check()?;
    let (manifests, unavailable) = match exp {
        Some(exp) => {
            let graph = build(exp);
            let p = plan(&graph, Some(store), None);
            let cached: Vec<Manifest> = p
                .states
                .into_iter()
                .filter_map(|s| match s {
                    State::Cached(m) => Some(*m),
                    State::ToRun(_) => None,
                })
                .collect();
            let missing = graph.nodes.len() - cached.len();
            (cached, missing)
        }
        None => {
            let mut all = Vec::new();
            for k in store.manifest_keys()? {
                if let Some(m) = store.get_manifest(&k)?.filter(|m| store.is_complete(m)) {
                    all.push(m);
                }
            }
            (all, 0)
        }
    };
    let transfer = remote.push(store, &manifests, progress)?;
    Ok(Shared {
        remote: remote.name().to_string(),
        transfer,
        unavailable,
    })
}

/// Brings an experiment's results (or, without one, everything on the remote) into the store,
/// those it lacks.
pub fn pull(
    exp: Option<&Experiment>,
    store: &Store,
    remote: &Remote,
    progress: &dyn Progress,
) -> Result<Shared> {
    remote.check()?;
    let (manifests, mut problems, unavailable) = match exp {
        Some(exp) => {
            let (found, problems) = locate(&build(exp), store, remote)?;
            let unavailable = found.iter().filter(|f| f.is_none()).count();
            let on_remote = found.into_iter().flatten().filter(|(_, r)| *r);
            (on_remote.map(|(m, _)| m).collect(), problems, unavailable)
        }
        None => {
            let mut keys = Vec::new();
            for k in remote.manifest_keys()? {
                if !store
                    .get_manifest(&k)?
                    .is_some_and(|m| store.is_complete(&m))
                {
                    keys.push(k);
                }
            }
            let (manifests, problems) = remote.get_manifests(&keys)?;
            (manifests, problems, 0)
        }
    };
    let mut transfer = remote.pull(store, &manifests, progress)?;
    problems.append(&mut transfer.problems);
    transfer.problems = problems;
    Ok(Shared {
        remote: remote.name().to_string(),
        transfer,
        unavailable,
    })
}

/// Where each node's result is: `Some((manifest, false))` in the store, `Some((manifest,
/// true))` on the remote, `None` on neither. Keys depend on parents' outputs, so the DAG is
/// walked in waves, each wave the nodes whose parents are found; the remote is asked for a
/// whole wave at once. Also returns a line for each bad manifest on the remote.
pub type Located = (Vec<Option<(Manifest, bool)>>, Vec<String>);

/// Finds each node's result in the store or on the remote; see [`Located`].
pub fn locate(graph: &Graph, store: &Store, remote: &Remote) -> Result<Located> {
    let n = graph.nodes.len();
    let mut found: Vec<Option<(Manifest, bool)>> = vec![None; n];
    let mut tried = vec![false; n];
    let mut problems = Vec::new();
    loop {
        let mut wave: Vec<(usize, Digest)> = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            if tried[i] {
                continue;
            }
            if let Some(inputs) = input_digests(node, |p| found[p].as_ref().map(|(m, _)| m)) {
                tried[i] = true;
                let k = key(node, &inputs);
                match store.get_manifest(&k)?.filter(|m| store.is_complete(m)) {
                    Some(m) => found[i] = Some((m, false)),
                    None => wave.push((i, k)),
                }
            }
        }
        // Nodes are in topological order, so one pass finds every local chain; an empty wave
        // means the remote cannot add anything more.
        if wave.is_empty() {
            break;
        }
        let keys: Vec<Digest> = wave.iter().map(|(_, k)| *k).collect();
        let (manifests, mut bad) = remote.get_manifests(&keys)?;
        problems.append(&mut bad);
        let mut by_key: BTreeMap<Digest, Manifest> =
            manifests.into_iter().map(|m| (m.key, m)).collect();
        for (i, k) in wave {
            found[i] = by_key.remove(&k).map(|m| (m, true));
        }
    }
    Ok((found, problems))
}

/// The remote a run fetches from before computing a node, and pushes to after (`--push`).
/// The first failure to reach it turns it off for the rest of the run, with one warning.
pub struct RunRemote {
    remote: Remote,
    push: bool,
    off: Mutex<bool>,
    /// Blobs (by digest) and manifests (by key) found bad on the remote; `--push` replaces them.
    bad: Mutex<BTreeSet<Digest>>,
}

impl RunRemote {
    /// Opens and checks the remote named `name`. An unknown name or a bad URL is an error; a
    /// remote that cannot be used gives `None` and the warning to print.
    pub fn connect(
        store: &Store,
        name: &str,
        push: bool,
    ) -> Result<(Option<RunRemote>, Option<String>)> {
        let checked = open_remote(store, Some(name), None).and_then(|remote| {
            remote.check()?;
            Ok(remote)
        });
        match checked {
            Ok(remote) => Ok((
                Some(RunRemote {
                    remote,
                    push,
                    off: Mutex::new(false),
                    bad: Mutex::new(BTreeSet::new()),
                }),
                None,
            )),
            Err(e) if e.downcast_ref::<UsageError>().is_some() => Err(e),
            Err(e) => Ok((None, Some(format!("warning: {e:#}; computing locally")))),
        }
    }

    /// Fetches the result under `key` into the store. Returns it when fetched, and a line to
    /// show when the remote had it but something was wrong, or stopped answering.
    pub fn fetch(
        &self,
        store: &Store,
        key: &Digest,
        node: &str,
    ) -> (Option<Manifest>, Option<String>) {
        if self.is_off() {
            return (None, None);
        }
        match self.remote.fetch(store, key) {
            Ok(Fetch::Fetched(m)) => (Some(*m), None),
            Ok(Fetch::Absent) => (None, None),
            Ok(Fetch::Rejected { why, bad }) => {
                lock(&self.bad).extend(bad);
                let note = format!("warning: {why}; computing {node} locally");
                (None, Some(note))
            }
            Err(e) => (None, self.turn_off(e)),
        }
    }

    /// Sends a freshly computed result when the run pushes, replacing what was found bad on
    /// the remote; returns a line to show when it replaced something or failed.
    pub fn pushed(&self, store: &Store, m: &Manifest) -> Option<String> {
        if !self.push || self.is_off() {
            return None;
        }
        let replace = lock(&self.bad).clone();
        match self.remote.push_one(store, m, &replace) {
            Ok(replaced) if replaced.is_empty() => None,
            Ok(replaced) => {
                let what = |d: &Digest| if *d == m.key { "manifest" } else { "blob" };
                let names: Vec<String> = replaced
                    .iter()
                    .map(|d| format!("{} {}...", what(d), d.short()))
                    .collect();
                let mut bad = lock(&self.bad);
                replaced.iter().for_each(|d| {
                    bad.remove(d);
                });
                Some(format!(
                    "remote `{}`: replaced bad {} with what was computed here",
                    self.remote.name(),
                    names.join(", ")
                ))
            }
            Err(e) => self.turn_off(e),
        }
    }

    /// The remote itself.
    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    fn is_off(&self) -> bool {
        *lock(&self.off)
    }

    fn turn_off(&self, e: RemoteError) -> Option<String> {
        let mut off = lock(&self.off);
        (!std::mem::replace(&mut *off, true))
            .then(|| format!("warning: {e}; computing locally from now on"))
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Progress of a push or pull: a bar of bytes and objects on a terminal, a line per tenth of
/// the objects otherwise.
pub struct TransferBar {
    verb: &'static str,
    quiet: bool,
    bar: OnceLock<Option<ProgressBar>>,
    objects: AtomicU64,
    done: AtomicU64,
    bytes: AtomicU64,
}

impl TransferBar {
    /// A display for `verb` ("push" or "pull"); `quiet` shows nothing.
    pub fn new(verb: &'static str, quiet: bool) -> TransferBar {
        TransferBar {
            verb,
            quiet,
            bar: OnceLock::new(),
            objects: AtomicU64::new(0),
            done: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(Some(b)) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}

impl Progress for TransferBar {
    fn start(&self, objects: u64, bytes: u64) {
        self.objects.store(objects, Ordering::Relaxed);
        let bar = (!self.quiet && std::io::stderr().is_terminal() && objects > 0).then(|| {
            let b = ProgressBar::new(bytes);
            let template = format!(
                "{} {{bar:30}} {{bytes}}/{{total_bytes}} {{msg}} [{{elapsed_precise}}, {{bytes_per_sec}}]",
                self.verb
            );
            b.set_style(
                ProgressStyle::with_template(&template)
                    .expect("template")
                    .progress_chars("=> "),
            );
            b.set_message(format!("0/{objects} objects"));
            b
        });
        let _ = self.bar.set(bar);
        if !self.quiet && objects > 0 {
            eprintln!("{}: {objects} objects, {}", self.verb, HumanBytes(bytes));
        }
    }

    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let sum = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = self.objects.load(Ordering::Relaxed).max(1);
        match self.bar.get() {
            Some(Some(b)) => {
                b.inc(bytes);
                b.set_message(format!("{done}/{total} objects"));
            }
            _ if !self.quiet && done * 10 / total > (done - 1) * 10 / total => {
                eprintln!("{}: {done}/{total} objects, {}", self.verb, HumanBytes(sum));
            }
            _ => {}
        }
    }
}
