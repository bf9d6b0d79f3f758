//! Bytes on demand (issue 14, "build without the bytes"): a cached result may hold its blobs
//! on a remote. What reads them — a node computed here, the experiment's final outputs, `show`,
//! `export`, `verify --recompute` — brings them here first from the remote each is marked on;
//! a run computes a result locally, with one warning, when its bytes cannot be had.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use artifacts::remote::{Progress, Remote, Silent};
use artifacts::{Digest, Manifest, Store};

use crate::exec::RunRemote;
use crate::graph::{Graph, NodeId};
use crate::plan::{Plan, State};
use crate::remotes::open_remote;
use crate::stage::Stage;

/// Whether an output is always brought here with its result: the final outputs (analysis
/// tables, report, figures) and every table (Parquet: probe results, training logs; small, and
/// what the analysis and a reader read).
pub fn always_here(stage: Stage, output: &str) -> bool {
    matches!(stage, Stage::Analyze | Stage::Report) || output.ends_with(".parquet")
}

/// The cause given for blobs on the run's remote once it was found unusable: the warning
/// was given then.
const WARNED: &str = "";

/// The remotes blobs are fetched from, opened by name when first needed (the run's own remote
/// reused); one that cannot be used is tried once.
pub struct Sources<'a> {
    store: &'a Store,
    run: Option<&'a RunRemote>,
    opened: BTreeMap<String, Result<Remote, String>>,
}

