//! What each command does, as functions tests can call; `main.rs` only parses and prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use artifacts::remote::Remote;
use artifacts::{Digest, Holding, Manifest, Store};
use serde::Serialize;
use stages::table::{Table, Values};

use crate::error::UsageError;
use crate::exec::{execute, Options, Outcome};
use crate::experiment::Experiment;
use crate::fetch::{materialize, Sources};
use crate::graph::{build, Graph};
use crate::plan::{plan, Plan, State};
use crate::record::{Record, RecordEntry};
use crate::select::Selector;
use crate::transfer::{locate, TransferBar};

/// Opens the store for writing; an unwritable store is a usage error naming the path.
pub fn open_store(path: &Path) -> Result<Store> {
    Store::open(path).map_err(|e| UsageError(e.to_string()).into())
}

/// Opens the store for reading: `None` when nothing is at the path. Something there that is not
/// a readable store (a regular file, a folder without permission) is a usage error naming it.
pub fn open_store_if_exists(path: &Path) -> Result<Option<Store>> {
    let unreadable =
        |e: std::io::Error| UsageError(format!("cannot read store {}: {e}", path.display()));
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unreadable(e).into()),
        Ok(m) if !m.is_dir() => {
            Err(UsageError(format!("store {} is not a directory", path.display())).into())
        }
        Ok(_) => {
            std::fs::read_dir(path).map_err(unreadable)?;
            Ok(Some(
                Store::open_existing(path).map_err(|e| UsageError(e.to_string()))?,
            ))
        }
    }
}

/// One node's line in `status`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Stage.
    pub stage: String,
    /// `cached` (its bytes here), `remote` (its result on a remote: held here with its bytes
    /// there, or found there with `--remote`; fetched when read) or `run`.
    pub state: &'static str,
    /// Why it runs, or which remote holds it (empty when cached here).
    pub reason: String,
    /// Its key, when known.
    pub key: Option<String>,
    /// Where it runs (`cpu`, `cuda:N`).
    pub device: String,
}

/// The state of every node of an experiment in a store (a dry run): here, on a remote (held
/// here with its bytes there, or, with `remote`, found there) or to run.
pub fn status(
    exp: &Experiment,
    store: Option<&Store>,
    remote: Option<&Remote>,
) -> Result<(Graph, Plan, Vec<NodeStatus>)> {
    let graph = build(exp);
    let record = match store {
        Some(s) => Record::load(s, &exp.name)?,
        None => None,
    };
    let plan = plan(&graph, store, record.as_ref())?;
    let on_remote: Vec<bool> = match (store, remote) {
        (Some(store), Some(remote)) => locate(&graph, store, remote)?
            .found
            .iter()
            .map(|f| f.as_ref().is_some_and(|(_, r)| *r))
            .collect(),
        _ => vec![false; graph.nodes.len()],
    };
    // Without markers every cached result is here (no need to look at each one's blobs).
    let marked = match store {
        Some(s) if !s.marked_blobs()?.is_empty() => Some(s),
        _ => None,
    };
    let lines = graph
        .nodes
        .iter()
        .zip(&plan.states)
        .zip(on_remote)
        .map(|((n, s), fetch)| {
            let (state, reason, key) = match s {
                State::Cached(m) => match marked.map(|s| s.holding(m)) {
                    Some(Holding::Remote(x)) => ("remote", format!("on remote `{x}`"), Some(m.key)),
                    _ => ("cached", String::new(), Some(m.key)),
                },
                State::ToRun(_) if fetch => {
                    let name = remote.map(Remote::name).unwrap_or_default();
                    ("remote", format!("on remote `{name}`"), None)
                }
                State::ToRun(r) => ("run", r.clone(), None),
            };
            NodeStatus {
                node: n.name.clone(),
                stage: n.stage.name().into(),
                state,
                reason,
                key: key.map(|k| k.hex()),
                device: n.device.to_string(),
            }
        })
        .collect();
    Ok((graph, plan, lines))
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Experiment name.
    pub experiment: String,
    /// Nodes in the DAG.
    pub nodes: usize,
    /// Nodes computed in this run.
    pub computed: usize,
    /// Nodes that were already cached.
    pub cached: usize,
    /// Nodes found in the store when their turn came (early cutoff).
    pub cut_off: usize,
    /// Nodes taken from the remote instead of computed (their blobs fetched when read here).
    pub fetched: usize,
    /// Failed nodes with their messages.
    pub failed: Vec<(String, String)>,
    /// Nodes not run because a parent failed.
    pub skipped: usize,
    /// Folder holding the experiment's tables and report, when the run got that far.
    pub outputs: Option<PathBuf>,
    /// Output files by name.
    pub files: Vec<PathBuf>,
    /// Runs whose training diverged: (run id, where and how).
    pub diverged: Vec<(String, String)>,
    /// With `--push`, the digest of the run's push record on the remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<artifacts::Digest>,
}

