//! Experiment files (SPEC §2.7): TOML, where a list at a scalar setting is a sweep axis and the
//! experiment is the cross product of its axes times the seeds. Everything is validated before
//! anything runs, and errors name the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use stages::analysis::ParamValue;
use stages::decoder::{DecoderKind, DecoderParams};
use stages::extract::ExtractParams;
use stages::model::{Arch, ModelParams, Shape};
use stages::task::checkerboard::{DatasetParams, Encoding};
use stages::task::cifar::{self, CifarParams};
use stages::task::TaskParams;
use stages::train::{Optimiser, Schedule};

use crate::device::Device;
use crate::resources::Resources;
use crate::stage::Stage;

/// Bad experiment input: one message naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ExperimentError {
    /// The file (or built-in name) the error is in.
    pub file: String,
    /// What is wrong, naming the key.
    pub message: String,
}

/// Keys whose lists are values, not sweep axes.
const LIST_KEYS: [&str; 6] = [
    "dataset.coarse",
    "train.checkpoints",
    "train.seeds",
    "probe.labels",
    "probe.layers",
    "probe.decoders",
];

/// The built-in experiments: name, description, TOML text.
pub const BUILTINS: [(&str, &str, &str); 6] = [
    (
        "checkerboard",
        "the default: SGD with batch 32 vs 1024 (lr 0.05, weight decay 5e-3), 3 seeds; colour information rises, then falls only with small batches",
        include_str!("../experiments/checkerboard.toml"),
    ),
    (
        "checkerboard-grid",
        "lr x batch grid (3 x 3) x 3 seeds: final colour information at the last hidden layer across SGD regimes (C2, C3)",
        include_str!("../experiments/checkerboard-grid.toml"),
    ),
    (
        "checkerboard-perturb",
        "first k epochs with batch 32, then batch 1024: does the initial phase change the final representation (C4)?",
        include_str!("../experiments/checkerboard-perturb.toml"),
    ),
    (
        "checkerboard-pretrain",
        "k epochs trained on colour, then on direction: does the colour information go?",
        include_str!("../experiments/checkerboard-pretrain.toml"),
    ),
    (
        "cifar10-resnet18",
        "ResNet-18 on CIFAR-10's coarse label (vehicles vs animals), batch 128 vs 1024, 3 seeds: is the fine information beyond it transient (C5)? Needs the data (--data) and, at full scale, a GPU",
        include_str!("../experiments/cifar10-resnet18.toml"),
    ),
    (
        "cifar100-allcnn",
        "All-CNN-C on CIFAR-100's 20 superclasses, batch 128 vs 1024, 3 seeds: is the fine information beyond them transient (C5)? Needs the data (--data) and, at full scale, a GPU",
        include_str!("../experiments/cifar100-allcnn.toml"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    dataset: DatasetDoc,
    #[serde(default)]
    model: ModelDoc,
    #[serde(default)]
    train: TrainDoc,
    #[serde(default)]
    probe: ProbeDoc,
    #[serde(default)]
    extract: ExtractDoc,
    #[serde(default)]
    claims: ClaimsDoc,
    #[serde(default)]
    resources: BTreeMap<String, Resources>,
}

/// `[dataset]`: the task, and its settings. The checkerboard's settings are refused for CIFAR,
/// and the reverse, so a key that would do nothing is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DatasetDoc {
    task: Option<String>,
    n: Option<usize>,
    val_fraction: Option<f64>,
    encoding: Option<Encoding>,
    noise: Option<f64>,
    seed: Option<u64>,
    coarse: Option<Vec<Vec<u8>>>,
    data: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ModelDoc {
    arch: Arch,
    depth: usize,
    width: usize,
    init_scale: f64,
    width_mult: f64,
}

impl Default for ModelDoc {
    fn default() -> Self {
        let m = ModelParams::default();
        ModelDoc {
            arch: m.arch,
            depth: m.depth,
            width: m.width,
            init_scale: m.init_scale,
            width_mult: m.width_mult,
        }
    }
}

/// `[extract]`: which examples are extracted, and whether representations are stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ExtractDoc {
    keep: bool,
    train_examples: usize,
    val_examples: usize,
    device: Option<Device>,
}

impl Default for ExtractDoc {
    fn default() -> Self {
        let e = ExtractParams::default();
        ExtractDoc {
            keep: true,
            train_examples: e.train_examples,
            val_examples: e.val_examples,
            device: None,
        }
    }
}

/// `[claims]`: thresholds an experiment may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClaimsDoc {
    c1_fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Seeds {
    Count(u64),
    List(Vec<u64>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Checkpoints {
    Named(String),
    List(Vec<usize>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrainDoc {
    target: Option<String>,
    seeds: Seeds,
    epochs: usize,
    lr: f64,
    batch: usize,
    momentum: f64,
    weight_decay: f64,
    schedule: Schedule,
    checkpoints: Checkpoints,
    phases: Vec<PhaseDoc>,
    device: Option<Device>,
}

impl Default for TrainDoc {
    fn default() -> Self {
        TrainDoc {
            target: None,
            seeds: Seeds::Count(1),
            epochs: 100,
            lr: 0.05,
            batch: 32,
            momentum: 0.0,
            weight_decay: 5e-3,
            schedule: Schedule::Constant,
            checkpoints: Checkpoints::Named("default".into()),
            phases: Vec::new(),
            device: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseDoc {
    epochs: usize,
    lr: Option<f64>,
    batch: Option<usize>,
    momentum: Option<f64>,
    weight_decay: Option<f64>,
    schedule: Option<Schedule>,
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ProbeDoc {
    labels: Option<Vec<String>>,
    layers: Vec<String>,
    decoders: Vec<DecoderKind>,
    hidden: usize,
    lr: f64,
    steps: usize,
    eval_every: usize,
    standardize: bool,
    null: NullDoc,
    holdout: f64,
    seed: u64,
    device: Option<Device>,
}

/// `probe.null`: `true` for every run, `false` for none, `"first-seed"` for the first seed of
/// each configuration.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NullDoc {
    Flag(bool),
    Named(String),
}

impl Default for ProbeDoc {
    fn default() -> Self {
        let d = DecoderParams::new(DecoderKind::Linear);
        ProbeDoc {
            labels: None,
            layers: Vec::new(),
            decoders: vec![DecoderKind::Linear],
            hidden: d.hidden,
            lr: d.lr,
            steps: d.steps,
            eval_every: d.eval_every,
            standardize: d.standardize,
            null: NullDoc::Flag(d.null),
            holdout: d.holdout,
            seed: d.seed,
            device: None,
        }
    }
}

/// One phase of training: an optimiser for a number of epochs.
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    /// Optimiser settings.
    pub optimiser: Optimiser,
    /// Epochs in the phase.
    pub epochs: usize,
    /// Label the network learns during the phase.
    pub target: String,
}

/// What to probe at each checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Labels to decode.
    pub labels: Vec<String>,
    /// Layers (empty: all hidden layers).
    pub layers: Vec<String>,
    /// One decoder per family.
    pub decoders: Vec<DecoderParams>,
}

/// One training run: a point of the sweep and a seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Run id: the swept values and the seed, e.g. `batch=32,seed=0`.
    pub id: String,
    /// The swept values (column name, value), in axis order.
    pub params: Vec<(String, ParamValue)>,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// The task and its dataset's parameters.
    pub dataset: TaskParams,
    /// A data folder the experiment file names (`--data` and `UINFO_DATA` come first).
    pub data_dir: Option<PathBuf>,
    /// Network.
    pub model: ModelParams,
    /// The network's input: one example's shape.
    pub input: Vec<usize>,
    /// Label the network learns.
    pub target: String,
    /// Phases, in order (phases of 0 epochs are dropped).
    pub phases: Vec<Phase>,
    /// Epochs at which checkpoints are probed (sorted, within 0..=total).
    pub checkpoints: Vec<usize>,
    /// Probing.
    pub probe: ProbeConfig,
    /// Which examples are extracted.
    pub extract: ExtractParams,
    /// Whether representations are stored (false: extraction and probing are one node).
    pub keep: bool,
    /// C1: the fraction of the ceiling the final relevant bits must reach.
    pub c1_fraction: f64,
    /// Which swept column names belong to the probe section (left out of training node names).
    pub probe_axes: Vec<String>,
    /// Which swept column names belong to the dataset section.
    pub dataset_axes: Vec<String>,
    /// Which swept column names belong to the model section.
    pub model_axes: Vec<String>,
    /// Which swept column names are settings of training phases (a perturbation of training).
    pub phase_axes: Vec<String>,
    /// Where training and extraction run.
    pub devices: Devices,
}

/// Where a run's device-dependent stages run: set by `train.device` and `extract.device`, then
/// by [`choose_devices`]; unset means the CPU. The decoders always run on the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Devices {
    /// Training segments.
    pub train: Option<Device>,
    /// Extraction, in its own node or inside each probe node (`extract.keep = false`).
    pub extract: Option<Device>,
}

impl Run {
    /// Total epochs over all phases.
    pub fn epochs(&self) -> usize {
        self.phases.iter().map(|p| p.epochs).sum()
    }

    /// The configuration: the id without the seed.
    pub fn config(&self) -> String {
        match self.id_with(|_| true, false) {
            s if s.is_empty() => "default".into(),
            s => s,
        }
    }

    /// The id restricted to the given axes (and the seed when `seed` is true).
    pub fn id_with(&self, keep: impl Fn(&str) -> bool, seed: bool) -> String {
        let mut parts: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if seed {
            parts.push(format!("seed={}", self.seed));
        }
        parts.join(",")
    }
}

/// A parsed, validated experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Name (from the file's `name`, else its stem).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Where it came from: a path or `built-in NAME`.
    pub source: String,
    /// The TOML text.
    pub text: String,
    /// Every run, in sweep order.
    pub runs: Vec<Run>,
    /// What each stage's Slurm jobs ask for (`[resources.<stage>]`); never part of a key.
    pub resources: BTreeMap<Stage, Resources>,
}

/// The default checkpoint schedule: dense early, sparse late, always ending at `epochs`.
pub fn default_schedule(epochs: usize) -> Vec<usize> {
    let mut out = vec![
        0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100,
    ];
    let mut e = 120;
    while e <= epochs {
        out.push(e);
        e += 20;
    }
    out.retain(|&x| x <= epochs);
    if out.last() != Some(&epochs) {
        out.push(epochs);
    }
    out
}

/// Finds a built-in experiment by name.
pub fn builtin(name: &str) -> Option<(&'static str, &'static str)> {
    BUILTINS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, text)| (*text, "built-in"))
}

/// Loads an experiment: a path to a TOML file, or a built-in name.
pub fn load(arg: &str) -> Result<Experiment, ExperimentError> {
    let path = Path::new(arg);
    if path.exists() || arg.ends_with(".toml") {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError {
            file: arg.to_string(),
            message: format!("cannot read: {e}"),
        })?;
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("experiment")
            .to_string();
        return parse(&text, arg, &stem);
    }
    match builtin(arg) {
        Some((text, _)) => parse(text, &format!("built-in {arg}"), arg),
        None => Err(ExperimentError {
            file: arg.to_string(),
            message: format!(
                "no such file, and not a built-in experiment (built-ins: {})",
                BUILTINS.iter().map(|b| b.0).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// One sweep axis: the dotted key path, the column name, and its values.
struct Axis {
    path: Vec<String>,
    column: String,
    values: Vec<toml::Value>,
}

/// Parses and validates experiment text; `file` names it in errors, `stem` is the fallback name.
pub fn parse(text: &str, file: &str, stem: &str) -> Result<Experiment, ExperimentError> {
    let err = |message: String| ExperimentError {
        file: file.to_string(),
        message,
    };
    let root: toml::Value =
        toml::from_str(text).map_err(|e| err(format!("malformed TOML: {}", one_line(&e))))?;
    let mut axes = Vec::new();
    collect_axes(&root, &mut Vec::new(), &mut axes);
    for axis in &mut axes {
        one_type(axis).map_err(err)?;
    }
    name_columns(&mut axes);
    let combos = cross_product(&axes);
    let mut runs = Vec::new();
    let mut header: Option<(Option<String>, Option<String>)> = None;
    let mut resources = BTreeMap::new();
    for combo in combos {
        let mut doc = root.clone();
        for (axis, value) in axes.iter().zip(&combo) {
            set_path(&mut doc, &axis.path, value.clone());
        }
        let parsed: FileDoc = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let inner = e
                .into_inner()
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            if path == "." || path.is_empty() {
                err(inner)
            } else {
                err(format!("key `{path}`: {inner}"))
            }
        })?;
        if header.is_none() {
            header = Some((parsed.name.clone(), parsed.description.clone()));
            for (stage, r) in &parsed.resources {
                let st = Stage::parse(stage).ok_or_else(|| {
                    err(format!(
                        "key `resources.{stage}`: unknown stage (dataset, init, train, extract, probe, analyze, report)"
                    ))
                })?;
                resources.insert(st, r.clone());
            }
        }
        let params: Vec<(String, ParamValue)> = axes
            .iter()
            .zip(&combo)
            .map(|(a, v)| (a.column.clone(), param_value(v)))
            .collect();
        runs.extend(expand_runs(&parsed, &axes, params).map_err(err)?);
    }
    let (name, description) = header.unwrap_or_default();
    let name = name.unwrap_or_else(|| stem.to_string());
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(err(format!(
            "key `name`: expected a plain name, got {name:?}"
        )));
    }
    Ok(Experiment {
        name,
        description: description.unwrap_or_default(),
        source: file.to_string(),
        text: text.to_string(),
        runs,
        resources,
    })
}

/// A TOML parse error on one line: where, then what.
fn one_line(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let place = lines
        .first()
        .map(|l| l.trim_start_matches("TOML parse error at "))
        .unwrap_or("");
    let what = lines.last().copied().unwrap_or("");
    if lines.len() > 1 {
        format!("{place}: {what}")
    } else {
        what.to_string()
    }
}

fn collect_axes(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<Axis>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                path.push(k.clone());
                collect_axes(child, path, out);
                path.pop();
            }
        }
        toml::Value::Array(items) => {
            let dotted = path.join(".");
            if items.iter().all(|i| i.is_table()) && !items.is_empty() {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    collect_axes(item, path, out);
                    path.pop();
                }
            } else if !LIST_KEYS.contains(&dotted.as_str())
                && !dotted.ends_with("schedule")
                && !dotted.starts_with("resources.")
            {
                out.push(Axis {
                    path: path.clone(),
                    column: String::new(),
                    values: items.clone(),
                });
            }
        }
        _ => {}
    }
}

