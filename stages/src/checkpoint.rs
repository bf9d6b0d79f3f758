//! Checkpoints: weights, optimiser state (momentum buffers), epoch, step counter and the seed from
//! which every epoch's shuffling RNG is derived, in one safetensors file.
//!
//! Tensor names: the model's parameters and buffers under their PyTorch names (e.g. `fc`'s
//! `layers.{i}.weight|bias`, `nn.Linear` layout out × in; batch norm's `running_mean` and
//! `running_var`), `momentum.<parameter>` (SGD momentum buffers), `step` and `epoch` (i64, one element)
//! and `rng.seed` (i64, one element). Metadata: `shape` (JSON), `stage`, `uinfo_version`, `rng`.

use anyhow::{Context, Result};

use crate::model::{Shape, Weights};
use crate::tensors::{NamedTensor, TensorFile};

/// A snapshot of training from which training can resume exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The network's shape.
    pub shape: Shape,
    /// Parameters.
    pub weights: Weights,
    /// SGD momentum buffers, one per parameter (zeros before the first step).
    pub momentum: Weights,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// Seed of the run: epoch e shuffles with `Rng::derive(seed, "shuffle", e)`.
    pub seed: u64,
    /// Set when training diverged: where and how. Training does not continue from such a
    /// checkpoint, and its weights are the last finite ones.
    pub diverged: Option<String>,
}

/// A description of the shuffling RNG, stored in the metadata for readers.
const RNG_DOC: &str = "xoshiro256++; epoch e shuffles with Rng::derive(rng.seed, \"shuffle\", e)";

impl Checkpoint {
    /// A checkpoint at epoch 0 with zero momentum for every parameter; an error when the
    /// weights do not fit the shape.
    pub fn initial(shape: Shape, weights: Weights, seed: u64) -> Result<Checkpoint> {
        let (_, momentum) = crate::model::load(&shape, &weights, &Weights::new())?.state()?;
        Ok(Checkpoint {
            shape,
            weights,
            momentum,
            epoch: 0,
            step: 0,
            seed,
            diverged: None,
        })
    }

    /// The checkpoint as a safetensors file, with `stage` and `version` in its metadata.
    pub fn to_file(&self, stage: &str, uinfo_version: &str) -> TensorFile {
        let mut f = TensorFile::default();
        for (name, (shape, v)) in &self.weights {
            f.insert(name.clone(), NamedTensor::f32(shape.clone(), v.clone()));
        }
        for (name, (shape, v)) in &self.momentum {
            f.insert(
                format!("momentum.{name}"),
                NamedTensor::f32(shape.clone(), v.clone()),
            );
        }
        f.insert("epoch", NamedTensor::i64(vec![1], vec![self.epoch as i64]));
        f.insert("step", NamedTensor::i64(vec![1], vec![self.step as i64]));
        f.insert(
            "rng.seed",
            NamedTensor::i64(vec![1], vec![self.seed as i64]),
        );
        f.metadata.insert(
            "shape".into(),
            serde_json::to_string(&self.shape).expect("json"),
        );
        f.metadata.insert("stage".into(), stage.into());
        f.metadata
            .insert("uinfo_version".into(), uinfo_version.into());
        f.metadata.insert("rng".into(), RNG_DOC.into());
        if let Some(d) = &self.diverged {
            f.metadata.insert("diverged".into(), d.clone());
        }
        f
    }

    /// Reads a checkpoint file back.
    pub fn from_file(f: &TensorFile) -> Result<Checkpoint> {
        let shape: Shape =
            serde_json::from_str(f.meta("shape")?).context("checkpoint metadata `shape`")?;
        let mut weights = Weights::new();
        let mut momentum = Weights::new();
        for (name, t) in &f.tensors {
            if let Some(param) = name.strip_prefix("momentum.") {
                momentum.insert(
                    param.to_string(),
                    (t.shape.clone(), t.as_f32(name)?.to_vec()),
                );
            } else if let Ok(values) = t.as_f32(name) {
                weights.insert(name.clone(), (t.shape.clone(), values.to_vec()));
            }
        }
        let scalar = |n: &str| -> Result<i64> { Ok(f.i64(n)?.first().copied().unwrap_or(0)) };
        Ok(Checkpoint {
            shape,
            weights,
            momentum,
            epoch: scalar("epoch")? as usize,
            step: scalar("step")? as u64,
            seed: scalar("rng.seed")? as u64,
            diverged: f.metadata.get("diverged").cloned(),
        })
    }
}