/// Runs an experiment: computes what is missing or stale (or fetches it from the remote),
/// records the run, and links the tables and report under `<store>/out/<experiment>/`.
pub fn run(
    exp: &Experiment,
    store: &Store,
    selector: &Selector,
    opts: Options,
) -> Result<RunSummary> {
    let _in_use = store.lock_use()?;
    let graph = build(exp);
    let previous = Record::load(store, &exp.name)?;
    let mut plan = plan(&graph, Some(store), previous.as_ref())?;
    let mut adopted = vec![false; graph.nodes.len()];
    if let Some(r) = opts.remote {
        let (found, warnings) = r.adopt(&graph, store)?;
        warnings.iter().for_each(|w| eprintln!("{w}"));
        if found.contains(&true) {
            plan = crate::plan::plan(&graph, Some(store), previous.as_ref())?;
            adopted = found;
        }
    }
    let keep = selector.closure(&graph);
    let stale = plan.to_run();
    let mut to_run: Vec<usize> = stale.iter().copied().filter(|&i| keep[i]).collect();
    // Stale nodes a selector leaves out end as "skipped" in the execution; they are not failures' fallout.
    let left_out = stale.len() - to_run.len();
    let bar = TransferBar::new("fetch", opts.quiet);
    let warnings = materialize(
        &graph,
        &mut plan,
        &mut to_run,
        &mut Sources::new(store, opts.remote).warned(opts.down),
        opts.fetch_all.then_some(adopted.as_slice()),
        &bar,
    );
    bar.finish();
    warnings.iter().for_each(|w| eprintln!("{w}"));
    open_devices(&graph, &to_run, opts.ctx)?;
    let ex = execute(&graph, &plan, &to_run, store, opts)?;
    // Taken from the remote: cached in the plan because the remote had them.
    let taken = (0..graph.nodes.len())
        .filter(|&i| adopted[i] && matches!(ex.outcomes[i], Outcome::Cached))
        .count();
    let mut record = previous.unwrap_or_default();
    record.experiment = exp.name.clone();
    record.source = exp.source.clone();
    record.text = exp.text.clone();
    if selector.is_empty() {
        record.nodes.clear();
    }
    for (node, m) in graph.nodes.iter().zip(&ex.manifests) {
        if let Some(m) = m {
            record.nodes.insert(node.name.clone(), entry(m));
        }
    }
    record.save(store)?;
    let failed: Vec<(String, String)> = graph
        .nodes
        .iter()
        .zip(&ex.outcomes)
        .filter_map(|(n, o)| match o {
            Outcome::Failed(e) => Some((n.name.clone(), e.clone())),
            _ => None,
        })
        .collect();
    let (outputs, files) = match link_outputs(store, &exp.name, &record)? {
        Some((dir, files)) => (Some(dir), files),
        None => (None, Vec::new()),
    };
    let diverged = match record
        .nodes
        .get("analyze")
        .and_then(|e| e.outputs.get("usable_info.parquet"))
    {
        Some(d) => reports::diverged_runs(&Table::from_parquet(&store.read_blob(d)?)?)?,
        None => Vec::new(),
    };
    Ok(RunSummary {
        diverged,
        experiment: exp.name.clone(),
        nodes: graph.nodes.len(),
        computed: ex.count(|o| matches!(o, Outcome::Computed)),
        cached: ex.count(|o| matches!(o, Outcome::Cached)) - taken,
        cut_off: ex.count(|o| matches!(o, Outcome::CutOff)),
        fetched: ex.count(|o| matches!(o, Outcome::Fetched)) + taken,
        failed,
        skipped: ex.count(|o| matches!(o, Outcome::Skipped)) - left_out,
        outputs,
        files,
        record: None,
    })
}

