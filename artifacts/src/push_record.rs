//! Push records: one immutable object per push on a remote, saying what the push made
//! reachable there. They are the roots a garbage collection of the remote starts from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::manifest::rfc3339;
use crate::{Digest, Manifest, Store};

/// The folder, under `records/`, of pushes of a whole store rather than of one experiment
/// (experiment names cannot start with a dot).
pub const WHOLE_STORE: &str = ".store";

/// What one push made reachable on a remote. Stored under
/// `records/<experiment>/<digest>.json`, named by the BLAKE3 digest of its own bytes and
/// written only if absent, after the blobs and manifests it names: two pushes of one
/// experiment, from any stores, leave two records and never overwrite each other.
///
/// A remote gc takes every record's `manifests` as roots; the blobs they reach are those the
/// manifests name (listed here too, with their sizes, so that the bytes reached are known
/// without reading each manifest).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PushRecord {
    /// Version of this format ([`PushRecord::FORMAT`]).
    pub format: u32,
    /// The experiment pushed; `None` for a push of every result of a store.
    pub experiment: Option<String>,
    /// When the push finished, RFC 3339 UTC with milliseconds.
    pub pushed: String,
    /// Host name of the machine that pushed.
    pub host: String,
    /// User who pushed (`$USER`, else `$LOGNAME`; empty if neither is set).
    pub user: String,
    /// Process id of the push.
    pub pid: u32,
    /// Version of uinfo that pushed.
    pub uinfo_version: String,
    /// Keys (action-cache keys) of every manifest the push made reachable: those it sent and
    /// those the remote had already.
    pub manifests: BTreeSet<Digest>,
    /// Every blob those manifests name, with its size in bytes.
    pub blobs: BTreeMap<Digest, u64>,
}

impl PushRecord {
    /// The format written by this version.
    pub const FORMAT: u32 = 1;

    /// The record of a push, now, of `manifests` (of `experiment`, or of the whole store when
    /// `None`); blob sizes come from the manifests, or from `local` for manifests that predate
    /// sizes.
    pub fn new(
        experiment: Option<&str>,
        manifests: &[Manifest],
        local: &Store,
        uinfo_version: &str,
    ) -> PushRecord {
        let blobs = manifests
            .iter()
            .flat_map(Manifest::blobs)
            .map(|(d, size)| (d, size.unwrap_or_else(|| local.blob_size(&d))))
            .collect();
        let env = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
        PushRecord {
            format: PushRecord::FORMAT,
            experiment: experiment.map(str::to_owned),
            pushed: rfc3339(SystemTime::now()),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            user: env("USER").or_else(|| env("LOGNAME")).unwrap_or_default(),
            pid: std::process::id(),
            uinfo_version: uinfo_version.to_owned(),
            manifests: manifests.iter().map(|m| m.key).collect(),
            blobs,
        }
    }

    /// The folder under `records/` this record belongs in: its experiment, or
    /// [`WHOLE_STORE`].
    pub fn folder(&self) -> &str {
        self.experiment.as_deref().unwrap_or(WHOLE_STORE)
    }

    /// The bytes stored on the remote (pretty JSON); the record's name is their digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a record serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_names_its_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_bytes(b"twelve bytes").unwrap();
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "key": Digest::of(b"key").hex(),
            "stage": "s", "stage_version": 1, "params": {}, "inputs": {},
            "outputs": {"a": d.hex()},
            "provenance": {"node": "n", "domain": "", "uinfo_version": "v", "host": "h",
                "pid": 1, "started": "", "ended": "", "seconds": 0.0}
        }))
        .unwrap();
        let r = PushRecord::new(Some("tiny"), std::slice::from_ref(&m), &store, "9.9");
        assert_eq!(r.folder(), "tiny");
        assert_eq!(r.manifests, BTreeSet::from([m.key]));
        assert_eq!(
            r.blobs,
            BTreeMap::from([(d, 12)]),
            "size read from the store"
        );
        let back: PushRecord = serde_json::from_slice(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert!(
            humantime::parse_rfc3339(&back.pushed).is_ok(),
            "{}",
            back.pushed
        );
        let whole = PushRecord::new(None, &[], &store, "9.9");
        assert_eq!(whole.folder(), WHOLE_STORE);
    }
}
