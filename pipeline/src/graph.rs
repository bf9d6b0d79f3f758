//! The DAG of one experiment (SPEC §2.1): nodes are stages applied to parameters and to their
//! parents' outputs. Training is a chain of segments, one per checkpoint interval, so runs that
//! share a prefix share nodes: nodes are deduplicated by identity (stage, params, parents).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use stages::analysis::RunInfo;
use stages::probe::ProbeParams;
use stages::train::SegmentParams;

use crate::device::Device;
use crate::experiment::{Experiment, Run};
use crate::stage::Stage;

/// Index of a node in its graph.
pub type NodeId = usize;

/// One input of a node: the name it is known by, the parent node, and which of its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// Input name, e.g. `checkpoint`, `probe/3`.
    pub name: String,
    /// Parent node.
    pub node: NodeId,
    /// The parent's output file, e.g. `checkpoint.safetensors`.
    pub output: &'static str,
}

/// A stage applied to parameters and inputs.
#[derive(Clone, Debug)]
pub struct Node {
    /// Position in the graph (parents come first).
    pub id: NodeId,
    /// Stable, readable name, e.g. `train/batch=32,seed=0/e5-6`: how runs are compared.
    pub name: String,
    /// The stage.
    pub stage: Stage,
    /// Parameters, in canonical JSON.
    pub params: Value,
    /// Inputs from parent nodes.
    pub inputs: Vec<Input>,
    /// The first run this node belongs to (for selectors), if any.
    pub run: Option<String>,
    /// Where it runs. Its domain enters the key of device-dependent stages; the GPU's number
    /// does not.
    pub device: Device,
}

/// An experiment's nodes in topological order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Nodes; a node's parents have smaller ids.
    pub nodes: Vec<Node>,
    identity: HashMap<String, NodeId>,
}

impl Graph {
    /// Adds a node unless an identical one exists; returns its id.
    fn add(
        &mut self,
        name: String,
        stage: Stage,
        params: Value,
        inputs: Vec<Input>,
        run: Option<&str>,
        device: Device,
    ) -> NodeId {
        let ident = json!({
            "stage": stage.name(),
            "domain": stage.domain_dependent().then(|| device.domain()),
            "params": params,
            "inputs": inputs.iter().map(|i| json!([i.name, i.node, i.output])).collect::<Vec<_>>(),
        })
        .to_string();
        if let Some(&id) = self.identity.get(&ident) {
            return id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            name,
            stage,
            params,
            inputs,
            run: run.map(str::to_string),
            device,
        });
        self.identity.insert(ident, id);
        id
    }

    /// Children of every node.
    pub fn children(&self) -> Vec<Vec<NodeId>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for n in &self.nodes {
            for i in &n.inputs {
                if !out[i.node].contains(&n.id) {
                    out[i.node].push(n.id);
                }
            }
        }
        out
    }

    /// A node by name.
    pub fn find(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The distinct parents of a node.
    pub fn parents(&self, id: NodeId) -> Vec<NodeId> {
        let mut p: Vec<NodeId> = self.nodes[id].inputs.iter().map(|i| i.node).collect();
        p.sort_unstable();
        p.dedup();
        p
    }
}

fn input(name: impl Into<String>, node: NodeId, output: &'static str) -> Input {
    Input {
        name: name.into(),
        node,
        output,
    }
}

/// Run information for the analysis tables.
pub fn run_info(run: &Run) -> RunInfo {
    let last = &run.phases.last().expect("a run has a phase").optimiser;
    RunInfo {
        id: run.id.clone(),
        config: run.config(),
        seed: run.seed,
        params: run.params.clone(),
        noise_scale: last.lr / last.batch as f64,
    }
}

