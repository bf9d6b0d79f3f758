//! `uinfo verify --remote`: checks what a remote holds (every manifest parses and names blobs
//! that are there with the recorded size; with `deep`, every blob's content matches its name)
//! and, with `repair`, removes what is damaged and the manifests that depend on it, so that no
//! client takes them as cached; a later push restores them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::Serialize;

use super::{Remote, RemoteError};
use crate::{Digest, Manifest};

/// What `verify --remote` found, and with `repair` what it removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteVerify {
    /// Blobs on the remote.
    pub blobs: usize,
    /// Manifests on the remote.
    pub manifests: usize,
    /// Blobs re-hashed (`deep`).
    pub hashed: usize,
    /// Blobs whose size differs from a manifest's record of it, or (`deep`) whose content does
    /// not match their name: one line each.
    pub corrupt: Vec<String>,
    /// Outputs that manifests name but the remote lacks: one line each.
    pub missing: Vec<String>,
    /// Manifests that do not parse or name another key: one line each.
    pub bad_manifests: Vec<String>,
    /// Objects removed by `repair`, by key under the remote's prefix.
    pub removed: Vec<String>,
}

impl RemoteVerify {
    /// True when nothing is damaged (after repair, if repairing and every removal succeeded).
    pub fn ok(&self, repaired: bool) -> bool {
        let damaged = self.corrupt.len() + self.missing.len() + self.bad_manifests.len();
        damaged == 0 || repaired
    }
}

/// A manifest's verdict: parsed, or why not.
type Parsed = Result<Manifest, String>;

impl Remote {
    /// Checks every manifest and blob under the remote's prefix (see the module's doc). Lists
    /// `blobs/` and `ac/` once, reads every manifest, and with `deep` every blob.
    pub fn verify(&self, deep: bool, repair: bool) -> Result<RemoteVerify, RemoteError> {
        self.runtime.block_on(async {
            let blobs = self.list("blobs/", "").await?;
            let keys = self.list("ac/", ".json").await?;
            let mut report = RemoteVerify {
                blobs: blobs.len(),
                manifests: keys.len(),
                ..RemoteVerify::default()
            };
            let parsed = self.read_manifests(keys.keys().copied()).await?;
            let mut bad_blobs: BTreeSet<Digest> = BTreeSet::new();
            let mut bad_keys: BTreeSet<Digest> = BTreeSet::new();
            for (key, m) in &parsed {
                match m {
                    Ok(m) => check_blobs(m, &blobs, &mut report, &mut bad_blobs),
                    Err(why) => {
                        report.bad_manifests.push(format!("manifest {key}: {why}"));
                        bad_keys.insert(*key);
                    }
                }
            }
            if deep {
                report.hashed = blobs.len();
                for (d, why) in self.hash_blobs(blobs.keys().copied()).await? {
                    report.corrupt.push(format!("blob {d}: {why}"));
                    bad_blobs.insert(d);
                }
            }
            // Manifests that name a damaged or missing blob go too: a client must not take
            // them as cached.
            for (key, m) in &parsed {
                if let Ok(m) = m {
                    let damaged = m
                        .outputs
                        .values()
                        .any(|d| bad_blobs.contains(d) || !blobs.contains_key(d));
                    if damaged {
                        bad_keys.insert(*key);
                    }
                }
            }
            if repair {
                let paths = bad_blobs
                    .iter()
                    .map(|d| self.blob(d))
                    .chain(bad_keys.iter().map(|k| self.manifest(k)));
                for path in paths {
                    self.delete(&path).await?;
                    let rel = path
                        .as_ref()
                        .strip_prefix(&self.prefix)
                        .unwrap_or(path.as_ref());
                    report.removed.push(rel.to_string());
                }
            }
            Ok(report)
        })
    }

    /// Every manifest under `keys`, parsed and checked against its name, `jobs` at a time.
    async fn read_manifests(
        &self,
        keys: impl Iterator<Item = Digest>,
    ) -> Result<BTreeMap<Digest, Parsed>, RemoteError> {
        futures::stream::iter(keys.map(|key| async move {
            let parsed = match self.get_manifest(&key).await? {
                Some(Ok(m)) => Ok(m),
                Some(Err(why)) => Err(why),
                None => Err("vanished while being read".to_string()),
            };
            Ok::<_, RemoteError>((key, parsed))
        }))
        .buffer_unordered(self.jobs)
        .try_collect()
        .await
    }

    /// Blobs whose content does not hash to their name, with what was found.
    async fn hash_blobs(
        &self,
        blobs: impl Iterator<Item = Digest>,
    ) -> Result<Vec<(Digest, String)>, RemoteError> {
        let found: Vec<Option<(Digest, String)>> =
            futures::stream::iter(blobs.map(|d| async move {
                let got = self
                    .objects
                    .get(&self.blob(&d))
                    .await
                    .map_err(|e| self.fail(&e))?;
                let mut hasher = blake3::Hasher::new();
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.next().await {
                    hasher.update(&chunk.map_err(|e| self.fail(&e))?);
                }
                let actual = Digest(*hasher.finalize().as_bytes());
                Ok::<_, RemoteError>(
                    (actual != d).then(|| (d, format!("content hashes to {}", actual.short()))),
                )
            }))
            .buffer_unordered(self.jobs)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Removes one object; one already gone is not an error.
    pub(super) async fn delete(&self, path: &ObjectPath) -> Result<(), RemoteError> {
        match self.objects.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail(&e)),
        }
    }
}

/// Records the blobs a parsed manifest names that are missing, or there with another size
/// than it recorded.
fn check_blobs(
    m: &Manifest,
    blobs: &HashMap<Digest, u64>,
    report: &mut RemoteVerify,
    bad: &mut BTreeSet<Digest>,
) {
    for (output, d) in &m.outputs {
        let node = &m.provenance.node;
        match (blobs.get(d), m.sizes.get(output)) {
            (None, _) => report
                .missing
                .push(format!("{node}: {output} (blob {d}) is not on the remote")),
            (Some(&size), Some(&recorded)) if size != recorded && bad.insert(*d) => {
                report.corrupt.push(format!(
                    "blob {d}: {size} bytes, {node}'s manifest recorded {recorded} for {output}"
                ));
            }
            _ => {}
        }
    }
}
