//! The record of an experiment's last run in a store: every node's name, parameters, input
//! digests, key and outputs. `status` and `why` compare against it; it also roots the experiment
//! for `export`, `show` and garbage collection.

use std::collections::BTreeMap;

use artifacts::{Digest, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One node as it was last run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordEntry {
    /// Stage name.
    pub stage: String,
    /// Stage implementation version.
    pub version: u32,
    /// Parameters.
    pub params: Value,
    /// Input name → digest.
    pub inputs: BTreeMap<String, Digest>,
    /// The node's key.
    pub key: Digest,
    /// Output name → digest.
    pub outputs: BTreeMap<String, Digest>,
}

/// An experiment's last run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Experiment name.
    pub experiment: String,
    /// Where the experiment was read from.
    pub source: String,
    /// The experiment file's text.
    pub text: String,
    /// Node name → entry.
    pub nodes: BTreeMap<String, RecordEntry>,
}

/// Path of an experiment's record, relative to the store root.
fn path(experiment: &str) -> String {
    format!("experiments/{experiment}.json")
}

impl Record {
    /// Loads the record of an experiment, if it was run in this store.
    pub fn load(store: &Store, experiment: &str) -> Result<Option<Record>, StoreError> {
        store.read_json(&path(experiment))
    }

    /// Saves the record (atomically replacing the previous one).
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.write_json(&path(&self.experiment), self)
    }

    /// Names of the experiments recorded in a store. A records folder or entry that cannot be
    /// read is an error, never an empty list: gc takes these as its roots.
    pub fn list(store: &Store) -> Result<Vec<String>, StoreError> {
        let dir = store.root().join("experiments");
        let io = |path: &std::path::Path, source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name();
            let name = name.to_str().ok_or_else(|| StoreError::BadJson {
                path: entry.path(),
                message: "the file name is not UTF-8".into(),
            })?;
            if let Some(experiment) = name.strip_suffix(".json") {
                out.push(experiment.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}
