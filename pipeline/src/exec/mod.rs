//! Executing a plan (SPEC §2.5): a scheduler hands each node to an executor as soon as its
//! parents are done — the local pool of worker threads ([`local`]) or Slurm jobs ([`slurm`]) —
//! and both run [`run_node`]: the node computed under a per-key lock, after re-checking the
//! store, so early cutoff and concurrent processes on one store fall out of the same check.

mod local;
mod progress;
mod remote;
pub mod slurm;
pub mod spec;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::{anyhow, Context as _, Result};
use artifacts::{Manifest, Provenance, Store};

use crate::graph::{Graph, Node, NodeId};
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
pub struct Finished {
    /// Its manifest.
    pub manifest: Manifest,
    /// Computed, fetched or found in the store.
    pub outcome: Outcome,
    /// Seconds it took.
    pub seconds: f64,
    /// Lines to show (remote warnings, the Slurm job).
    pub notes: Vec<String>,
}

/// A finished node, or its error.
pub type Done = (NodeId, Result<Finished, String>);

/// Where nodes run: the local worker pool or Slurm. The scheduler ([`execute`]) hands an
/// executor each node whose parents are done and waits for nodes to finish; both executors
/// end up in [`run_node`].
pub trait Executor {
    /// Starts a node whose parents are done; `inputs` are its parents' output digests.
    fn start(&mut self, id: NodeId, inputs: Inputs);
    /// Waits for a started node to finish (any one). Called only while nodes are in flight.
    fn wait(&mut self) -> Done;
}

/// How a run executes its nodes.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Worker threads of the local executor.
    pub jobs: usize,
    /// No per-node progress.
    pub quiet: bool,
    /// The remote each node's result is taken from (and pushed to) when it has it.
    pub remote: Option<&'a RunRemote>,
    /// Fetch every blob of the results taken from the remote, not only those read here.
    pub fetch_all: bool,
    /// The remote the run was asked to use when it could not even be opened (warned about
    /// already: what it holds is computed here without another warning).
    pub down: Option<&'a str>,
    /// What nodes need from the machine beyond their key.
    pub ctx: &'a Context,
    /// Run nodes as Slurm jobs instead of local threads.
    pub slurm: Option<&'a slurm::SlurmOptions>,
}

/// Runs the given nodes (which the plan marks to run, parents first) on the local pool or on
/// Slurm, fetching each from the remote instead when it has the result.
pub fn execute(
    graph: &Graph,
    plan: &Plan,
    to_run: &[NodeId],
    store: &Store,
    opts: Options,
) -> Result<Execution> {
    let progress = Progress::new(to_run.len(), opts.quiet);
    let slots = Slots::new(opts.jobs);
    let ex = match opts.slurm {
        Some(s) => {
            let remote = opts.remote.filter(|r| !r.is_off());
            let mut slurm = slurm::Slurm::new(graph, plan, to_run, store, s, remote, &progress)?;
            let ex = schedule(graph, plan, to_run, &mut slurm, &progress);
            slurm.finish();
            ex
        }
        None => std::thread::scope(|scope| {
            let mut pool = local::Pool::new(scope, graph, store, opts, &slots);
            schedule(graph, plan, to_run, &mut pool, &progress)
        }),
    };
    progress.finish();
    Ok(ex)
}

/// Dispatches nodes to an executor as their parents finish, skipping the descendants of
/// failed nodes.
fn schedule(
    graph: &Graph,
    plan: &Plan,
    to_run: &[NodeId],
    executor: &mut dyn Executor,
    progress: &Progress,
) -> Execution {
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
            executor.start(id, inputs);
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        let (id, result) = executor.wait();
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
                skip_descendants(id, &children, &mut outcomes, progress);
            }
        }
    }
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
/// remote provides it: what every executor runs, in its thread or in `uinfo exec`. A panic
/// inside the stage is this node's error, with the panic's message.
pub fn run_node(
    node: &Node,
    inputs: &Inputs,
    store: &Store,
    remote: Option<&RunRemote>,
    ctx: &Context,
    slots: Option<&Slots>,
) -> Result<Finished> {
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
    let slot = slots.map(Slots::take);
    let started = SystemTime::now();
    let computing = Instant::now();
    let files = std::panic::catch_unwind(AssertUnwindSafe(|| compute(node, inputs, store, ctx)))
        .map_err(|payload| anyhow!("panicked: {}", panic_message(payload.as_ref())))
        .and_then(|r| r)
        .with_context(|| format!("node {}", node.name))?;
    drop(slot);
    let mut outputs = BTreeMap::new();
    let mut sizes = BTreeMap::new();
    for (name, bytes) in files {
        sizes.insert(name.clone(), bytes.len() as u64);
        outputs.insert(name, store.put_bytes(&bytes)?);
    }
    let mut provenance = Provenance::now_for(&node.name, node.device.domain(), started, VERSION);
    provenance.seconds = computing.elapsed().as_secs_f64();
    let m = Manifest {
        key: k,
        stage: node.stage.name().to_string(),
        stage_version: node.stage.version(),
        params: node.params.clone(),
        inputs: inputs.clone(),
        outputs,
        sizes,
        provenance,
    };
    if !store.put_manifest(&m)? {
        notes.extend(replace_held(store, &m)?);
    }
    notes.extend(remote.and_then(|r| r.pushed(store, &m)));
    Ok(finished(m, Outcome::Computed, notes))
}

/// After a node was computed here although the store held a result under its key whose
/// bytes were on a remote that could not provide them: when that result names other bytes,
/// the one computed here replaces it (a line says so).
fn replace_held(store: &Store, m: &Manifest) -> Result<Option<String>> {
    match store.get_manifest(&m.key)? {
        Some(held) if held.outputs != m.outputs && !store.is_complete(&held) => {
            store.remove_manifest(&m.key)?;
            store.put_manifest(m)?;
            Ok(Some(format!(
                "warning: {} computed here differs from the result held on remote `{}`; kept this one",
                m.provenance.node,
                held.outputs
                    .values()
                    .find_map(|d| store.remote_of(d))
                    .unwrap_or_default()
            )))
        }
        _ => Ok(None),
    }
}

/// Compute slots: at most so many nodes compute at once, while others write their outputs
/// (hashing, writing and fsyncing a blob, mostly waiting on the disk) beside them.
pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A compute slot, given back when dropped.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
