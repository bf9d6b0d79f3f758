//! Manifests: what a node produced and how, stored in the action cache under the node's key.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Digest;

/// What a node produced and how: stored in the action cache under the node's key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The node's cache key.
    pub key: Digest,
    /// Stage name.
    pub stage: String,
    /// The stage's implementation version.
    pub stage_version: u32,
    /// The stage's parameters.
    pub params: serde_json::Value,
    /// Input name -> content digest.
    pub inputs: BTreeMap<String, Digest>,
    /// Output name (e.g. "checkpoint.safetensors") -> content digest.
    pub outputs: BTreeMap<String, Digest>,
    /// Output name -> size in bytes, so that a transfer knows what it will move without asking
    /// the remote. Empty in manifests written before sizes were recorded (they stay readable);
    /// an output missing here has an unknown size.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sizes: BTreeMap<String, u64>,
    /// Where, when and by whom the outputs were made.
    pub provenance: Provenance,
}

impl Manifest {
    /// Each distinct output blob with its recorded size (`None` when the manifest predates
    /// sizes).
    pub fn blobs(&self) -> impl Iterator<Item = (Digest, Option<u64>)> + '_ {
        let mut seen = std::collections::BTreeSet::new();
        self.outputs
            .iter()
            .filter(move |(_, d)| seen.insert(**d))
            .map(|(name, d)| (*d, self.sizes.get(name).copied()))
    }
}

/// Where, when and by whom a node's outputs were made.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Provenance {
    /// The node's display name.
    pub node: String,
    /// Numerics domain, e.g. "cpu-f32".
    pub domain: String,
    /// Version of uinfo that ran the node.
    pub uinfo_version: String,
    /// Host name of the machine.
    pub host: String,
    /// Process id of the run.
    pub pid: u32,
    /// Start time, RFC 3339 UTC with milliseconds.
    pub started: String,
    /// End time, RFC 3339 UTC with milliseconds.
    pub ended: String,
    /// Wall-clock duration in seconds.
    pub seconds: f64,
}

impl Provenance {
    /// Provenance of a node that started at `started` and ends now, on this host and process.
    pub fn now_for(
        node: &str,
        domain: &str,
        started: SystemTime,
        uinfo_version: &str,
    ) -> Provenance {
        let ended = SystemTime::now();
        Provenance {
            node: node.to_owned(),
            domain: domain.to_owned(),
            uinfo_version: uinfo_version.to_owned(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            started: rfc3339(started),
            ended: rfc3339(ended),
            seconds: ended
                .duration_since(started)
                .unwrap_or_default()
                .as_secs_f64(),
        }
    }
}

/// RFC 3339 with milliseconds, clamped to the range humantime formats (1970 to 9999).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let t = t.clamp(UNIX_EPOCH, UNIX_EPOCH + LAST);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as written before sizes were recorded (no `sizes` key).
    const OLD_FORMAT: &str = r#"{
  "key": "0000000000000000000000000000000000000000000000000000000000000001",
  "stage": "train",
  "stage_version": 4,
  "params": {"epochs": [0, 1]},
  "inputs": {},
  "outputs": {
    "checkpoint.safetensors": "00000000000000000000000000000000000000000000000000000000000000aa",
    "log.parquet": "00000000000000000000000000000000000000000000000000000000000000bb"
  },
  "provenance": {
    "node": "train/seed=0/e0-1",
    "domain": "cpu-f32",
    "uinfo_version": "0.1.0",
    "host": "h",
    "pid": 1,
    "started": "2025-01-01T00:00:00.000Z",
    "ended": "2025-01-01T00:00:01.000Z",
    "seconds": 1.0
  }
}"#;

    #[test]
    fn old_manifests_without_sizes_are_read_with_unknown_sizes() {
        let m: Manifest = serde_json::from_str(OLD_FORMAT).unwrap();
        assert!(m.sizes.is_empty());
        let blobs: Vec<_> = m.blobs().collect();
        assert_eq!(blobs.len(), 2);
        assert!(blobs.iter().all(|(_, size)| size.is_none()));
    }

    #[test]
    fn sizes_round_trip_and_name_each_blob_once() {
        let mut m: Manifest = serde_json::from_str(OLD_FORMAT).unwrap();
        let d = m.outputs["log.parquet"];
        m.outputs.insert("copy.parquet".into(), d);
        m.sizes = BTreeMap::from([("log.parquet".into(), 7), ("copy.parquet".into(), 7)]);
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains(r#""sizes":{"copy.parquet":7,"log.parquet":7}"#),
            "{text}"
        );
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        let blobs: BTreeMap<Digest, Option<u64>> = back.blobs().collect();
        assert_eq!(blobs.len(), 2);
        assert_eq!(blobs[&d], Some(7));
    }

    #[test]
    fn provenance_fills_host_pid_and_times() {
        let started = SystemTime::now() - Duration::from_millis(1500);
        let p = Provenance::now_for("train", "cpu-f32", started, "0.1.0");
        assert_eq!(p.pid, std::process::id());
        assert!(p.seconds >= 1.5 && p.seconds < 60.0, "{}", p.seconds);
        assert!(
            humantime::parse_rfc3339(&p.started).is_ok(),
            "{}",
            p.started
        );
        assert!(p.ended.ends_with('Z') && p.ended > p.started);
        assert!(!p.host.is_empty());
    }

    #[test]
    fn times_out_of_range_do_not_panic() {
        let p = Provenance::now_for("n", "d", UNIX_EPOCH - Duration::from_secs(10), "v");
        assert_eq!(p.started, "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1 << 40)),
            "9999-12-31T23:59:59.000Z"
        );
    }
}
