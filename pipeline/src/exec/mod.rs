//! The local executor (SPEC §2.5): a pool of worker threads; nodes are dispatched as soon as their
//! parents are done. Each node is computed under a per-key lock, after re-checking the store, so
//! early cutoff and concurrent processes on one store both fall out of the same check.

mod progress;
mod remote;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::{Context as _, Result};
use artifacts::{Manifest, Provenance, Store};

use crate::graph::{Graph, NodeId};
use crate::plan::{input_digests, key, Plan, State};
use crate::runner::{compute, Context, Inputs, VERSION};
use progress::Progress;
pub use remote::RunRemote;

/// How a node ended in one execution.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Was cached before the run started.
    Cached,
    /// Computed in this run.
    Computed,
    /// Found in the store when its turn came (early cutoff, or another process computed it).
    CutOff,
    /// Fetched from the remote.
    Fetched,
    /// Failed with this message.
    Failed(String),
    /// Not run because a parent failed.
    Skipped,
}

/// The result of executing a plan.
pub struct Execution {
    /// Outcome per node.
    pub outcomes: Vec<Outcome>,
    /// Manifest per node, where one exists.
    pub manifests: Vec<Option<Manifest>>,
}

impl Execution {
    /// Number of nodes with an outcome matching `f`.
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }
}

/// A node that finished well: its manifest, how it was obtained, and lines to show.
struct Finished {
    manifest: Manifest,
    outcome: Outcome,
    seconds: f64,
    notes: Vec<String>,
}

/// A finished node, or its error.
type Done = (NodeId, Result<Finished, String>);

/// How a run executes its nodes.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Worker threads.
    pub jobs: usize,
    /// No per-node progress.
    pub quiet: bool,
    /// The remote each node's result is fetched from (and pushed to) when it has it.
    pub remote: Option<&'a RunRemote>,
    /// What nodes need from the machine beyond their key.
    pub ctx: &'a Context,
}

/// Runs the given nodes (which the plan marks to run, parents first), with `opts.jobs`
/// workers, fetching each from the remote instead when it has the result.
pub fn execute(
    graph: &Graph,
    plan: &Plan,
    to_run: &[NodeId],
    store: &Store,
    opts: Options,
) -> Execution {
    let Options {
        jobs,
        quiet,
        remote,
        ctx,
    } = opts;
    let n = graph.nodes.len();
    let mut manifests: Vec<Option<Manifest>> = plan
        .states
        .iter()
        .map(|s| match s {
            State::Cached(m) => Some((**m).clone()),
            State::ToRun(_) => None,
        })
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = plan
        .states
        .iter()
        .map(|s| matches!(s, State::Cached(_)).then_some(Outcome::Cached))
        .collect();
    let children = graph.children();
    let mut waiting: Vec<usize> = (0..n)
        .map(|i| {
            graph
                .parents(i)
                .iter()
                .filter(|&&p| outcomes[p].is_none())
                .count()
        })
        .collect();
    let mut selected = vec![false; n];
    to_run.iter().for_each(|&i| selected[i] = true);
    let progress = Progress::new(to_run.len(), quiet);
    let (job_tx, job_rx) = mpsc::channel::<(NodeId, Inputs)>();
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = job_rx.lock().expect("job queue").recv();
                let Ok((id, inputs)) = job else { break };
                let result =
                    run_node(graph, id, &inputs, store, remote, ctx).map_err(|e| format!("{e:#}"));
                if done_tx.send((id, result)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut in_flight = 0usize;
        let mut ready: Vec<NodeId> = to_run
            .iter()
            .copied()
            .filter(|&i| waiting[i] == 0)
            .collect();
        loop {
            while let Some(id) = ready.pop() {
                let inputs = input_digests(&graph.nodes[id], |p| manifests[p].as_ref())
                    .expect("parents are done");
                job_tx.send((id, inputs)).expect("workers alive");
                in_flight += 1;
            }
            if in_flight == 0 {
                break;
            }
            let Ok((id, result)) = done_rx.recv() else {
                break;
            };
            in_flight -= 1;
            let name = &graph.nodes[id].name;
            match result {
                Ok(Finished {
                    manifest: m,
                    outcome,
                    seconds,
                    notes,
                }) => {
                    notes.iter().for_each(|n| progress.note(n));
                    let what = match outcome {
                        Outcome::Computed => "done",
                        Outcome::Fetched => "fetched",
                        _ => "cached",
                    };
                    progress.finished(name, what, seconds);
                    outcomes[id] = Some(outcome);
                    manifests[id] = Some(m);
                    for &c in &children[id] {
                        waiting[c] -= 1;
                        if waiting[c] == 0 && outcomes[c].is_none() && selected[c] {
                            ready.push(c);
                        }
                    }
                }
                Err(e) => {
                    progress.failed(name, &e);
                    outcomes[id] = Some(Outcome::Failed(e));
                    skip_descendants(id, &children, &mut outcomes, &progress);
                }
            }
        }
        drop(job_tx);
    });
    progress.finish();
    Execution {
        outcomes: outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Outcome::Skipped))
            .collect(),
        manifests,
    }
}

fn skip_descendants(
    id: NodeId,
    children: &[Vec<NodeId>],
    outcomes: &mut [Option<Outcome>],
    progress: &Progress,
) {
    let mut stack = children[id].clone();
    while let Some(c) = stack.pop() {
        if outcomes[c].is_none() {
            outcomes[c] = Some(Outcome::Skipped);
            progress.skip();
            stack.extend(children[c].iter().copied());
        }
    }
}

/// Computes one node under its key's lock, unless the store already has its result or the
/// remote provides it.
fn run_node(
    graph: &Graph,
    id: NodeId,
    inputs: &Inputs,
    store: &Store,
    remote: Option<&RunRemote>,
    ctx: &Context,
) -> Result<Finished> {
    let node = &graph.nodes[id];
    let k = key(node, inputs);
    let _lock = store.lock_key(&k)?;
    let clock = Instant::now();
    let finished = |manifest, outcome, notes| Finished {
        manifest,
        outcome,
        seconds: clock.elapsed().as_secs_f64(),
        notes,
    };
    if let Some(m) = store.get_manifest(&k)?.filter(|m| store.is_complete(m)) {
        return Ok(finished(m, Outcome::CutOff, Vec::new()));
    }
    let mut notes = Vec::new();
    if let Some(r) = remote {
        let (fetched, note) = r.fetch(store, &k, &node.name);
        notes.extend(note);
        if let Some(m) = fetched {
            return Ok(finished(m, Outcome::Fetched, notes));
        }
    }
    let started = SystemTime::now();
    let computing = Instant::now();
    let files = compute(node, inputs, store, ctx).with_context(|| format!("node {}", node.name))?;
    let mut outputs = BTreeMap::new();
    for (name, bytes) in files {
        outputs.insert(name, store.put_bytes(&bytes)?);
    }
    let mut provenance = Provenance::now_for(&node.name, stages::DOMAIN, started, VERSION);
    provenance.seconds = computing.elapsed().as_secs_f64();
    let m = Manifest {
        key: k,
        stage: node.stage.name().to_string(),
        stage_version: node.stage.version(),
        params: node.params.clone(),
        inputs: inputs.clone(),
        outputs,
        provenance,
    };
    store.put_manifest(&m)?;
    notes.extend(remote.and_then(|r| r.pushed(store, &m)));
    Ok(finished(m, Outcome::Computed, notes))
}
