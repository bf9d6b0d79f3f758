//! Runs one node: loads its inputs from the store, calls the stage function, and returns the
//! output files' bytes. Nothing here knows about scheduling or caching.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use artifacts::{Digest, Store};
use serde::Deserialize;
use stages::analysis::{analyze, AnalysisInput, RunInfo};
use stages::checkpoint::Checkpoint;
use stages::data::Dataset;
use stages::extract::{extract, ExtractParams};
use stages::model::{self, ModelParams, Shape};
use stages::probe::{probe, ProbeParams};
use stages::table::{Table, Values};
use stages::task::{Source, TaskParams};
use stages::tensors::TensorFile;
use stages::train::{run_segment, SegmentParams};

use crate::device::Gpus;
use crate::graph::Node;
use crate::stage::Stage;

/// The uinfo version recorded in outputs and provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Test-only switch: a node whose name contains this variable's value panics instead of
/// running (how the tests show that a panic fails its node and nothing hangs).
pub const TEST_PANIC: &str = "UINFO_TEST_PANIC";

/// Test-only switch: a node whose name contains this variable's value waits two minutes before
/// running (how the tests hold a Slurm job running until they cancel it).
pub const TEST_STALL: &str = "UINFO_TEST_STALL";

/// Whether the test switch `var` names `node`.
fn test_switch(var: &str, node: &Node) -> bool {
    std::env::var(var).is_ok_and(|s| !s.is_empty() && node.name.contains(&s))
}

/// What a node reads from its parents: input name → content digest of the file it names.
pub type Inputs = BTreeMap<String, Digest>;

/// Where a node runs, beyond its key: what it needs from the machine but must not change its
/// bytes (the data folder a dataset is read from, the GPUs opened so far).
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// The data folder (`--data DIR` or `UINFO_DATA`, else the experiment file's).
    pub data_dir: Option<PathBuf>,
    /// The GPUs this process has opened.
    pub gpus: Arc<Gpus>,
}

impl Context {
    /// A context that reads data from `data_dir`.
    pub fn new(data_dir: Option<PathBuf>) -> Context {
        Context {
            data_dir,
            gpus: Arc::default(),
        }
    }
}

fn read_tensors(store: &Store, inputs: &Inputs, name: &str) -> Result<TensorFile> {
    let d = inputs
        .get(name)
        .ok_or_else(|| anyhow!("input `{name}` is missing"))?;
    let bytes = store.read_blob(d)?;
    TensorFile::from_bytes(&bytes).with_context(|| format!("input `{name}` (blob {})", d.short()))
}

fn read_table(store: &Store, inputs: &Inputs, name: &str) -> Result<Table> {
    let d = inputs
        .get(name)
        .ok_or_else(|| anyhow!("input `{name}` is missing"))?;
    Table::from_parquet(&store.read_blob(d)?)
        .with_context(|| format!("input `{name}` (blob {})", d.short()))
}

fn dataset(store: &Store, inputs: &Inputs, name: &str) -> Result<Dataset> {
    Dataset::from_file(&read_tensors(store, inputs, name)?)
        .with_context(|| format!("input `{name}`"))
}

#[derive(Deserialize)]
struct InitParams {
    model: ModelParams,
    input: Vec<usize>,
    classes: usize,
    seed: u64,
}

#[derive(Deserialize)]
struct AnalyzeParams {
    experiment: String,
    runs: Vec<RunInfo>,
    probe_runs: Vec<usize>,
    log_runs: Vec<usize>,
    perturb_axis: Option<String>,
    c1_fraction: Option<f64>,
}

fn log_table(logs: &[stages::train::EpochLog]) -> Table {
    let mut t = Table::default();
    t.push(
        "epoch",
        Values::I64(logs.iter().map(|l| l.epoch as i64).collect()),
    );
    t.push(
        "step",
        Values::I64(logs.iter().map(|l| l.step as i64).collect()),
    );
    t.push("lr", Values::F64(logs.iter().map(|l| Some(l.lr)).collect()));
    t.push(
        "batch",
        Values::I64(logs.iter().map(|l| l.batch as i64).collect()),
    );
    t.push(
        "train_loss",
        Values::F64(logs.iter().map(|l| Some(l.train_loss)).collect()),
    );
    t.push(
        "train_accuracy",
        Values::F64(logs.iter().map(|l| Some(l.train_accuracy)).collect()),
    );
    t.push(
        "val_loss",
        Values::F64(logs.iter().map(|l| Some(l.val_loss)).collect()),
    );
    t.push(
        "val_accuracy",
        Values::F64(logs.iter().map(|l| Some(l.val_accuracy)).collect()),
    );
    t
}

