//! Store maintenance commands: `verify` (re-hash, repair, recompute samples) and `gc`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use artifacts::{Digest, Manifest, Store, StoreError};
use serde::Serialize;

use crate::graph::Node;
use crate::record::Record;
use crate::runner::{compute, Inputs};
use crate::stage::Stage;

/// What `verify` found, and with `--repair` what it did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs: usize,
    /// Manifests read.
    pub manifests: usize,
    /// Blobs whose content does not match their name.
    pub corrupt: Vec<String>,
    /// Outputs that manifests name but the store lacks: `node: output (digest)`.
    pub missing: Vec<String>,
    /// Manifests that do not parse.
    pub bad_manifests: Vec<String>,
    /// What `--repair` did.
    pub repaired: Vec<String>,
    /// Nodes recomputed by `--recompute`, and whether their outputs matched.
    pub recomputed: Vec<Recomputed>,
}

/// One recomputed node.
#[derive(Clone, Debug, Serialize)]
pub struct Recomputed {
    /// Node name.
    pub node: String,
    /// Outputs whose recomputed digest differs from the stored one.
    pub differing: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong (after repair, if repairing).
    pub fn ok(&self, repaired: bool) -> bool {
        let damage = self.corrupt.len() + self.missing.len() + self.bad_manifests.len();
        (damage == 0 || repaired) && self.recomputed.iter().all(|r| r.differing.is_empty())
    }
}

