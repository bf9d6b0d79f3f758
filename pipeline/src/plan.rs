//! The planner: decides for every node whether it is cached or must run, and why, by computing
//! keys (SPEC §2.2) from the digests of parents that are cached, and comparing with the
//! experiment's last run.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use artifacts::{canonical_key, Digest, Manifest, Store};
use serde_json::{json, Value};

use crate::graph::{Graph, Node};
use crate::record::{Record, RecordEntry};

/// A node's state in a plan.
#[derive(Clone, Debug)]
pub enum State {
    /// Its result is in the store (its bytes here or on a remote, see `artifacts::Holding`).
    Cached(Box<Manifest>),
    /// It must run, for this reason.
    ToRun(String),
}

/// A plan: one state per node.
#[derive(Clone, Debug)]
pub struct Plan {
    /// States, indexed by node id.
    pub states: Vec<State>,
}

impl Plan {
    /// Ids of the nodes to run.
    pub fn to_run(&self) -> Vec<usize> {
        self.states
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, State::ToRun(_)))
            .map(|(i, _)| i)
            .collect()
    }

    /// The manifests of the cached nodes, in node order.
    pub fn into_cached(self) -> Vec<Manifest> {
        self.states
            .into_iter()
            .filter_map(|s| match s {
                State::Cached(m) => Some(*m),
                State::ToRun(_) => None,
            })
            .collect()
    }
}

/// The key of a node given its inputs' digests.
pub fn key(node: &Node, inputs: &BTreeMap<String, Digest>) -> Digest {
    let mut v = json!({
        "stage": node.stage.name(),
        "version": node.stage.version(),
        "params": node.params,
        "inputs": inputs.iter().map(|(k, d)| (k.clone(), Value::String(d.hex()))).collect::<serde_json::Map<_, _>>(),
    });
    if node.stage.domain_dependent() {
        v["domain"] = json!(node.device.domain());
    }
    canonical_key(&v)
}

/// The input digests of a node, when every parent has a manifest.
pub fn input_digests<'a>(
    node: &Node,
    manifest_of: impl Fn(usize) -> Option<&'a Manifest>,
) -> Option<BTreeMap<String, Digest>> {
    node.inputs
        .iter()
        .map(|i| {
            manifest_of(i.node)
                .and_then(|m| m.outputs.get(i.output))
                .map(|d| (i.name.clone(), *d))
        })
        .collect()
}

/// Plans a graph against a store (None: an empty store) and the last run's record. A cached
/// result that cannot be read (a manifest that does not parse, an I/O error) is an error naming
/// the node, never taken for a missing one.
pub fn plan(graph: &Graph, store: Option<&Store>, record: Option<&Record>) -> Result<Plan> {
    let mut states: Vec<State> = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let manifest_of = |i: usize| match &states[i] {
            State::Cached(m) => Some(m.as_ref()),
            State::ToRun(_) => None,
        };
        let previous = record.and_then(|r| r.nodes.get(&node.name));
        let state = match input_digests(node, manifest_of) {
            Some(inputs) => {
                let k = key(node, &inputs);
                let cached = match store {
                    Some(s) => s
                        .get_manifest(&k)
                        .with_context(|| {
                            format!(
                                "the cached result of node {} cannot be read (`uinfo verify --repair` removes it)",
                                node.name
                            )
                        })?
                        .filter(|m| s.is_cached(m)),
                    None => None,
                };
                match cached {
                    Some(m) => State::Cached(Box::new(m)),
                    None => State::ToRun(reason(node, previous, Some((&inputs, k)))),
                }
            }
            None => {
                let waiting: Vec<&str> = node
                    .inputs
                    .iter()
                    .filter(|i| manifest_of(i.node).is_none())
                    .map(|i| graph.nodes[i.node].name.as_str())
                    .collect();
                let mut waiting = waiting;
                waiting.dedup();
                let own = reason(node, previous, None);
                let after = match waiting.len() {
                    1 => format!("parent {} will run", waiting[0]),
                    n => format!("{n} parents will run ({}, ...)", waiting[0]),
                };
                State::ToRun(if own.is_empty() {
                    after
                } else {
                    format!("{own}; {after}")
                })
            }
        };
        states.push(state);
    }
    Ok(Plan { states })
}

/// Why a node is not cached, compared with its entry in the last run (empty when nothing of its
/// own changed and its inputs are not yet known).
fn reason(
    node: &Node,
    previous: Option<&RecordEntry>,
    now: Option<(&BTreeMap<String, Digest>, Digest)>,
) -> String {
    let Some(prev) = previous else {
        return "new node (not in the last run)".into();
    };
    let mut why = Vec::new();
    if prev.version != node.stage.version() {
        why.push(format!(
            "stage {} version {} -> {}",
            node.stage.name(),
            prev.version,
            node.stage.version()
        ));
    }
    let mut changes = Vec::new();
    diff_params("", &prev.params, &node.params, &mut changes);
    if !changes.is_empty() {
        let shown: Vec<String> = changes.iter().take(4).cloned().collect();
        let more = if changes.len() > 4 {
            format!(" (+{} more)", changes.len() - 4)
        } else {
            String::new()
        };
        why.push(format!("params changed: {}{more}", shown.join(", ")));
    }
    if let Some((inputs, key)) = now {
        let changed: Vec<&String> = inputs
            .iter()
            .filter(|(k, d)| prev.inputs.get(*k) != Some(d))
            .map(|(k, _)| k)
            .collect();
        let removed = prev
            .inputs
            .keys()
            .filter(|k| !inputs.contains_key(*k))
            .count();
        if !changed.is_empty() || removed > 0 {
            let mut s = match changed.len() {
                0 => String::new(),
                1 => format!("input `{}` changed", changed[0]),
                n => format!("{n} inputs changed (`{}`, ...)", changed[0]),
            };
            if removed > 0 {
                s.push_str(&format!(
                    "{}{removed} inputs removed",
                    if s.is_empty() { "" } else { ", " }
                ));
            }
            why.push(s);
        }
        if why.is_empty() {
            why.push(if prev.key == key {
                "result missing from the store".into()
            } else {
                "key changed".into()
            });
        }
    }
    why.join("; ")
}

/// Lists `path: old -> new` for every leaf that differs.
fn diff_params(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_params(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => {
            let short = |v: &Value| {
                let s = v.to_string();
                if s.chars().count() > 40 {
                    format!("{}...", s.chars().take(40).collect::<String>())
                } else {
                    s
                }
            };
            out.push(format!("{path}: {} -> {}", short(a), short(b)));
        }
        _ => {}
    }
}