/// Makes a sweep's values one type: integers among floats become floats (`lr = [0.1, 1]`);
/// any other mix is an error naming the key.
fn one_type(axis: &mut Axis) -> Result<(), String> {
    let kinds: std::collections::BTreeSet<&str> =
        axis.values.iter().map(|v| v.type_str()).collect();
    match kinds.len() {
        0 | 1 => Ok(()),
        2 if kinds.contains("integer") && kinds.contains("float") => {
            for v in &mut axis.values {
                if let toml::Value::Integer(i) = v {
                    *v = toml::Value::Float(*i as f64);
                }
            }
            Ok(())
        }
        _ => Err(format!(
            "key `{}`: the values of a sweep must have one type, got {}",
            axis.path.join("."),
            kinds.into_iter().collect::<Vec<_>>().join(" and ")
        )),
    }
}

/// Column names: the leaf key where unique, else the path joined with `_`.
fn name_columns(axes: &mut [Axis]) {
    let leaves: Vec<String> = axes
        .iter()
        .map(|a| a.path.last().cloned().unwrap_or_default())
        .collect();
    for (i, a) in axes.iter_mut().enumerate() {
        let leaf = &leaves[i];
        a.column = if leaves.iter().filter(|l| *l == leaf).count() == 1 {
            leaf.clone()
        } else {
            a.path.join("_")
        };
    }
}

