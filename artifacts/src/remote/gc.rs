//! `uinfo gc --remote`: removes what no live push record and no recent manifest reaches.
//!
//! Roots: the manifests of every record younger than the retention period (or pinned), and
//! every manifest younger than the grace period (a push in flight has written it, its record
//! not yet). Reached: those manifests, and the blobs they name. Removed: records past
//! retention, unreached manifests, then unreached blobs, each only if older than the grace
//! period. A push that relied on a blob gc removes in between re-checks it after writing its
//! manifests and sends it again ([`Remote::push`]), so no manifest is left without its blobs.
//! Unfinished uploads (S3 multipart uploads, `file://` staging files) that started before the
//! grace period are aborted too (see `uploads`).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::ObjectMeta;
use serde::Serialize;

use super::{Remote, RemoteError};
use crate::Digest;

/// What `gc --remote` keeps.
#[derive(Clone, Debug)]
pub struct GcPolicy {
    /// Records younger than this are roots.
    pub retention: Duration,
    /// Objects younger than this are never removed, and manifests younger than this are roots.
    pub grace: Duration,
    /// Records (by digest prefix) that stay roots whatever their age.
    pub pins: Vec<String>,
    /// The time ages are measured against.
    pub now: SystemTime,
    /// Only report.
    pub dry_run: bool,
}

/// What `gc --remote` removed (or, with a dry run, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteGc {
    /// Records read.
    pub records: usize,
    /// Records that are roots.
    pub live_records: usize,
    /// Objects removed, by key under the remote's prefix, with their sizes.
    pub removed: Vec<(String, u64)>,
    /// Bytes removed.
    pub bytes: u64,
    /// Unreached objects kept because they are younger than the grace period.
    pub young: usize,
    /// Unfinished uploads aborted (S3 multipart uploads, `file://` staging files), by object.
    pub uploads: Vec<String>,
    /// Unfinished uploads kept because they started within the grace period.
    pub young_uploads: usize,
}

/// One object of the remote, sorted by kind.
enum Kind {
    Record,
    Manifest(Digest),
    Blob(Digest),
}

impl Remote {
    /// Collects the remote under `policy` (see the module's doc): one listing of everything
    /// under the prefix, every record read, and the young manifests.
    pub fn gc(&self, policy: &GcPolicy) -> Result<RemoteGc, RemoteError> {
        self.runtime.block_on(async {
            let listed: Vec<ObjectMeta> = self
                .objects
                .list(Some(&ObjectPath::from(self.prefix.as_str())))
                .try_collect()
                .await
                .map_err(|e| self.fail(&e))?;
            let age = |m: &ObjectMeta| {
                let modified: SystemTime = m.last_modified.into();
                policy.now.duration_since(modified).unwrap_or_default()
            };
            let mut report = RemoteGc::default();
            let (mut manifests, mut blobs) = (BTreeSet::new(), BTreeSet::new());
            let mut expired = Vec::new();
            for meta in &listed {
                match self.kind(&meta.location) {
                    Some(Kind::Record) => {
                        report.records += 1;
                        let (d, record) = self.get_record(&meta.location).await?;
                        let pushed = humantime::parse_rfc3339(&record.pushed).map_err(|e| {
                            RemoteError::BadObject {
                                remote: self.name.clone(),
                                object: meta.location.to_string(),
                                why: format!("has an unreadable push time ({e})"),
                            }
                        })?;
                        let old = policy.now.duration_since(pushed).unwrap_or_default()
                            >= policy.retention;
                        let pinned = policy.pins.iter().any(|p| d.hex().starts_with(p.as_str()));
                        if old && !pinned {
                            expired.push(meta);
                        } else {
                            report.live_records += 1;
                            manifests.extend(record.manifests);
                            blobs.extend(record.blobs.into_keys());
                        }
                    }
                    Some(Kind::Manifest(key)) if age(meta) < policy.grace => {
                        if let Some(Ok(m)) = self.get_manifest(&key).await? {
                            blobs.extend(m.outputs.into_values());
                        }
                        manifests.insert(key);
                    }
                    _ => {}
                }
            }
            let unreached = |meta: &&ObjectMeta| match self.kind(&meta.location) {
                Some(Kind::Manifest(key)) => !manifests.contains(&key),
                Some(Kind::Blob(d)) => !blobs.contains(&d),
                _ => false,
            };
            // Records first, then manifests, then blobs: a manifest never outlives its blobs.
            let doomed: Vec<&ObjectMeta> = expired
                .into_iter()
                .chain(
                    listed
                        .iter()
                        .filter(|m| self.is_manifest(m))
                        .filter(unreached),
                )
                .chain(
                    listed
                        .iter()
                        .filter(|m| !self.is_manifest(m))
                        .filter(unreached),
                )
                .collect();
            for meta in doomed {
                if age(meta) < policy.grace {
                    report.young += 1;
                    continue;
                }
                if !policy.dry_run {
                    self.delete(&meta.location).await?;
                }
                let rel = meta.location.as_ref();
                let rel = rel.strip_prefix(&self.prefix).unwrap_or(rel);
                report.removed.push((rel.to_string(), meta.size));
                report.bytes += meta.size;
            }
            for upload in self.unfinished_uploads().await? {
                if policy
                    .now
                    .duration_since(upload.started)
                    .unwrap_or_default()
                    < policy.grace
                {
                    report.young_uploads += 1;
                    continue;
                }
                if !policy.dry_run {
                    self.abort_upload(&upload).await?;
                }
                report.uploads.push(upload.key);
            }
            Ok(report)
        })
    }

    /// What an object under the prefix is, by its key; `None` for anything else.
    fn kind(&self, path: &ObjectPath) -> Option<Kind> {
        let rel = path.as_ref().strip_prefix(&self.prefix)?;
        if rel.starts_with("records/") && rel.ends_with(".json") {
            return Some(Kind::Record);
        }
        if let Some(hex) = rel
            .strip_prefix("ac/")
            .and_then(|r| r.strip_suffix(".json"))
        {
            return hex.parse().ok().map(Kind::Manifest);
        }
        rel.strip_prefix("blobs/")
            .and_then(|hex| hex.parse().ok())
            .map(Kind::Blob)
    }

    fn is_manifest(&self, meta: &ObjectMeta) -> bool {
        matches!(self.kind(&meta.location), Some(Kind::Manifest(_)))
    }
}