/// Expands an experiment into its DAG.
pub fn build(exp: &Experiment) -> Graph {
    let mut g = Graph::default();
    let mut probes: Vec<(usize, NodeId)> = Vec::new();
    let mut logs: Vec<(usize, NodeId)> = Vec::new();
    let mut datasets: Vec<NodeId> = Vec::new();
    for (r, run) in exp.runs.iter().enumerate() {
        let in_set = |set: &Vec<String>| {
            let set = set.clone();
            move |k: &str| set.iter().any(|s| s == k)
        };
        let data_name = match run.id_with(in_set(&run.dataset_axes), false) {
            s if s.is_empty() => "dataset".to_string(),
            s => format!("dataset/{s}"),
        };
        let cpu = Device::Cpu;
        let dataset = g.add(
            data_name,
            Stage::Dataset,
            json!(run.dataset),
            vec![],
            None,
            cpu,
        );
        datasets.push(dataset);
        let classes = run.dataset.task().classes(&run.target).expect("validated");
        let init_name = format!("init/{}", run.id_with(in_set(&run.model_axes), true));
        let init_params = json!({
            "model": run.model,
            "input": run.input,
            "classes": classes,
            "seed": run.seed,
        });
        let init = g.add(
            init_name,
            Stage::Init,
            init_params,
            vec![],
            Some(&run.id),
            cpu,
        );
        let (train_device, extract_device) = (
            run.devices.train.unwrap_or_default(),
            run.devices.extract.unwrap_or_default(),
        );
        let probe_axes = run.probe_axes.clone();
        let train_id = run.id_with(|k| !probe_axes.contains(&k.to_string()), true);
        let mut boundaries: Vec<usize> = run.checkpoints.clone();
        let mut phase_starts = Vec::new();
        let mut start = 0;
        for p in &run.phases {
            phase_starts.push(start);
            start += p.epochs;
            boundaries.push(start);
        }
        boundaries.sort_unstable();
        boundaries.dedup();
        let mut checkpoint_at: BTreeMap<usize, NodeId> = BTreeMap::new();
        checkpoint_at.insert(0, init);
        let mut prev = init;
        for w in boundaries.windows(2) {
            let (a, b) = (w[0], w[1]);
            let phase = phase_starts
                .iter()
                .rposition(|&s| s <= a)
                .expect("phase 0 starts at 0");
            let params = SegmentParams {
                optimiser: run.phases[phase].optimiser.clone(),
                phase_start: phase_starts[phase],
                to_epoch: b,
                target: run.phases[phase].target.clone(),
            };
            let mut params = json!(params);
            params["from_epoch"] = json!(a);
            let seg = g.add(
                format!("train/{train_id}/e{a}-{b}"),
                Stage::Train,
                params,
                vec![
                    input("checkpoint", prev, "checkpoint.safetensors"),
                    input("dataset", dataset, "dataset.safetensors"),
                ],
                Some(&run.id),
                train_device,
            );
            logs.push((r, seg));
            checkpoint_at.insert(b, seg);
            prev = seg;
        }
        for (&epoch, &ckpt) in &checkpoint_at {
            let checkpoint = input("checkpoint", ckpt, "checkpoint.safetensors");
            let data = input("dataset", dataset, "dataset.safetensors");
            // Stored representations, or (keep = false) extraction inside each probe node.
            let (source, extract) = if run.keep {
                let node = g.add(
                    format!("extract/{train_id}/e{epoch}"),
                    Stage::Extract,
                    json!(run.extract),
                    vec![checkpoint, data.clone()],
                    Some(&run.id),
                    extract_device,
                );
                let reps = input("representations", node, "representations.safetensors");
                (reps, None)
            } else {
                (checkpoint, Some(run.extract.clone()))
            };
            for decoder in &run.probe.decoders {
                let params = ProbeParams {
                    layers: run.probe.layers.clone(),
                    labels: run.probe.labels.clone(),
                    decoder: decoder.clone(),
                    extract: extract.clone(),
                };
                let probe = g.add(
                    format!("probe/{}/e{epoch}/{}", run.id, decoder.kind.name()),
                    Stage::Probe,
                    json!(params),
                    vec![source.clone(), data.clone()],
                    Some(&run.id),
                    if run.keep { cpu } else { extract_device },
                );
                probes.push((r, probe));
            }
        }
    }
    let mut inputs = Vec::new();
    for (i, (_, node)) in probes.iter().enumerate() {
        inputs.push(input(format!("probe/{i}"), *node, "probe.parquet"));
    }
    for (i, (_, node)) in logs.iter().enumerate() {
        inputs.push(input(format!("log/{i}"), *node, "log.parquet"));
    }
    for (i, node) in datasets.iter().enumerate() {
        inputs.push(input(format!("dataset/{i}"), *node, "dataset.safetensors"));
    }
    let params = json!({
        "experiment": exp.name,
        "runs": exp.runs.iter().map(run_info).collect::<Vec<_>>(),
        "probe_runs": probes.iter().map(|p| p.0).collect::<Vec<_>>(),
        "log_runs": logs.iter().map(|p| p.0).collect::<Vec<_>>(),
        "perturb_axis": exp.runs.first().and_then(|r| r.phase_axes.first()),
        "c1_fraction": exp.runs.first().map(|r| r.c1_fraction),
    });
    let analyze = g.add(
        "analyze".into(),
        Stage::Analyze,
        params,
        inputs,
        None,
        Device::Cpu,
    );
    let task = exp.runs[0].dataset.task().claims();
    let report_inputs = Stage::Analyze
        .outputs()
        .iter()
        .map(|o| input(*o, analyze, o))
        .collect();
    g.add(
        "report".into(),
        Stage::Report,
        json!({
            "experiment": exp.name,
            "description": exp.description,
            "settings": exp.text,
            "relevant": task.relevant,
            "irrelevant": task.irrelevant,
        }),
        report_inputs,
        None,
        Device::Cpu,
    );
    g
}
