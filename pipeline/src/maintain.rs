//! Store maintenance commands: `verify` (re-hash, repair, recompute samples) and `gc`.

use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use artifacts::{Digest, Manifest, Store, StoreError};
use serde::Serialize;

use crate::device::Device;
use crate::error::UsageError;
use crate::fetch::Sources;
use crate::graph::Node;
use crate::record::Record;
use crate::runner::{compute, Context};
use crate::select::Selector;
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
    /// Outputs that manifests name but the store lacks, and no remote is known to hold:
    /// `node: output (digest)`.
    pub missing: Vec<String>,
    /// Results whose bytes (some of them) are on a remote, not here: valid, never repaired.
    pub on_remote: usize,
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

/// Which cached nodes `verify --recompute` reruns, and with how many threads.
#[derive(Clone, Debug, Default)]
pub struct Recompute {
    /// Whether to recompute at all.
    pub enabled: bool,
    /// At most this many of the selected nodes, chosen by a hash of their keys (None: all).
    pub sample: Option<usize>,
    /// Which nodes (by stage, run or name).
    pub selector: Selector,
    /// Threads.
    pub jobs: usize,
    /// Where the data a dataset node reads are.
    pub ctx: Context,
}

/// Re-hashes every blob, checks every manifest and the blobs it names; with `repair`,
/// quarantines corrupt blobs and removes the manifests that need them (their nodes are computed
/// again by the next run); with `recompute`, reruns the selected cached nodes and compares
/// output digests.
pub fn verify(store: &Store, repair: bool, recompute: &Recompute) -> Result<VerifyReport> {
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
                let mut remote = false;
                for (name, d) in &m.outputs {
                    if corrupt.contains(d) {
                        broken = true;
                    } else if !store.has_blob(d) && store.remote_of(d).is_some() {
                        remote = true;
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
                    report.on_remote += usize::from(remote);
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
    if recompute.enabled {
        report.recomputed = recompute_nodes(store, &manifests, recompute)?;
    }
    Ok(report)
}

/// Reruns the selected cached nodes (a hash-chosen sample when asked) on `jobs` threads, and
/// compares their outputs with the stored digests.
fn recompute_nodes(
    store: &Store,
    manifests: &[Manifest],
    r: &Recompute,
) -> Result<Vec<Recomputed>> {
    let mut chosen: Vec<(Stage, &Manifest)> = manifests
        .iter()
        .filter_map(|m| Stage::parse(&m.stage).map(|s| (s, m)))
        .filter(|(s, m)| r.selector.matches_name(*s, &m.provenance.node))
        .collect();
    if let Some(n) = r.sample {
        chosen.sort_by_key(|(_, m)| Digest::of(m.key.hex().as_bytes()));
        chosen.truncate(n);
    }
    chosen.sort_by(|a, b| (a.0, &a.1.provenance.node).cmp(&(b.0, &b.1.provenance.node)));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Recomputed>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..r.jobs.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((stage, m)) = chosen.get(i) else {
                            return done;
                        };
                        done.push((i, recompute_one(store, *stage, m, &r.ctx)));
                    }
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<Recomputed>)> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("recompute worker"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    results.into_iter().collect()
}

/// Reruns one cached node from its manifest and lists the outputs whose digest differs.
fn recompute_one(store: &Store, stage: Stage, m: &Manifest, ctx: &Context) -> Result<Recomputed> {
    let node = Node {
        id: 0,
        name: m.provenance.node.clone(),
        stage,
        params: m.params.clone(),
        inputs: Vec::new(),
        run: None,
        device: Device::for_domain(&m.provenance.domain).ok_or_else(|| {
            anyhow::anyhow!(
                "node {}: unknown numerics domain `{}`",
                m.provenance.node,
                m.provenance.domain
            )
        })?,
    };
    let inputs = m.inputs.values().map(|d| (*d, None)).collect();
    Sources::new(store, None)
        .fetch_all(&inputs)
        .map_err(|e| anyhow!("node {}: its inputs: {e:#}", m.provenance.node))?;
    let files = compute(&node, &m.inputs, store, ctx)?;
    let differing = m
        .outputs
        .iter()
        .filter(|(name, d)| files.get(*name).map(|b| Digest::of(b)) != Some(**d))
        .map(|(name, _)| name.clone())
        .chain(
            files
                .keys()
                .filter(|k| !m.outputs.contains_key(*k))
                .cloned(),
        )
        .collect();
    Ok(Recomputed {
        node: m.provenance.node.clone(),
        differing,
    })
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
    /// Kept blobs that are on a remote, not here (their results stay cached).
    pub on_remote: usize,
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
    let names = Record::list(store).map_err(|e| {
        anyhow!("cannot read the experiments that root gc ({e}); nothing was deleted")
    })?;
    for name in names {
        if forget.contains(&name) {
            report.forgotten.push(name);
            continue;
        }
        let Some(record) = Record::load(store, &name).map_err(|e| {
            anyhow!("cannot read the record of experiment `{name}` ({e}); nothing was deleted")
        })?
        else {
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
        return Err(UsageError(format!(
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
    for d in store.marked_blobs()? {
        let kept = blobs.contains(&d) && !store.has_blob(&d);
        report.on_remote += usize::from(kept);
        if !kept && !dry_run {
            store.unmark(&d)?;
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
