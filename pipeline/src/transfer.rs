//! `push` and `pull` (SPEC §2.4): send an experiment's results to a remote or fetch them from
//! it, and find where each node's result lies.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::Result;
use artifacts::remote::{Progress, Remote, Silent, Transfer};
use artifacts::{Digest, Holding, Manifest, PushRecord, Store};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::experiment::Experiment;
use crate::fetch::{always_here, Sources};
use crate::graph::{build, Graph, NodeId};
use crate::plan::{input_digests, key, plan};
use crate::runner::VERSION;
use crate::select::Selector;
use crate::stage::Stage;

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
    /// The digest of the push's record on the remote (`records/<experiment>/<digest>.json`);
    /// none for a pull, or a push with nothing to send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Digest>,
}

/// Sends an experiment's cached results (or, without one, every cached result in the store)
/// to the remote, those it lacks (bytes held on another remote are fetched first), then writes the push's record there (naming every manifest
/// of the push, sent or already there).
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
            let p = plan(&graph, Some(store), None)?;
            let cached = p.into_cached();
            let missing = graph.nodes.len() - cached.len();
            (cached, missing)
        }
        None => {
            let mut all = Vec::new();
            for k in store.manifest_keys()? {
                if let Some(m) = store.get_manifest(&k)?.filter(|m| store.is_cached(m)) {
                    all.push(m);
                }
            }
            (all, 0)
        }
    };
    // Results held here with their bytes on another remote: the bytes come here first.
    let away: BTreeMap<Digest, Option<u64>> = manifests
        .iter()
        .flat_map(Manifest::blobs)
        .filter(|(d, _)| !store.has_blob(d) && store.remote_of(d).as_deref() != Some(remote.name()))
        .collect();
    Sources::new(store, None).fetch_all(&away)?;
    let transfer = remote.push(store, &manifests, progress)?;
    let record = if manifests.is_empty() {
        None
    } else {
        let name = exp.map(|e| e.name.as_str());
        Some(remote.put_record(&PushRecord::new(name, &manifests, store, VERSION))?)
    };
    Ok(Shared {
        remote: remote.name().to_string(),
        transfer,
        unavailable,
        record,
    })
}

/// Which blobs a pull (or `run --remote`) brings into the store with the manifests it fetches.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bytes<'a> {
    /// Only the final outputs (analysis tables, report): the others are fetched when a local
    /// node reads them.
    #[default]
    Needed,
    /// Also every output of the nodes a selector names.
    Selected(&'a Selector),
    /// Every blob (as before results could be held on a remote).
    All,
}

impl Bytes<'_> {
    /// The outputs of this manifest brought here (by digest, with their sizes where known).
    fn wanted(&self, m: &Manifest) -> BTreeMap<Digest, Option<u64>> {
        let stage = Stage::parse(&m.stage);
        let every = match self {
            Bytes::All => true,
            Bytes::Needed => false,
            Bytes::Selected(s) => stage.is_some_and(|st| s.matches_name(st, &m.provenance.node)),
        };
        m.outputs
            .iter()
            .filter(|(name, _)| every || stage.is_some_and(|st| always_here(st, name)))
            .map(|(name, d)| (*d, m.sizes.get(name).copied()))
            .collect()
    }
}

