//! The local executor: worker threads on this machine, one node each at a time, and one node at a
//! time per GPU (CPU nodes keep the other workers busy beside it).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::Scope;

use anyhow::anyhow;

use artifacts::Store;

use super::{panic_message, run_node, Done, Executor, Options, Slots};
use crate::device::Device;
use crate::graph::{Graph, NodeId};
use crate::runner::Inputs;

/// Worker threads fed through a queue.
pub(super) struct Pool<'g> {
    graph: &'g Graph,
    jobs: Sender<(NodeId, Inputs)>,
    done: Receiver<Done>,
    /// GPUs with a node on them, and the GPU nodes waiting for theirs.
    gpus_busy: BTreeSet<Device>,
    parked: Vec<(NodeId, Inputs)>,
}

impl<'g> Pool<'g> {
    /// Starts workers in `scope`: `opts.jobs` compute at once, as many more write outputs.
    pub(super) fn new<'s>(
        scope: &'s Scope<'s, 'g>,
        graph: &'g Graph,
        store: &'g Store,
        opts: Options<'g>,
        slots: &'g Slots,
    ) -> Pool<'g> {
        let (job_tx, job_rx) = channel::<(NodeId, Inputs)>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = channel::<Done>();
        for _ in 0..2 * opts.jobs.max(1) {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let job = job_rx.lock().expect("job queue").recv();
                let Ok((id, inputs)) = job else { break };
                let node = &graph.nodes[id];
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    run_node(node, &inputs, store, opts.remote, opts.ctx, Some(slots))
                }))
                .unwrap_or_else(|p| {
                    Err(anyhow!(
                        "node {}: panicked: {}",
                        node.name,
                        panic_message(p.as_ref())
                    ))
                })
                .map_err(|e| format!("{e:#}"));
                if done_tx.send((id, result)).is_err() {
                    break;
                }
            });
        }
        Pool {
            graph,
            jobs: job_tx,
            done: done_rx,
            gpus_busy: BTreeSet::new(),
            parked: Vec::new(),
        }
    }
}

impl Executor for Pool<'_> {
    fn start(&mut self, id: NodeId, inputs: Inputs) {
        let device = self.graph.nodes[id].device;
        if device.is_gpu() && !self.gpus_busy.insert(device) {
            self.parked.push((id, inputs));
            return;
        }
        self.jobs.send((id, inputs)).expect("workers alive");
    }

    fn wait(&mut self) -> Done {
        let done = self.done.recv().expect("a node is in flight");
        let device = self.graph.nodes[done.0].device;
        if self.gpus_busy.remove(&device) {
            if let Some(i) = self
                .parked
                .iter()
                .position(|(p, _)| self.graph.nodes[*p].device == device)
            {
                let (id, inputs) = self.parked.remove(i);
                self.gpus_busy.insert(device);
                self.jobs.send((id, inputs)).expect("workers alive");
            }
        }
        done
    }
}