fn cross_product(axes: &[Axis]) -> Vec<Vec<toml::Value>> {
    let mut combos: Vec<Vec<toml::Value>> = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::new();
        for c in &combos {
            for v in &axis.values {
                let mut c2 = c.clone();
                c2.push(v.clone());
                next.push(c2);
            }
        }
        combos = next;
    }
    combos
}

fn set_path(doc: &mut toml::Value, path: &[String], value: toml::Value) {
    let mut cur = doc;
    for key in path {
        cur = match cur {
            toml::Value::Table(t) => t.get_mut(key).expect("axis path exists"),
            toml::Value::Array(a) => &mut a[key.parse::<usize>().expect("index")],
            _ => unreachable!("axis paths go through tables and arrays"),
        };
    }
    *cur = value;
}

fn param_value(v: &toml::Value) -> ParamValue {
    match v {
        toml::Value::Integer(i) => ParamValue::I64(*i),
        toml::Value::Float(f) => ParamValue::F64(*f),
        toml::Value::String(s) => ParamValue::Str(s.clone()),
        other => ParamValue::Str(other.to_string()),
    }
}

fn expand_runs(
    doc: &FileDoc,
    axes: &[Axis],
    params: Vec<(String, ParamValue)>,
) -> Result<Vec<Run>, String> {
    let dataset = task_params(&doc.dataset)?;
    let task = dataset.task();
    let m = &doc.model;
    positive("model.init_scale", m.init_scale)?;
    let input = task.input_shape();
    if m.arch.convolutional() {
        positive("model.width_mult", m.width_mult)?;
        if input.len() != 3 {
            return Err(format!(
                "key `model.arch`: {} takes images, and task {} gives feature vectors (use \"fc\")",
                m.arch.name(),
                dataset.name()
            ));
        }
    } else {
        positive("model.depth", m.depth as f64)?;
        positive("model.width", m.width as f64)?;
    }
    let model = ModelParams {
        arch: m.arch,
        depth: m.depth,
        width: m.width,
        init_scale: m.init_scale,
        width_mult: m.width_mult,
    };
    let t = &doc.train;
    let target = t
        .target
        .clone()
        .unwrap_or_else(|| task.default_target().to_string());
    let classes = task
        .classes(&target)
        .map_err(|e| format!("key `train.target`: {e}"))?;
    let n_train = task.train_size().unwrap_or(usize::MAX);
    let check_opt = |prefix: &str, o: &Optimiser| -> Result<(), String> {
        positive(&format!("{prefix}lr"), o.lr)?;
        positive(&format!("{prefix}batch"), o.batch as f64)?;
        if o.batch > n_train {
            return Err(format!(
                "key `{prefix}batch`: batch {} is larger than the training split ({n_train} examples)",
                o.batch
            ));
        }
        if !(0.0..1.0).contains(&o.momentum) {
            return Err(format!(
                "key `{prefix}momentum`: expected a number in [0, 1), got {}",
                o.momentum
            ));
        }
        non_negative(&format!("{prefix}weight_decay"), o.weight_decay)?;
        match o.schedule {
            Schedule::Constant => Ok(()),
            Schedule::Step { every, gamma } => {
                positive(&format!("{prefix}schedule.every"), every as f64)?;
                positive(&format!("{prefix}schedule.gamma"), gamma)
            }
            Schedule::Exponential { gamma } => positive(&format!("{prefix}schedule.gamma"), gamma),
        }
    };
    let base = Optimiser {
        lr: t.lr,
        batch: t.batch,
        momentum: t.momentum,
        weight_decay: t.weight_decay,
        schedule: t.schedule.clone(),
    };
    let phases: Vec<Phase> = if t.phases.is_empty() {
        check_opt("train.", &base)?;
        vec![Phase {
            optimiser: base,
            epochs: t.epochs,
            target: target.clone(),
        }]
    } else {
        let mut out = Vec::new();
        for (i, p) in t.phases.iter().enumerate() {
            let o = Optimiser {
                lr: p.lr.unwrap_or(base.lr),
                batch: p.batch.unwrap_or(base.batch),
                momentum: p.momentum.unwrap_or(base.momentum),
                weight_decay: p.weight_decay.unwrap_or(base.weight_decay),
                schedule: p.schedule.clone().unwrap_or(base.schedule.clone()),
            };
            check_opt(&format!("train.phases.{i}."), &o)?;
            let target = p.target.clone().unwrap_or(target.clone());
            let k = task
                .classes(&target)
                .map_err(|e| format!("key `train.phases.{i}.target`: {e}"))?;
            if k != classes {
                return Err(format!(
                    "key `train.phases.{i}.target`: `{target}` has {k} classes, but the network's output has {classes} (from `train.target`)"
                ));
            }
            out.push(Phase {
                optimiser: o,
                epochs: p.epochs,
                target,
            });
        }
        out.retain(|p| p.epochs > 0);
        out
    };
    let total: usize = phases.iter().map(|p| p.epochs).sum();
    positive(
        if t.phases.is_empty() {
            "train.epochs"
        } else {
            "train.phases"
        },
        total as f64,
    )?;
    let mut checkpoints = match &t.checkpoints {
        Checkpoints::Named(s) if s == "default" => default_schedule(total),
        Checkpoints::Named(s) => {
            return Err(format!(
                "key `train.checkpoints`: expected \"default\" or a list of epochs, got {s:?}"
            ))
        }
        Checkpoints::List(l) => {
            if let Some(bad) = l.iter().find(|&&e| e > total) {
                return Err(format!(
                    "key `train.checkpoints`: epoch {bad} is beyond the last epoch ({total})"
                ));
            }
            l.clone()
        }
    };
    checkpoints.extend([0, total]);
    checkpoints.sort_unstable();
    checkpoints.dedup();
    let p = &doc.probe;
    let labels = p
        .labels
        .clone()
        .unwrap_or_else(|| task.default_probe_labels());
    if labels.is_empty() {
        return Err("key `probe.labels`: expected at least one label".into());
    }
    for l in &labels {
        if let Some(d) = task.derived().iter().find(|d| d.name == l) {
            return Err(format!(
                "key `probe.labels`: `{l}` is derived from `{}` and `{}`: probe those and it is measured",
                d.of, d.minus
            ));
        }
        task.classes(l)
            .map_err(|e| format!("key `probe.labels`: {e}"))?;
    }
    let known = Shape {
        model: model.clone(),
        input: input.clone(),
        classes,
    }
    .probed_layers();
    for l in &p.layers {
        if !known.contains(l) {
            return Err(format!(
                "key `probe.layers`: layer {l:?} does not exist (this network has {})",
                known.join(", ")
            ));
        }
    }
    if p.decoders.is_empty() {
        return Err("key `probe.decoders`: expected at least one of \"linear\", \"mlp\"".into());
    }
    positive("probe.lr", p.lr)?;
    positive("probe.hidden", p.hidden as f64)?;
    positive("probe.steps", p.steps as f64)?;
    positive("probe.eval_every", p.eval_every as f64)?;
    if !(p.holdout > 0.0 && p.holdout < 1.0) {
        return Err(format!(
            "key `probe.holdout`: expected a number between 0 and 1, got {}",
            p.holdout
        ));
    }
    let probe = |null: bool| ProbeConfig {
        labels: labels.clone(),
        layers: p.layers.clone(),
        decoders: p
            .decoders
            .iter()
            .map(|&kind| DecoderParams {
                kind,
                hidden: p.hidden,
                lr: p.lr,
                steps: p.steps,
                eval_every: p.eval_every,
                standardize: p.standardize,
                null,
                holdout: p.holdout,
                seed: p.seed,
            })
            .collect(),
    };
    let seeds: Vec<u64> = match &t.seeds {
        Seeds::Count(0) => return Err("key `train.seeds`: expected at least one seed".into()),
        Seeds::Count(n) => (0..*n).collect(),
        Seeds::List(l) if l.is_empty() => {
            return Err("key `train.seeds`: expected at least one seed".into())
        }
        Seeds::List(l) => l.clone(),
    };
    let null_for = |seed: u64| match &p.null {
        NullDoc::Flag(all) => Ok(*all),
        NullDoc::Named(s) if s == "first-seed" => Ok(seed == seeds[0]),
        NullDoc::Named(s) => Err(format!(
            "key `probe.null`: expected true, false or \"first-seed\", got {s:?}"
        )),
    };
    if let Some(d @ Device::Cuda(_)) = p.device {
        return Err(format!(
            "key `probe.device`: the decoders run on the CPU only, not on {d}; set `train.device` and `extract.device`"
        ));
    }
    let e = &doc.extract;
    positive("extract.train_examples", e.train_examples as f64)?;
    positive("extract.val_examples", e.val_examples as f64)?;
    let c1_fraction = doc.claims.c1_fraction.unwrap_or(task.claims().c1_fraction);
    if !(c1_fraction > 0.0 && c1_fraction <= 1.0) {
        return Err(format!(
            "key `claims.c1_fraction`: expected a number in (0, 1], got {c1_fraction}"
        ));
    }
    let data_dir = doc.dataset.data.as_ref().map(PathBuf::from);
    let section_axes = |section: &str| -> Vec<String> {
        axes.iter()
            .filter(|a| a.path.first().map(String::as_str) == Some(section))
            .map(|a| a.column.clone())
            .collect()
    };
    let phase_axes: Vec<String> = axes
        .iter()
        .filter(|a| a.path.len() > 2 && a.path[0] == "train" && a.path[1] == "phases")
        .map(|a| a.column.clone())
        .collect();
    seeds
        .iter()
        .map(|&seed| {
            let mut run = Run {
                id: String::new(),
                params: params.clone(),
                seed,
                dataset: dataset.clone(),
                data_dir: data_dir.clone(),
                model: model.clone(),
                input: input.clone(),
                target: target.clone(),
                phases: phases.clone(),
                checkpoints: checkpoints.clone(),
                probe: probe(null_for(seed)?),
                extract: ExtractParams {
                    train_examples: e.train_examples,
                    val_examples: e.val_examples,
                },
                keep: e.keep,
                c1_fraction,
                probe_axes: section_axes("probe"),
                dataset_axes: section_axes("dataset"),
                model_axes: section_axes("model"),
                phase_axes: phase_axes.clone(),
                devices: Devices {
                    train: t.device,
                    extract: e.device,
                },
            };
            run.id = run.id_with(|_| true, true);
            Ok(run)
        })
        .collect()
}