/// Brings an experiment's results (or, without one, everything on the remote) into the store,
/// those it lacks: every manifest, and the blobs `bytes` asks for; the other blobs stay on the
/// remote, marked as there, until something here reads them.
pub fn pull(
    exp: Option<&Experiment>,
    store: &Store,
    remote: &Remote,
    bytes: Bytes,
    progress: &dyn Progress,
) -> Result<Shared> {
    remote.check()?;
    let (manifests, mut problems, unavailable) = match exp {
        Some(exp) => {
            let graph = build(exp);
            let located = locate(&graph, store, remote)?;
            let unavailable = located.found.iter().filter(|f| f.is_none()).count();
            // Results already held here with their bytes on this remote count as on it.
            let on_remote = located.found.into_iter().flatten().filter(|(m, r)| {
                *r || store.holding(m) == Holding::Remote(remote.name().to_string())
            });
            let problems: Vec<String> = located.problems.into_iter().map(|(_, _, p)| p).collect();
            (on_remote.map(|(m, _)| m).collect(), problems, unavailable)
        }
        None => {
            let mut keys = Vec::new();
            for k in remote.manifest_keys()? {
                let here = store.get_manifest(&k)?;
                if !here.is_some_and(|m| store.holding(&m) == Holding::Here) {
                    keys.push(k);
                }
            }
            let (manifests, problems) = remote.get_manifests(&keys)?;
            (manifests, problems.into_iter().map(|(_, p)| p).collect(), 0)
        }
    };
    // Manifests whose every output is wanted come whole; the others are stored with their
    // blobs left on the remote, but those wanted.
    let (whole, lazy): (Vec<Manifest>, Vec<Manifest>) = manifests
        .into_iter()
        .partition(|m| bytes.wanted(m).len() == m.blobs().count());
    let mut transfer = remote.pull(store, &whole, progress)?;
    for m in &lazy {
        if store.put_remote_manifest(m, remote.name())? {
            transfer.objects += 1;
        } else {
            transfer.present += 1;
        }
    }
    let some: BTreeMap<Digest, Option<u64>> = lazy.iter().flat_map(|m| bytes.wanted(m)).collect();
    let fetched = some.keys().filter(|d| !store.has_blob(d)).count();
    let bad = remote.get_blobs(store, &some, &Silent)?;
    transfer.objects += (fetched - bad.len()) as u64;
    transfer.problems.extend(bad.into_iter().map(|(_, p)| p));
    problems.append(&mut transfer.problems);
    transfer.problems = problems;
    Ok(Shared {
        remote: remote.name().to_string(),
        transfer,
        unavailable,
        record: None,
    })
}

/// Where each node's result is, and what was wrong on the remote (see [`locate`]).
pub struct Located {
    /// Per node: `Some((manifest, false))` in the store (its bytes here or on a remote),
    /// `Some((manifest, true))` on the remote, `None` on neither.
    pub found: Vec<Option<(Manifest, bool)>>,
    /// Manifests on the remote that do not parse: node, key, problem line.
    pub problems: Vec<(NodeId, Digest, String)>,
    /// Every key the remote was asked about.
    pub asked: Vec<Digest>,
}

/// Finds each node's result in the store or on the remote. Keys depend on parents' outputs,
/// so the DAG is walked in waves, each wave the nodes whose parents are found; the remote is
/// asked for a whole wave at once.
pub fn locate(graph: &Graph, store: &Store, remote: &Remote) -> Result<Located> {
    let n = graph.nodes.len();
    let mut found: Vec<Option<(Manifest, bool)>> = vec![None; n];
    let mut tried = vec![false; n];
    let mut problems = Vec::new();
    let mut asked = Vec::new();
    loop {
        let mut wave: Vec<(usize, Digest)> = Vec::new();
        for (i, node) in graph.nodes.iter().enumerate() {
            if tried[i] {
                continue;
            }
            if let Some(inputs) = input_digests(node, |p| found[p].as_ref().map(|(m, _)| m)) {
                tried[i] = true;
                let k = key(node, &inputs);
                match store.get_manifest(&k)?.filter(|m| store.is_cached(m)) {
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
        let (manifests, bad) = remote.get_manifests(&keys)?;
        asked.extend(&keys);
        let mut by_key: BTreeMap<Digest, Manifest> =
            manifests.into_iter().map(|m| (m.key, m)).collect();
        for (k, p) in bad {
            if let Some(&(i, _)) = wave.iter().find(|(_, w)| *w == k) {
                problems.push((i, k, p));
            }
        }
        for (i, k) in wave {
            found[i] = by_key.remove(&k).map(|m| (m, true));
        }
    }
    Ok(Located {
        found,
        problems,
        asked,
    })
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