/// Opens every GPU the nodes to run need, before any runs: a GPU that cannot be used is a usage
/// error naming the first node that needs it.
fn open_devices(graph: &Graph, to_run: &[usize], ctx: &crate::runner::Context) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for node in to_run.iter().map(|&i| &graph.nodes[i]) {
        if node.device.is_gpu() && seen.insert(node.device) {
            if let Err(e) = ctx.gpus.backend(node.device) {
                return Err(UsageError(format!(
                    "node {} runs on {} (domain {}): {e:#}",
                    node.name,
                    node.device,
                    node.device.domain()
                ))
                .into());
            }
        }
    }
    Ok(())
}

fn entry(m: &Manifest) -> RecordEntry {
    RecordEntry {
        stage: m.stage.clone(),
        version: m.stage_version,
        params: m.params.clone(),
        inputs: m.inputs.clone(),
        key: m.key,
        outputs: m.outputs.clone(),
    }
}

/// The experiment's final files (analysis tables, report) from its record.
fn final_files(record: &Record) -> BTreeMap<String, Digest> {
    let mut files = BTreeMap::new();
    for node in ["analyze", "report"] {
        if let Some(e) = record.nodes.get(node) {
            files.extend(e.outputs.iter().map(|(k, d)| (k.clone(), *d)));
        }
    }
    files
}

/// The timings file written beside an experiment's tables.
pub const TIMINGS: &str = "timings.parquet";

/// Where, when and for how long each node of the experiment was computed, from its manifest's
/// provenance (SPEC §3.2). Written by the run, not by a node: the one output outside the
/// cache's byte-identity guarantee.
pub fn timings(store: &Store, record: &Record) -> Result<Table> {
    let mut text: [Vec<String>; 4] = Default::default();
    let mut seconds = Vec::new();
    for (name, entry) in &record.nodes {
        let Some(m) = store.get_manifest(&entry.key)? else {
            continue;
        };
        let p = &m.provenance;
        for (col, v) in text.iter_mut().zip([name, &m.stage, &p.host, &p.started]) {
            col.push(v.clone());
        }
        seconds.push(Some(p.seconds));
    }
    let mut t = Table::default();
    for (name, values) in ["node", "stage", "host", "started"].into_iter().zip(text) {
        t.push(name, Values::Str(values));
    }
    t.push("seconds", Values::F64(seconds));
    Ok(t)
}