impl<'a> Sources<'a> {
    /// Sources for `store`, with the run's remote when it has one.
    pub fn new(store: &'a Store, run: Option<&'a RunRemote>) -> Sources<'a> {
        Sources {
            store,
            run,
            opened: BTreeMap::new(),
        }
    }

    /// Takes the remote `name` as unusable, already warned about.
    pub fn warned(mut self, name: Option<&str>) -> Sources<'a> {
        if let Some(name) = name {
            self.opened
                .insert(name.to_string(), Err(WARNED.to_string()));
        }
        self
    }

    /// Brings the given blobs here (with their sizes where known) from the remotes they are
    /// marked on. Returns each blob that could not be had, with why (one line, shared by all
    /// the blobs of a remote that cannot be reached).
    pub fn fetch(
        &mut self,
        blobs: &BTreeMap<Digest, Option<u64>>,
        progress: &dyn Progress,
    ) -> Vec<(Digest, String)> {
        let mut by_remote: BTreeMap<String, BTreeMap<Digest, Option<u64>>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (d, size) in blobs.iter().filter(|(d, _)| !self.store.has_blob(d)) {
            match self.store.remote_of(d) {
                Some(name) => {
                    by_remote.entry(name).or_default().insert(*d, *size);
                }
                None => failed.push((*d, format!("blob {}... is in no store", d.short()))),
            }
        }
        let store = self.store;
        for (name, wanted) in by_remote {
            let got = match self.remote(&name) {
                Ok(remote) => remote.get_blobs(store, &wanted, progress),
                Err(why) => {
                    failed.extend(wanted.keys().map(|d| (*d, why.clone())));
                    continue;
                }
            };
            match got {
                Ok(bad) => {
                    if let Some(run) = self.run.filter(|r| r.remote().name() == name) {
                        run.note_bad(bad.iter().map(|(d, _)| *d));
                    }
                    failed.extend(bad);
                }
                Err(e) => {
                    let why = e.to_string();
                    if let Some(run) = self.run.filter(|r| r.remote().name() == name) {
                        run.set_off();
                    }
                    self.opened.insert(name, Err(why.clone()));
                    failed.extend(wanted.keys().map(|d| (*d, why.clone())));
                }
            }
        }
        failed
    }

    /// Brings every output of `m` here; an error naming the first blob that cannot be had.
    pub fn fetch_outputs(&mut self, m: &Manifest) -> Result<()> {
        self.fetch_all(&m.blobs().collect())
    }

    /// Brings the given blobs here; an error naming the first that cannot be had.
    pub fn fetch_all(&mut self, blobs: &BTreeMap<Digest, Option<u64>>) -> Result<()> {
        match self.fetch(blobs, &Silent).into_iter().next() {
            None => Ok(()),
            Some((_, why)) => Err(anyhow!("{why}")),
        }
    }

    fn remote(&mut self, name: &str) -> Result<&Remote, String> {
        if let Some(Err(why)) = self.opened.get(name) {
            return Err(why.clone());
        }
        if let Some(run) = self.run.filter(|r| r.remote().name() == name) {
            return match run.is_off() {
                false => Ok(run.remote()),
                true => Err(WARNED.to_string()),
            };
        }
        let store = self.store;
        self.opened
            .entry(name.to_string())
            .or_insert_with(|| {
                open_remote(store, Some(name), None).map_err(|e| format!("remote `{name}`: {e:#}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Brings here the blobs a run reads: the inputs of the nodes it runs, the outputs that are
/// [`always_here`] and, with `all`, every output of the nodes it took from the remote. A cached
/// result whose blob cannot be had is computed here instead: its node joins `to_run` (and its
/// own inputs are then needed). Returns one warning per cause.
pub fn materialize(
    graph: &Graph,
    plan: &mut Plan,
    to_run: &mut Vec<NodeId>,
    sources: &mut Sources,
    all: Option<&[bool]>,
    progress: &dyn Progress,
) -> Vec<String> {
    let mut demoted: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    let mut wanted = wanted_blobs(graph, plan, to_run, all);
    while !wanted.is_empty() {
        let sizes = wanted.iter().map(|(d, (size, _))| (*d, *size)).collect();
        let failed = sources.fetch(&sizes, progress);
        let mut again = BTreeSet::new();
        for (d, why) in failed {
            for &p in &wanted[&d].1 {
                if matches!(plan.states[p], State::Cached(_)) {
                    plan.states[p] = State::ToRun(format!("its bytes cannot be fetched: {why}"));
                    demoted.entry(why.clone()).or_default().push(p);
                    again.insert(p);
                }
            }
        }
        if again.is_empty() {
            break;
        }
        to_run.extend(&again);
        to_run.sort_unstable();
        to_run.dedup();
        // Only the demoted nodes' inputs are new.
        wanted = wanted_blobs(graph, plan, &again.into_iter().collect::<Vec<_>>(), None);
    }
    demoted
        .into_iter()
        .filter(|(why, _)| why != WARNED)
        .map(|(why, nodes)| {
            let what = match nodes.as_slice() {
                [one] => graph.nodes[*one].name.clone(),
                [first, ..] => format!("{} nodes ({}, ...)", nodes.len(), graph.nodes[*first].name),
                [] => unreachable!("a cause without nodes"),
            };
            format!("warning: {why}; computing {what} locally")
        })
        .collect()
}

/// The blobs that the nodes in `to_run` read from cached parents, plus the outputs that are
/// [`always_here`] and, with `all`, the outputs of the nodes it marks: each with its size where
/// known and the nodes whose results name it.
fn wanted_blobs(
    graph: &Graph,
    plan: &Plan,
    to_run: &[NodeId],
    all: Option<&[bool]>,
) -> BTreeMap<Digest, (Option<u64>, Vec<NodeId>)> {
    let cached = |i: NodeId| match &plan.states[i] {
        State::Cached(m) => Some(m.as_ref()),
        State::ToRun(_) => None,
    };
    let mut wanted: BTreeMap<Digest, (Option<u64>, Vec<NodeId>)> = BTreeMap::new();
    let mut want = |node: NodeId, m: &Manifest, output: &str| {
        if let Some(d) = m.outputs.get(output) {
            let entry = wanted
                .entry(*d)
                .or_insert((m.sizes.get(output).copied(), Vec::new()));
            if !entry.1.contains(&node) {
                entry.1.push(node);
            }
        }
    };
    for &i in to_run {
        for input in &graph.nodes[i].inputs {
            if let Some(m) = cached(input.node) {
                want(input.node, m, input.output);
            }
        }
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let every = all.is_some_and(|a| a[i]);
        if let Some(m) = cached(i) {
            for output in m.outputs.keys() {
                if every || always_here(node.stage, output) {
                    want(i, m, output);
                }
            }
        }
    }
    wanted
}
