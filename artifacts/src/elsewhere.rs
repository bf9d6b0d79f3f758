//! Results whose bytes are on a remote: a manifest fetched without its blobs is a valid cached
//! result. Each blob it names that is not here is marked with the remote that holds it
//! (`remote-blobs/<2 hex>/<64 hex>`, the remote's name as JSON), so the store can tell a
//! result that is here, one on remote X, and one that is missing apart without asking anyone.

use std::fs;
use std::io::ErrorKind;

use crate::{Digest, Manifest, Store, StoreError};

/// The folder of the markers, under the store's root.
const MARKERS: &str = "remote-blobs";

/// Where a cached result's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holding {
    /// Every blob it names is in the store.
    Here,
    /// Some are on this remote (by name), the rest here.
    Remote(String),
    /// A blob is neither here nor marked as on a remote.
    Missing,
}

impl Store {
    fn marker(&self, d: &Digest) -> String {
        let hex = d.hex();
        format!("{MARKERS}/{}/{hex}", &hex[..2])
    }

    /// Records that the blob `d`, absent here, is on the remote named `remote`.
    pub fn mark_on_remote(&self, d: &Digest, remote: &str) -> Result<(), StoreError> {
        self.write_json(&self.marker(d), &remote)
    }

    /// The remote that holds blob `d`, when it is marked (whether or not it is also here).
    pub fn remote_of(&self, d: &Digest) -> Option<String> {
        self.read_json::<String>(&self.marker(d)).ok().flatten()
    }

    /// Forgets where blob `d` was (absent is fine).
    pub fn unmark(&self, d: &Digest) -> Result<(), StoreError> {
        let path = self.root().join(self.marker(d));
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Every marked blob, sorted.
    pub fn marked_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        self.list_fanout(MARKERS, "")
    }

    /// Stores a manifest whose blobs stay on `remote`: marks each one not here, then writes the
    /// manifest (kept if one exists). Returns true if the manifest was written.
    pub fn put_remote_manifest(&self, m: &Manifest, remote: &str) -> Result<bool, StoreError> {
        for d in m.outputs.values().filter(|d| !self.has_blob(d)) {
            self.mark_on_remote(d, remote)?;
        }
        self.put_manifest(m)
    }

    /// Where the bytes of a stored result are: here, on a remote, or (some of them) nowhere.
    pub fn holding(&self, m: &Manifest) -> Holding {
        let mut remote = None;
        for d in m.outputs.values().filter(|d| !self.has_blob(d)) {
            match self.remote_of(d) {
                Some(name) => remote = remote.or(Some(name)),
                None => return Holding::Missing,
            }
        }
        remote.map_or(Holding::Here, Holding::Remote)
    }

    /// True when the manifest is stored and its bytes are here or on a remote: a cached result.
    pub fn is_cached(&self, m: &Manifest) -> bool {
        self.manifest_path(&m.key).is_file() && self.holding(m) != Holding::Missing
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Provenance;

    fn manifest(outputs: &[(&str, Digest)]) -> Manifest {
        let outputs: BTreeMap<String, Digest> =
            outputs.iter().map(|(n, d)| (n.to_string(), *d)).collect();
        Manifest {
            key: Digest::of(format!("{outputs:?}").as_bytes()),
            stage: "probe".into(),
            stage_version: 1,
            params: serde_json::json!({}),
            inputs: BTreeMap::new(),
            outputs,
            sizes: BTreeMap::new(),
            provenance: Provenance::now_for("n", "cpu-f32", std::time::SystemTime::now(), "0"),
        }
    }

    #[test]
    fn a_result_is_here_on_a_remote_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let here = store.put_bytes(b"here").unwrap();
        let away = Digest::of(b"away");
        let m = manifest(&[("a", here), ("b", away)]);
        assert!(!store.is_cached(&m), "not stored yet");
        store.put_manifest(&m).unwrap();
        assert_eq!(store.holding(&m), Holding::Missing);
        assert!(!store.is_cached(&m));

        store.put_remote_manifest(&m, "lab").unwrap();
        assert_eq!(store.holding(&m), Holding::Remote("lab".into()));
        assert!(store.is_cached(&m) && !store.is_complete(&m));
        assert_eq!(store.remote_of(&here), None, "blobs here are not marked");
        assert_eq!(store.marked_blobs().unwrap(), vec![away]);

        assert_eq!(store.put_bytes(b"away").unwrap(), away);
        assert_eq!(store.holding(&m), Holding::Here);
        store.unmark(&away).unwrap();
        assert!(store.marked_blobs().unwrap().is_empty());
        assert_eq!(store.holding(&m), Holding::Here);
    }
}