/// Links the experiment's tables and report into `<store>/out/<experiment>/` (read-only hard
/// links to the blobs, or copies where links are impossible) and writes its timings there. The
/// folder is built beside and renamed into place, so concurrent runs of one experiment never see
/// a half-made folder.
fn link_outputs(
    store: &Store,
    experiment: &str,
    record: &Record,
) -> Result<Option<(PathBuf, Vec<PathBuf>)>> {
    let files = final_files(record);
    if files.is_empty() {
        return Ok(None);
    }
    let out = store.root().join("out");
    let dir = out.join(experiment);
    let staging = out.join(format!(".{experiment}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    for (name, d) in &files {
        let dest = staging.join(name);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if std::fs::hard_link(store.blob_path(d), &dest).is_err() {
            std::fs::copy(store.blob_path(d), &dest)
                .with_context(|| format!("writing {}", dest.display()))?;
        }
    }
    let timings_path = staging.join(TIMINGS);
    std::fs::write(&timings_path, timings(store, record)?.to_parquet()?)
        .with_context(|| format!("writing {}", timings_path.display()))?;
    // Move the old folder out of the way, then put ours in place; if another process placed its
    // (identical) outputs in between, keep those.
    let old = out.join(format!(".{experiment}.{}.old", std::process::id()));
    let _ = std::fs::rename(&dir, &old);
    if std::fs::rename(&staging, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(Some((
        dir.clone(),
        files
            .keys()
            .map(String::as_str)
            .chain([TIMINGS])
            .map(|name| dir.join(name))
            .collect(),
    )))
}

/// Copies an experiment's tables, report and timings into `dest` under readable names.
pub fn export(store: &Store, experiment: &str, dest: &Path) -> Result<Vec<PathBuf>> {
    let record = Record::load(store, experiment)?.ok_or_else(|| {
        UsageError(format!(
            "experiment `{experiment}` has not been run in store {} (run it first with `uinfo run {experiment}`)",
            store.root().display()
        ))
    })?;
    let files = final_files(&record);
    if files.is_empty() {
        bail!("experiment `{experiment}` has no tables yet: its analysis did not complete");
    }
    let sizes = files.values().map(|d| (*d, None)).collect();
    Sources::new(store, None).fetch_all(&sizes)?;
    std::fs::create_dir_all(dest)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", dest.display())))?;
    let mut out = Vec::new();
    for (name, d) in files {
        let bytes = store.read_blob(&d)?;
        let path = dest.join(&name);
        let parent = path.parent().unwrap_or(dest);
        std::fs::create_dir_all(parent)
            .map_err(|e| UsageError(format!("cannot create {}: {e}", parent.display())))?;
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes)
            .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?;
        out.push(path);
    }
    let path = dest.join(TIMINGS);
    std::fs::write(&path, timings(store, &record)?.to_parquet()?)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?;
    out.push(path);
    Ok(out)
}

/// Explains one node: its state and reason, its inputs and parameters.
pub fn why(exp: &Experiment, store: Option<&Store>, name: &str) -> Result<String> {
    let (graph, plan, lines) = status(exp, store, None)?;
    let Some(node) = graph.nodes.iter().find(|n| n.name == name).or_else(|| {
        let matches: Vec<_> = graph
            .nodes
            .iter()
            .filter(|n| n.name.contains(name))
            .collect();
        (matches.len() == 1).then(|| matches[0])
    }) else {
        let close: Vec<&str> = graph
            .nodes
            .iter()
            .filter(|n| n.name.contains(name))
            .take(5)
            .map(|n| n.name.as_str())
            .collect();
        return Err(UsageError(if close.is_empty() {
            format!(
                "no node `{name}` in experiment {} (see `uinfo status` or `uinfo dag`)",
                exp.name
            )
        } else {
            format!("`{name}` matches several nodes: {} ...", close.join(", "))
        })
        .into());
    };
    let line = &lines[node.id];
    let mut s = format!(
        "{}\n  stage: {} (version {})\n",
        node.name,
        node.stage.name(),
        node.stage.version()
    );
    match &plan.states[node.id] {
        State::Cached(m) => {
            s.push_str(&format!(
                "  cached: key {}\n  computed {} on {} in {:.2} s\n",
                m.key, m.provenance.started, m.provenance.host, m.provenance.seconds
            ));
        }
        State::ToRun(_) => s.push_str(&format!("  will run: {}\n", line.reason)),
    }
    s.push_str("  inputs:\n");
    for i in &node.inputs {
        s.push_str(&format!(
            "    {} <- {} ({})\n",
            i.name, graph.nodes[i.node].name, i.output
        ));
    }
    s.push_str(&format!("  params: {}\n", node.params));
    Ok(s)
}

/// Renders the DAG as text, Graphviz DOT or Mermaid.
pub fn dag(graph: &Graph, format: &str, selector: &Selector) -> Result<String> {
    let keep: Vec<bool> = (0..graph.nodes.len())
        .map(|i| selector.matches(graph, i))
        .collect();
    let mut s = String::new();
    match format {
        "text" => {
            for n in graph.nodes.iter().filter(|n| keep[n.id]) {
                let parents: Vec<&str> = graph
                    .parents(n.id)
                    .iter()
                    .map(|&p| graph.nodes[p].name.as_str())
                    .collect();
                if parents.len() > 3 {
                    s.push_str(&format!("{}  <- {} parents\n", n.name, parents.len()));
                } else {
                    s.push_str(&format!("{}  <- {}\n", n.name, parents.join(", ")));
                }
            }
        }
        "dot" => {
            s.push_str("digraph uinfo {\n  rankdir=LR;\n");
            for n in graph.nodes.iter().filter(|n| keep[n.id]) {
                s.push_str(&format!("  n{} [label=\"{}\"];\n", n.id, n.name));
                for p in graph.parents(n.id).into_iter().filter(|&p| keep[p]) {
                    s.push_str(&format!("  n{p} -> n{};\n", n.id));
                }
            }
            s.push_str("}\n");
        }
        "mermaid" => {
            s.push_str("graph LR\n");
            for n in graph.nodes.iter().filter(|n| keep[n.id]) {
                s.push_str(&format!("  n{}[\"{}\"]\n", n.id, n.name));
                for p in graph.parents(n.id).into_iter().filter(|&p| keep[p]) {
                    s.push_str(&format!("  n{p} --> n{}\n", n.id));
                }
            }
        }
        other => {
            return Err(
                UsageError(format!("unknown DAG format `{other}` (text, dot, mermaid)")).into(),
            )
        }
    }
    Ok(s)
}

/// What `show` found.
#[derive(Clone, Debug, Serialize)]
pub struct Shown {
    /// The node's manifest.
    pub manifest: Manifest,
    /// Output name → path of its blob.
    pub files: BTreeMap<String, PathBuf>,
    /// Where the blobs are: `here`, `remote <name>` (when they could not be fetched; see
    /// `problem`) or `missing`.
    pub held: String,
    /// Why blobs on a remote could not be fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Finds a node by name (in any recorded experiment) or by a key prefix.
pub fn show(store: &Store, query: &str) -> Result<Shown> {
    let mut key: Option<Digest> = None;
    for exp in Record::list(store)? {
        if let Some(r) = Record::load(store, &exp)? {
            if let Some(e) = r.nodes.get(query) {
                key = Some(e.key);
                break;
            }
        }
    }
    if key.is_none() && query.len() >= 4 && query.chars().all(|c| c.is_ascii_hexdigit()) {
        let q = query.to_ascii_lowercase();
        let found: Vec<Digest> = store
            .manifest_keys()?
            .into_iter()
            .filter(|k| k.hex().starts_with(&q))
            .collect();
        match found.len() {
            1 => key = Some(found[0]),
            0 => {}
            n => {
                return Err(UsageError(format!(
                    "key prefix `{query}` matches {n} nodes; give more characters"
                ))
                .into())
            }
        }
    }
    let key = key.ok_or_else(|| {
        UsageError(format!(
            "no node or key `{query}` in store {}",
            store.root().display()
        ))
    })?;
    let manifest = store
        .get_manifest(&key)?
        .ok_or_else(|| anyhow!("manifest {key} is missing"))?;
    let problem = match store.holding(&manifest) {
        Holding::Remote(_) => Sources::new(store, None)
            .fetch_outputs(&manifest)
            .err()
            .map(|e| format!("{e:#}")),
        _ => None,
    };
    let held = match store.holding(&manifest) {
        Holding::Here => "here".to_string(),
        Holding::Remote(name) => format!("remote {name}"),
        Holding::Missing => "missing".to_string(),
    };
    let files = manifest
        .outputs
        .iter()
        .map(|(k, d)| (k.clone(), store.blob_path(d)))
        .collect();
    Ok(Shown {
        manifest,
        files,
        held,
        problem,
    })
}

/// Writes an editable copy of a built-in experiment; refuses to overwrite.
pub fn init(name: &str, dest: Option<&Path>) -> Result<PathBuf> {
    let (text, _) = crate::experiment::builtin(name).ok_or_else(|| {
        UsageError(format!(
            "no built-in experiment `{name}` (built-ins: {})",
            crate::experiment::BUILTINS
                .iter()
                .map(|b| b.0)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let path = dest
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("{name}.toml")));
    if path.exists() {
        return Err(UsageError(format!(
            "{} already exists; not overwriting it",
            path.display()
        ))
        .into());
    }
    std::fs::write(&path, text)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}
