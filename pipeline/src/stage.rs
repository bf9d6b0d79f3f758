//! The pipeline's stages: names, implementation versions (bump by hand when a stage's output
//! bytes would change), output files, and whether the numerics domain enters their keys.

use serde::{Deserialize, Serialize};

/// A stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Generates a dataset.
    Dataset,
    /// Initialises a network (checkpoint at epoch 0).
    Init,
    /// Trains one segment between two checkpoints.
    Train,
    /// Extracts representations at a checkpoint.
    Extract,
    /// Measures usable information with one decoder.
    Probe,
    /// Builds the analysis tables.
    Analyze,
    /// Writes the report.
    Report,
}

/// Every stage, in pipeline order.
pub const ALL: [Stage; 7] = [
    Stage::Dataset,
    Stage::Init,
    Stage::Train,
    Stage::Extract,
    Stage::Probe,
    Stage::Analyze,
    Stage::Report,
];

impl Stage {
    /// The stage's name in keys, node names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Dataset => "dataset",
            Stage::Init => "init",
            Stage::Train => "train",
            Stage::Extract => "extract",
            Stage::Probe => "probe",
            Stage::Analyze => "analyze",
            Stage::Report => "report",
        }
    }

    /// Parses a stage name.
    pub fn parse(s: &str) -> Option<Stage> {
        ALL.into_iter().find(|st| st.name() == s)
    }

    /// Implementation version: part of every key of this stage.
    pub fn version(self) -> u32 {
        match self {
            Stage::Dataset => 2,
            Stage::Init => 1,
            Stage::Train => 4,
            Stage::Extract => 4,
            Stage::Probe => 6,
            Stage::Analyze => 4,
            Stage::Report => 4,
        }
    }

    /// Whether the stage's output bytes depend on the numerics domain (device and dtype).
    pub fn domain_dependent(self) -> bool {
        matches!(self, Stage::Train | Stage::Extract | Stage::Probe)
    }

    /// The files the stage always produces (the report adds one PNG and one SVG per figure).
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            Stage::Dataset => &["dataset.safetensors"],
            Stage::Init => &["checkpoint.safetensors"],
            Stage::Train => &["checkpoint.safetensors", "log.parquet"],
            Stage::Extract => &["representations.safetensors"],
            Stage::Probe => &["probe.parquet"],
            Stage::Analyze => &[
                "usable_info.parquet",
                "summary.parquet",
                "claims.parquet",
                "training_log.parquet",
            ],
            Stage::Report => &["report.md", "report.html"],
        }
    }
}