/// Computes a node's outputs (file name → bytes).
pub fn compute(
    node: &Node,
    inputs: &Inputs,
    store: &Store,
    ctx: &Context,
) -> Result<BTreeMap<String, Vec<u8>>> {
    if test_switch(TEST_PANIC, node) {
        panic!("test panic in node {} ({TEST_PANIC})", node.name);
    }
    if test_switch(TEST_STALL, node) {
        std::thread::sleep(std::time::Duration::from_secs(120));
    }
    let mut out = BTreeMap::new();
    let stage = node.stage.name();
    match node.stage {
        Stage::Dataset => {
            let p: TaskParams = serde_json::from_value(node.params.clone())?;
            let source = Source {
                data_dir: ctx.data_dir.as_deref(),
            };
            let mut f = p.task().make(&source)?.to_file();
            f.metadata.insert("stage".into(), stage.into());
            f.metadata.insert("uinfo_version".into(), VERSION.into());
            out.insert("dataset.safetensors".into(), f.to_bytes());
        }
        Stage::Init => {
            let p: InitParams = serde_json::from_value(node.params.clone())?;
            let shape = Shape {
                model: p.model,
                input: p.input,
                classes: p.classes,
            };
            let weights = model::init(&shape, p.seed);
            let ckpt = Checkpoint::initial(shape, weights, p.seed)?;
            out.insert(
                "checkpoint.safetensors".into(),
                ckpt.to_file(stage, VERSION).to_bytes(),
            );
        }
        Stage::Train => {
            let p: SegmentParams = serde_json::from_value(node.params.clone())?;
            let start = Checkpoint::from_file(&read_tensors(store, inputs, "checkpoint")?)?;
            let data = dataset(store, inputs, "dataset")?;
            let backend = ctx.gpus.backend(node.device)?;
            let (end, logs) = run_segment(&start, &data, &p, backend.as_ref())?;
            out.insert(
                "checkpoint.safetensors".into(),
                end.to_file(stage, VERSION).to_bytes(),
            );
            out.insert("log.parquet".into(), log_table(&logs).to_parquet()?);
        }
        Stage::Extract => {
            let p: ExtractParams = serde_json::from_value(node.params.clone())?;
            let ckpt = Checkpoint::from_file(&read_tensors(store, inputs, "checkpoint")?)?;
            let data = dataset(store, inputs, "dataset")?;
            let backend = ctx.gpus.backend(node.device)?;
            let mut f = extract(&ckpt, &data, &p, backend.as_ref())?;
            f.metadata.insert("stage".into(), stage.into());
            f.metadata.insert("uinfo_version".into(), VERSION.into());
            out.insert("representations.safetensors".into(), f.to_bytes());
        }
        Stage::Probe => {
            let p: ProbeParams = serde_json::from_value(node.params.clone())?;
            let data = dataset(store, inputs, "dataset")?;
            let reps = match &p.extract {
                Some(e) => {
                    let ckpt = Checkpoint::from_file(&read_tensors(store, inputs, "checkpoint")?)?;
                    extract(&ckpt, &data, e, ctx.gpus.backend(node.device)?.as_ref())?
                }
                None => read_tensors(store, inputs, "representations")?,
            };
            out.insert(
                "probe.parquet".into(),
                probe(&reps, &data, &p)?.to_parquet()?,
            );
        }
        Stage::Analyze => {
            let p: AnalyzeParams = serde_json::from_value(node.params.clone())?;
            let probes = p
                .probe_runs
                .iter()
                .enumerate()
                .map(|(i, &r)| Ok((r, read_table(store, inputs, &format!("probe/{i}"))?)))
                .collect::<Result<Vec<_>>>()?;
            let logs = p
                .log_runs
                .iter()
                .enumerate()
                .map(|(i, &r)| Ok((r, read_table(store, inputs, &format!("log/{i}"))?)))
                .collect::<Result<Vec<_>>>()?;
            // Each distinct dataset is read once: CIFAR's are large.
            let mut by_digest: BTreeMap<Digest, (f64, stages::claims::TaskClaims)> =
                BTreeMap::new();
            let mut ceilings = Vec::new();
            let mut claims = None;
            for i in 0..p.runs.len() {
                let name = format!("dataset/{i}");
                let digest = *inputs
                    .get(&name)
                    .ok_or_else(|| anyhow!("input `{name}` is missing"))?;
                if let std::collections::btree_map::Entry::Vacant(e) = by_digest.entry(digest) {
                    let data = dataset(store, inputs, &name)?;
                    let task = data.params.task();
                    e.insert((task.ceiling_bits(&data)?, task.claims()));
                }
                let (ceiling, task_claims) = &by_digest[&digest];
                ceilings.push(*ceiling);
                claims.get_or_insert_with(|| task_claims.clone());
            }
            let mut task = claims.ok_or_else(|| anyhow!("the experiment has no runs"))?;
            if let Some(f) = p.c1_fraction {
                task.c1_fraction = f;
            }
            let a = analyze(&AnalysisInput {
                experiment: p.experiment,
                runs: p.runs,
                probes,
                logs,
                ceiling_bits: ceilings,
                task,
                perturb_axis: p.perturb_axis,
            })?;
            out.insert("usable_info.parquet".into(), a.usable_info.to_parquet()?);
            out.insert("summary.parquet".into(), a.summary.to_parquet()?);
            out.insert("claims.parquet".into(), a.claims.to_parquet()?);
            out.insert("training_log.parquet".into(), a.training_log.to_parquet()?);
        }
        Stage::Report => {
            let text = |k: &str| node.params[k].as_str().unwrap_or_default().to_string();
            let [experiment, description, settings, relevant, irrelevant] = [
                "experiment",
                "description",
                "settings",
                "relevant",
                "irrelevant",
            ]
            .map(text);
            let tables = ["usable_info", "summary", "claims", "training_log"]
                .map(|t| read_table(store, inputs, &format!("{t}.parquet")));
            let [usable_info, summary, claims, training_log] = tables;
            let input = reports::ReportInput {
                experiment: &experiment,
                description: &description,
                settings: &settings,
                usable_info: &usable_info?,
                summary: &summary?,
                claims: &claims?,
                training_log: &training_log?,
                relevant: &relevant,
                irrelevant: &irrelevant,
            };
            out.extend(reports::render(&input)?);
        }
    }
    Ok(out)
}
