//! Selectors: restrict a command to part of the DAG by stage, by run, or by a substring of the
//! node name (which holds the swept parameter values, e.g. `batch=32`).

use crate::graph::{Graph, NodeId};
use crate::stage::Stage;

/// A selection of nodes; empty selects everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// Only these stages.
    pub stages: Vec<Stage>,
    /// Only nodes of runs whose id contains one of these (e.g. `seed=1`, `batch=32`).
    pub runs: Vec<String>,
    /// Only nodes whose name contains one of these.
    pub names: Vec<String>,
}

impl Selector {
    /// True when nothing is restricted.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty() && self.runs.is_empty() && self.names.is_empty()
    }

    /// Whether a node is selected.
    pub fn matches(&self, graph: &Graph, id: NodeId) -> bool {
        let n = &graph.nodes[id];
        (self.stages.is_empty() || self.stages.contains(&n.stage))
            && (self.runs.is_empty()
                || self
                    .runs
                    .iter()
                    .any(|r| n.run.as_deref().is_some_and(|id| run_matches(id, r))))
            && (self.names.is_empty() || self.names.iter().any(|p| n.name.contains(p.as_str())))
    }

    /// Whether a node known only by its stage and name (a cached result's manifest) is selected;
    /// its run is the part of the name after the stage, e.g. `batch=32,seed=0`.
    pub fn matches_name(&self, stage: Stage, name: &str) -> bool {
        let run = name.split('/').nth(1);
        (self.stages.is_empty() || self.stages.contains(&stage))
            && (self.runs.is_empty()
                || self
                    .runs
                    .iter()
                    .any(|r| run.is_some_and(|id| run_matches(id, r))))
            && (self.names.is_empty() || self.names.iter().any(|p| name.contains(p.as_str())))
    }

    /// The selected nodes and all their ancestors, as a mask.
    pub fn closure(&self, graph: &Graph) -> Vec<bool> {
        let mut keep: Vec<bool> = (0..graph.nodes.len())
            .map(|i| self.matches(graph, i))
            .collect();
        for id in (0..graph.nodes.len()).rev() {
            if keep[id] {
                for p in graph.parents(id) {
                    keep[p] = true;
                }
            }
        }
        keep
    }
}

/// A run id matches a selector when every `key=value` part of the selector is one of its parts.
fn run_matches(id: &str, selector: &str) -> bool {
    let parts: Vec<&str> = id.split(',').collect();
    selector.split(',').all(|s| parts.contains(&s))
}