/// The task and its dataset's parameters from `[dataset]`.
fn task_params(d: &DatasetDoc) -> Result<TaskParams, String> {
    let task = d.task.as_deref().unwrap_or("checkerboard");
    let set = |key: &str, given: bool| -> Result<(), String> {
        if given {
            Err(format!("key `dataset.{key}`: not a setting of task {task}"))
        } else {
            Ok(())
        }
    };
    if task == "checkerboard" {
        set("coarse", d.coarse.is_some())?;
        set("data", d.data.is_some())?;
        let p = DatasetParams::default();
        let p = DatasetParams {
            n: d.n.unwrap_or(p.n),
            val_fraction: d.val_fraction.unwrap_or(p.val_fraction),
            encoding: d.encoding.unwrap_or(p.encoding),
            noise: d.noise.unwrap_or(p.noise),
            seed: d.seed.unwrap_or(p.seed),
        };
        positive("dataset.n", p.n as f64)?;
        if !(p.val_fraction > 0.0 && p.val_fraction < 1.0) {
            return Err(format!(
                "key `dataset.val_fraction`: expected a number between 0 and 1, got {}",
                p.val_fraction
            ));
        }
        non_negative("dataset.noise", p.noise)?;
        return Ok(TaskParams::Checkerboard(p));
    }
    for (key, given) in [
        ("n", d.n.is_some()),
        ("val_fraction", d.val_fraction.is_some()),
        ("encoding", d.encoding.is_some()),
        ("noise", d.noise.is_some()),
        ("seed", d.seed.is_some()),
    ] {
        set(key, given)?;
    }
    match task {
        "cifar10" => {
            let coarse = d.coarse.clone().unwrap_or_else(|| {
                cifar::VEHICLES_VS_ANIMALS
                    .iter()
                    .map(|g| g.to_vec())
                    .collect()
            });
            cifar::check_grouping(&coarse).map_err(|e| format!("key `dataset.coarse`: {e}"))?;
            Ok(TaskParams::Cifar10(CifarParams {
                coarse,
                files: BTreeMap::new(),
            }))
        }
        "cifar100" => {
            set("coarse", d.coarse.is_some())?;
            Ok(TaskParams::Cifar100(CifarParams::default()))
        }
        other => Err(format!(
            "key `dataset.task`: unknown task {other:?} (known: checkerboard, cifar10, cifar100)"
        )),
    }
}

