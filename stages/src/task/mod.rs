//! Tasks: what a network is trained on and which labels are measured. A task knows its labels
//! (name, number of classes), which one a network learns by default, the labels derived from
//! others, what the paper's claims are about on it, its ceilings, and how its data are made or
//! read. Callers ask the task; nothing outside this module branches on which task it is.

pub mod checkerboard;
pub mod cifar;

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::claims::TaskClaims;
use crate::data::Dataset;

/// A label of every example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Its name, e.g. `direction`, `coarse`.
    pub name: String,
    /// Number of classes.
    pub classes: usize,
}

/// A label measured as the difference of two others' usable information, e.g.
/// `fine_beyond_coarse` = I(fine) − I(coarse): its rows carry bits only, and its ceiling is the
/// difference of the two labels' entropies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// Its name.
    pub name: &'static str,
    /// The label whose bits it starts from.
    pub of: &'static str,
    /// The label whose bits it subtracts.
    pub minus: &'static str,
}

/// Where a task's data come from when they are read rather than generated.
#[derive(Clone, Copy, Debug, Default)]
pub struct Source<'a> {
    /// The data folder (`--data DIR` or `UINFO_DATA`).
    pub data_dir: Option<&'a Path>,
}

/// What the pipeline asks of a task.
pub trait Task {
    /// One example as a network sees it: `[features]`, or `[height, width, channels]`.
    fn input_shape(&self) -> Vec<usize>;
    /// Every label of the task's examples.
    fn labels(&self) -> Vec<Label>;
    /// Labels derived from two measured ones.
    fn derived(&self) -> Vec<Derived>;
    /// The label a network learns unless the experiment says otherwise.
    fn default_target(&self) -> &'static str;
    /// The labels probed unless the experiment says otherwise.
    fn default_probe_labels(&self) -> Vec<String>;
    /// What the claims are about on this task, with the default C1 fraction.
    fn claims(&self) -> TaskClaims;
    /// The most bits any decoder can read about the relevant label (for C1).
    fn ceiling_bits(&self, data: &Dataset) -> Result<f64>;
    /// Makes or reads the dataset.
    fn make(&self, source: &Source) -> Result<Dataset>;
    /// Training examples, when the parameters tell (a generated dataset).
    fn train_size(&self) -> Option<usize>;

    /// The number of classes of a label, or an error naming the labels there are.
    fn classes(&self, label: &str) -> Result<usize> {
        let labels = self.labels();
        labels
            .iter()
            .find(|l| l.name == label)
            .map(|l| l.classes)
            .ok_or_else(|| {
                let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
                anyhow::anyhow!("unknown label `{label}` (known: {})", names.join(", "))
            })
    }
}

/// A task and its parameters: what a dataset node is made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", content = "params", rename_all = "lowercase")]
pub enum TaskParams {
    /// The checkerboard task (SPEC §1.2).
    Checkerboard(checkerboard::DatasetParams),
    /// CIFAR-10 with a coarse grouping of its classes (SPEC §1.3).
    Cifar10(cifar::CifarParams),
    /// CIFAR-100 with its 20 superclasses.
    Cifar100(cifar::CifarParams),
}

impl TaskParams {
    /// The task's name in experiment files.
    pub fn name(&self) -> &'static str {
        match self {
            TaskParams::Checkerboard(_) => "checkerboard",
            TaskParams::Cifar10(_) => "cifar10",
            TaskParams::Cifar100(_) => "cifar100",
        }
    }

    /// Reads and checks the data of a task that reads them (none for a generated one), and
    /// records their digests in the parameters, where they key the dataset node. Returns the
    /// number of training examples when only the data tell it.
    pub fn locate(&mut self, dir: Option<&Path>) -> Result<Option<usize>> {
        let name = self.name();
        let (variant, params) = match self {
            TaskParams::Checkerboard(_) => return Ok(None),
            TaskParams::Cifar10(p) => (cifar::Variant::Ten, p),
            TaskParams::Cifar100(p) => (cifar::Variant::Hundred, p),
        };
        let dir = dir.ok_or_else(|| {
            anyhow::anyhow!(
                "task {name} reads its data from a folder: give it with --data DIR or UINFO_DATA; it must hold {}",
                variant.expected()
            )
        })?;
        let files = cifar::read_files(variant, dir)?;
        params.files = cifar::digests(&files);
        let train = files[..files.len() - 1]
            .iter()
            .map(|(_, bytes)| bytes.len() / variant.record())
            .sum();
        Ok(Some(train))
    }

    /// The task.
    pub fn task(&self) -> Box<dyn Task + '_> {
        match self {
            TaskParams::Checkerboard(p) => Box::new(p.clone()),
            TaskParams::Cifar10(p) => Box::new(cifar::Cifar {
                variant: cifar::Variant::Ten,
                params: p,
            }),
            TaskParams::Cifar100(p) => Box::new(cifar::Cifar {
                variant: cifar::Variant::Hundred,
                params: p,
            }),
        }
    }
}
