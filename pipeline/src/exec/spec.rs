//! Frozen node specifications: what a Slurm job runs. The driver writes each submitted node's
//! full specification (stage, params, device, and each input as a parent's output digest or as
//! the specification of a parent computed earlier in the same job) into the store as a blob, and
//! a job's specification lists them; the job names only that digest, so editing the experiment
//! file while jobs are queued changes nothing they run.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _, Result};
use artifacts::{canonical_json, Digest, Manifest, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::device::Device;
use crate::graph::Node;
use crate::plan::key;
use crate::runner::Inputs;
use crate::stage::Stage;

/// Where one input of a frozen node comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A parent's output that existed when the job was submitted.
    Digest(Digest),
    /// An output of a parent computed earlier in the same job.
    Parent {
        /// The parent's specification.
        spec: Digest,
        /// Which of its output files.
        output: String,
    },
}

/// One node, frozen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Node name (for logs and progress).
    pub name: String,
    /// Stage.
    pub stage: Stage,
    /// Parameters.
    pub params: Value,
    /// Where it runs.
    pub device: Device,
    /// Inputs by name.
    pub inputs: BTreeMap<String, Source>,
}

/// What one job runs: node specifications, parents first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The store the driver submitted from (its id).
    pub store: String,
    /// The nodes.
    pub nodes: Vec<Digest>,
}

/// Writes a value as canonical JSON into the store; its digest names it.
pub fn freeze<T: Serialize>(store: &Store, value: &T) -> Result<Digest> {
    let v = serde_json::to_value(value)?;
    Ok(store.put_bytes(canonical_json(&v).as_bytes())?)
}

/// Reads a frozen value back.
pub fn thaw<T: for<'de> Deserialize<'de>>(store: &Store, d: &Digest) -> Result<T> {
    let bytes = store
        .read_blob(d)
        .with_context(|| format!("specification {} is not in the store", d.short()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("specification {}", d.short()))
}

impl NodeSpec {
    /// A graph node with its inputs.
    pub fn of(node: &Node, inputs: BTreeMap<String, Source>) -> NodeSpec {
        NodeSpec {
            name: node.name.clone(),
            stage: node.stage,
            params: node.params.clone(),
            device: node.device,
            inputs,
        }
    }

    /// Whether this specification is of `node` as the graph has it now: same name, stage,
    /// device and parameters, the parameters compared in canonical form (freezing writes a
    /// float such as `0.0` as `0`, which reads back as an integer).
    pub fn describes(&self, node: &Node) -> bool {
        self.name == node.name
            && self.stage == node.stage
            && self.device == node.device
            && canonical_json(&self.params) == canonical_json(&node.params)
    }

    /// The node this specification describes (without graph links: none are needed to run it).
    pub fn node(&self) -> Node {
        Node {
            id: 0,
            name: self.name.clone(),
            stage: self.stage,
            params: self.params.clone(),
            inputs: Vec::new(),
            run: None,
            device: self.device,
        }
    }

    /// Its inputs' digests, reading the results of parents computed in the same job from the
    /// store; `None` when such a parent has no result (it failed).
    pub fn resolve(&self, store: &Store) -> Result<Option<Inputs>> {
        let mut out = Inputs::new();
        for (name, source) in &self.inputs {
            let digest = match source {
                Source::Digest(d) => *d,
                Source::Parent { spec, output } => {
                    let parent: NodeSpec = thaw(store, spec)?;
                    let Some(m) = parent.result(store)? else {
                        return Ok(None);
                    };
                    *m.outputs
                        .get(output)
                        .ok_or_else(|| anyhow!("node {} has no output `{output}`", parent.name))?
                }
            };
            out.insert(name.clone(), digest);
        }
        Ok(Some(out))
    }

    /// Its result in the store, if it has one.
    pub fn result(&self, store: &Store) -> Result<Option<Manifest>> {
        match self.resolve(store)? {
            Some(inputs) => Ok(store
                .get_manifest(&key(&self.node(), &inputs))?
                .filter(|m| store.is_complete(m))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose parameters hold whole floats (weight decay 0.0, 100.0 epochs) is still
    /// recognised in its frozen specification: a later driver adopts its job instead of
    /// submitting the node again.
    #[test]
    fn a_frozen_node_describes_its_node_after_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let node = Node {
            id: 3,
            name: "train/batch=32,seed=0/e0-12".into(),
            stage: Stage::Train,
            params: serde_json::json!({"lr": 0.05, "weight_decay": 0.0, "epochs": 100.0}),
            inputs: Vec::new(),
            run: None,
            device: Device::Cpu,
        };
        let frozen = freeze(&store, &NodeSpec::of(&node, BTreeMap::new())).unwrap();
        let thawed: NodeSpec = thaw(&store, &frozen).unwrap();
        assert_ne!(
            thawed.params, node.params,
            "the round trip changes the JSON form"
        );
        assert!(thawed.describes(&node));
        let other = Node {
            params: serde_json::json!({"lr": 0.05, "weight_decay": 0.001, "epochs": 100.0}),
            ..node.clone()
        };
        assert!(!thawed.describes(&other));
        assert!(!thawed.describes(&Node {
            device: Device::Cuda(0),
            ..node
        }));
    }
}