/// Settles where every run's training and extraction run: `cli` (`--device`) for all, else what
/// the experiment file says, else `env` (`UINFO_DEVICE`), else the CPU.
pub fn choose_devices(exp: &mut Experiment, cli: Option<Device>, env: Option<Device>) {
    let pick = |file: Option<Device>| Some(cli.or(file).or(env).unwrap_or_default());
    for run in &mut exp.runs {
        run.devices.train = pick(run.devices.train);
        run.devices.extract = pick(run.devices.extract);
    }
}

/// Finds the data of every run whose task reads them (CIFAR), checks them, and records their
/// digests in the runs' dataset parameters: what keys their dataset nodes. The folder is `dir`
/// (`--data` or `UINFO_DATA`), else the one the experiment file names. A batch larger than the
/// training split found is an error naming the key.
pub fn locate_data(exp: &mut Experiment, dir: Option<&Path>) -> Result<(), ExperimentError> {
    let source = exp.source.clone();
    let err = |message: String| ExperimentError {
        file: source.clone(),
        message,
    };
    type Located = (TaskParams, Option<usize>);
    let mut seen: BTreeMap<(String, Option<PathBuf>), Located> = BTreeMap::new();
    for run in &mut exp.runs {
        let folder = dir.map(Path::to_path_buf).or(run.data_dir.clone());
        let k = (format!("{:?}", run.dataset), folder.clone());
        if !seen.contains_key(&k) {
            let mut located = run.dataset.clone();
            let train = located
                .locate(folder.as_deref())
                .map_err(|e| err(format!("{e:#}")))?;
            seen.insert(k.clone(), (located, train));
        }
        let (located, train) = &seen[&k];
        run.dataset = located.clone();
        let Some(train) = train else { continue };
        for (i, phase) in run.phases.iter().enumerate() {
            if phase.optimiser.batch > *train {
                let key = if run.phases.len() > 1 {
                    format!("train.phases.{i}.batch")
                } else {
                    "train.batch".into()
                };
                return Err(err(format!(
                    "key `{key}`: batch {} is larger than the training split ({train} images)",
                    phase.optimiser.batch
                )));
            }
        }
    }
    Ok(())
}

fn positive(key: &str, v: f64) -> Result<(), String> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(format!("key `{key}`: expected a positive number, got {v}"))
    }
}

fn non_negative(key: &str, v: f64) -> Result<(), String> {
    if v >= 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(format!("key `{key}`: expected a number >= 0, got {v}"))
    }
}

/// The column names of an experiment's swept parameters.
pub fn axis_columns(exp: &Experiment) -> Vec<String> {
    exp.runs
        .first()
        .map(|r| r.params.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default()
}

/// Runs grouped by configuration, in order.
pub fn configs(exp: &Experiment) -> BTreeMap<String, Vec<&Run>> {
    let mut out: BTreeMap<String, Vec<&Run>> = BTreeMap::new();
    for r in &exp.runs {
        out.entry(r.config()).or_default().push(r);
    }
    out
}