/// Re-hashes every blob, checks every manifest and the blobs it names; with `repair`,
/// quarantines corrupt blobs and removes the manifests that need them (their nodes are computed
/// again by the next run); with `recompute > 0`, reruns that many sampled cached nodes and
/// compares output digests.
pub fn verify(store: &Store, repair: bool, recompute: usize) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut corrupt = BTreeSet::new();
    for d in store.blobs()? {
        report.blobs += 1;
        match store.verify_blob(&d) {
            Ok(()) => {}
            Err(StoreError::Corrupt { .. }) => {
                corrupt.insert(d);
                report.corrupt.push(d.hex());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut manifests = Vec::new();
    for key in store.manifest_keys()? {
        report.manifests += 1;
        match store.get_manifest(&key) {
            Ok(Some(m)) => {
                let mut broken = false;
                for (name, d) in &m.outputs {
                    if corrupt.contains(d) {
                        broken = true;
                    } else if !store.has_blob(d) {
                        broken = true;
                        report.missing.push(format!(
                            "{}: {name} ({})",
                            m.provenance.node,
                            d.short()
                        ));
                    }
                }
                if broken && repair {
                    store.remove_manifest(&key)?;
                    report.repaired.push(format!(
                        "removed the result of {} (it will be computed again)",
                        m.provenance.node
                    ));
                } else if !broken {
                    manifests.push(m);
                }
            }
            Ok(None) => {}
            Err(e) => {
                report.bad_manifests.push(e.to_string());
                if repair {
                    store.remove_manifest(&key)?;
                    report
                        .repaired
                        .push(format!("removed unreadable manifest {}", key.short()));
                }
            }
        }
    }
    if repair {
        for d in &corrupt {
            store.quarantine_blob(d)?;
            report
                .repaired
                .push(format!("quarantined blob {} in quarantine/", d.short()));
        }
    }
    report.recomputed = recompute_sample(store, &manifests, recompute)?;
    Ok(report)
}

/// Reruns up to `n` cached nodes, chosen by a hash of their keys, and compares outputs. The
/// analysis and report are left out: their training log holds wall-clock seconds.
fn recompute_sample(store: &Store, manifests: &[Manifest], n: usize) -> Result<Vec<Recomputed>> {
    let mut candidates: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| matches!(Stage::parse(&m.stage), Some(s) if s != Stage::Analyze && s != Stage::Report))
        .collect();
    candidates.sort_by_key(|m| Digest::of(m.key.hex().as_bytes()));
    let mut out = Vec::new();
    for m in candidates.into_iter().take(n) {
        let stage = Stage::parse(&m.stage).ok_or_else(|| anyhow!("unknown stage {}", m.stage))?;
        let node = Node {
            id: 0,
            name: m.provenance.node.clone(),
            stage,
            params: m.params.clone(),
            inputs: Vec::new(),
            run: None,
        };
        let files = compute(
            &node,
            &Inputs {
                digests: m.inputs.clone(),
                manifests: BTreeMap::new(),
            },
            store,
        )?;
        let differing = m
            .outputs
            .iter()
            .filter(|(name, d)| files.get(*name).map(|b| Digest::of(b)) != Some(**d))
            .map(|(name, _)| name.clone())
            .collect();
        out.push(Recomputed {
            node: m.provenance.node.clone(),
            differing,
        });
    }
    Ok(out)
}

/// The store's pinned node keys (kept by `gc` whatever the roots), in `pins.json`.
fn pins(store: &Store) -> Result<BTreeSet<Digest>> {
    Ok(store
        .read_json::<BTreeSet<Digest>>("pins.json")?
        .unwrap_or_default())
}

/// Pins (or with `pin = false` unpins) the node a query names (node name or key prefix, as for
/// `show`); returns its key.
pub fn pin(store: &Store, query: &str, pin: bool) -> Result<Digest> {
    let key = crate::ops::show(store, query)?.manifest.key;
    let mut all = pins(store)?;
    if pin {
        all.insert(key);
    } else {
        all.remove(&key);
    }
    store.write_json("pins.json", &all)?;
    Ok(key)
}

/// What `gc` removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Experiments kept as roots.
    pub roots: Vec<String>,
    /// Experiments removed from the roots.
    pub forgotten: Vec<String>,
    /// Pinned nodes kept.
    pub pinned: usize,
    /// Blobs deleted.
    pub blobs: usize,
    /// Manifests deleted.
    pub manifests: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// Deletes every blob and manifest that no recorded experiment and no pinned node reaches, after
/// removing the `forget` experiments from the roots. Refuses while another process uses the store.
pub fn gc(store: &Store, dry_run: bool, forget: &[String]) -> Result<GcReport> {
    let _exclusive = store.try_lock_exclusive_use()?.ok_or_else(|| {
        anyhow!(
            "another uinfo process is using store {}; run gc when it has finished",
            store.root().display()
        )
    })?;
    let mut report = GcReport {
        dry_run,
        ..Default::default()
    };
    let (mut keys, mut blobs) = (BTreeSet::new(), BTreeSet::new());
    for name in Record::list(store) {
        if forget.contains(&name) {
            report.forgotten.push(name);
            continue;
        }
        let Some(record) = Record::load(store, &name)? else {
            continue;
        };
        for entry in record.nodes.values() {
            keys.insert(entry.key);
            blobs.extend(entry.outputs.values().copied());
        }
        report.roots.push(name);
    }
    for key in pins(store)? {
        if let Some(m) = store.get_manifest(&key)? {
            keys.insert(key);
            blobs.extend(m.outputs.values().copied());
            report.pinned += 1;
        }
    }
    if let Some(unknown) = forget.iter().find(|f| !report.forgotten.contains(f)) {
        return Err(crate::ops::UsageError(format!(
            "no experiment `{unknown}` is recorded in this store"
        ))
        .into());
    }
    for key in store.manifest_keys()? {
        if !keys.contains(&key) {
            report.manifests += 1;
            if !dry_run {
                store.remove_manifest(&key)?;
            }
        }
    }
    for d in store.blobs()? {
        if !blobs.contains(&d) {
            report.blobs += 1;
            report.bytes += store.blob_size(&d);
            if !dry_run {
                store.remove_blob(&d)?;
            }
        }
    }
    if !dry_run {
        for name in &report.forgotten {
            std::fs::remove_file(
                store
                    .root()
                    .join("experiments")
                    .join(format!("{name}.json")),
            )?;
            let _ = std::fs::remove_dir_all(store.root().join("out").join(name));
        }
        // With the store held exclusively, anything left in tmp/ is from a writer that died.
        for entry in std::fs::read_dir(store.root().join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(report)
}
