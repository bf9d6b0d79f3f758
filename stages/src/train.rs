//! Training (SPEC §1.5): SGD with momentum and weight decay (PyTorch semantics), learning-rate
//! schedules, and one segment of training between two checkpoints.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::data::{Batcher, Dataset, Inputs};
use crate::kernels::xent_sums;
use crate::model::{Backend, Forward, Model, Sgd};
use crate::rng::Rng;

/// How the learning rate changes with the epoch within a phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// The same rate throughout.
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor per decay.
        gamma: f64,
    },
    /// Multiply by `gamma` every epoch.
    Exponential {
        /// Factor per epoch.
        gamma: f64,
    },
}

/// The optimiser settings of one phase of training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimiser {
    /// Base learning rate of the phase.
    pub lr: f64,
    /// Mini-batch size.
    pub batch: usize,
    /// SGD momentum.
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Learning-rate schedule, counted from the phase's first epoch.
    pub schedule: Schedule,
}

impl Optimiser {
    /// Learning rate during `epoch` (0-based) of a phase that began at `phase_start`.
    pub fn lr_at(&self, epoch: usize, phase_start: usize) -> f64 {
        let k = epoch.saturating_sub(phase_start);
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Step { every, gamma } => self.lr * gamma.powi((k / every.max(1)) as i32),
            Schedule::Exponential { gamma } => self.lr * gamma.powi(k as i32),
        }
    }
}

/// One stretch of training: from the parent checkpoint's epoch to `to_epoch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentParams {
    /// Optimiser of the phase this segment belongs to.
    pub optimiser: Optimiser,
    /// First epoch of that phase (for the schedule).
    pub phase_start: usize,
    /// Epoch the segment ends at (exclusive of further training).
    pub to_epoch: usize,
    /// Label the network is trained to predict.
    pub target: String,
}

/// Metrics of one epoch of training.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochLog {
    /// Epochs completed (1-based).
    pub epoch: usize,
    /// Optimiser steps completed.
    pub step: u64,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mini-batch size.
    pub batch: usize,
    /// Mean training loss over the epoch's mini-batches (nats).
    pub train_loss: f64,
    /// Training accuracy over the epoch's mini-batches.
    pub train_accuracy: f64,
    /// Validation loss at the end of the epoch (nats).
    pub val_loss: f64,
    /// Validation accuracy at the end of the epoch.
    pub val_accuracy: f64,
}

/// Training stopped because the loss stopped being a finite number.
#[derive(Debug, thiserror::Error)]
#[error("training diverged: loss is {loss} at epoch {epoch}, step {step}")]
pub struct Diverged {
    /// Epoch (1-based) during which it happened.
    pub epoch: usize,
    /// Step at which it happened.
    pub step: u64,
    /// The loss value.
    pub loss: f32,
}

/// Trains from `start` to `params.to_epoch` and returns the new checkpoint and one log row per
/// epoch. Deterministic: epoch e's order depends only on (seed, e), so a chain of segments gives
/// the same bits as one uninterrupted run, and the arithmetic ([`crate::kernels`]) gives the same
/// bits on every CPU. When the loss stops being finite, the returned checkpoint is marked
/// diverged (see [`Checkpoint::diverged`]) and training from it is a no-op. The network runs on
/// `backend`; its errors (a GPU out of memory) name the batch size.
pub fn run_segment(
    start: &Checkpoint,
    data: &Dataset,
    params: &SegmentParams,
    backend: &dyn Backend,
) -> Result<(Checkpoint, Vec<EpochLog>)> {
    if start.diverged.is_some() {
        return Ok((start.clone(), Vec::new()));
    }
    if params.to_epoch < start.epoch {
        bail!(
            "segment ends at epoch {} before its start {}",
            params.to_epoch,
            start.epoch
        );
    }
    let opt = &params.optimiser;
    let mut model = backend.load(&start.shape, &start.weights, &start.momentum)?;
    let train = Batcher::new(&data.train, data.norm.as_ref());
    let val = Batcher::new(&data.val, data.norm.as_ref());
    let targets = data.train.label(&params.target)?;
    let val_targets = data.val.label(&params.target)?;
    let images = matches!(data.train.inputs, Inputs::Images { .. });
    let n = data.train.len();
    let mut x = vec![0f32; opt.batch * train.row_size()];
    let mut y = vec![0usize; opt.batch];
    let mut step = start.step;
    let mut logs = Vec::new();
    for epoch in start.epoch..params.to_epoch {
        let lr = opt.lr_at(epoch, params.phase_start);
        let sgd = Sgd {
            lr: lr as f32,
            momentum: opt.momentum as f32,
            weight_decay: opt.weight_decay as f32,
        };
        let order = Rng::derive(start.seed, "shuffle", epoch as u64).permutation(n);
        let mut augment = images.then(|| Rng::derive(start.seed, "augment", epoch as u64));
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for batch in order.chunks(opt.batch) {
            let rows = batch.len();
            train.gather(batch, augment.as_mut(), &mut x[..rows * train.row_size()]);
            for (t, &i) in y.iter_mut().zip(batch) {
                *t = targets[i] as usize;
            }
            let (loss, hits) = model
                .step(&x[..rows * train.row_size()], &y[..rows], &sgd)
                .with_context(|| {
                    format!("training step {} at batch size {}", step + 1, opt.batch)
                })?;
            if !loss.is_finite() {
                let d = Diverged {
                    epoch: epoch + 1,
                    step,
                    loss: loss / rows as f32,
                };
                return Ok(diverged_at(start, d, logs));
            }
            loss_sum += loss as f64;
            correct += hits;
            step += 1;
        }
        let (val_loss, val_accuracy) =
            evaluate(model.as_ref(), &val, val_targets, start.shape.classes)?;
        if !val_loss.is_finite() {
            let d = Diverged {
                epoch: epoch + 1,
                step,
                loss: val_loss as f32,
            };
            return Ok(diverged_at(start, d, logs));
        }
        logs.push(EpochLog {
            epoch: epoch + 1,
            step,
            lr,
            batch: opt.batch,
            train_loss: loss_sum / n as f64,
            train_accuracy: correct as f64 / n as f64,
            val_loss,
            val_accuracy,
        });
    }
    let (weights, momentum) = model.state()?;
    let end = Checkpoint {
        shape: start.shape.clone(),
        weights,
        momentum,
        epoch: params.to_epoch,
        step,
        seed: start.seed,
        diverged: None,
    };
    Ok((end, logs))
}

/// Examples per eval-mode forward pass: bounds the memory of extraction and validation.
pub const EVAL_BATCH: usize = 256;

/// Runs the model in eval mode over every example of a split, `EVAL_BATCH` at a time, handing
/// each batch's first row and its forward pass to `each`. Device errors name the batch size.
pub fn eval_batches(
    model: &dyn Model,
    split: &Batcher,
    mut each: impl FnMut(usize, Forward),
) -> Result<()> {
    let n = split.len();
    let mut x = vec![0f32; EVAL_BATCH.min(n) * split.row_size()];
    for start in (0..n).step_by(EVAL_BATCH) {
        let rows: Vec<usize> = (start..(start + EVAL_BATCH).min(n)).collect();
        let x = &mut x[..rows.len() * split.row_size()];
        split.gather(&rows, None, x);
        let out = model
            .forward(x)
            .with_context(|| format!("eval-mode forward pass at batch size {}", rows.len()))?;
        each(start, out);
    }
    Ok(())
}

/// Mean cross-entropy (nats) and accuracy of the model in eval mode on a split.
fn evaluate(
    model: &dyn Model,
    split: &Batcher,
    targets: &[i64],
    classes: usize,
) -> Result<(f64, f64)> {
    let (mut ce, mut correct) = (0f64, 0usize);
    eval_batches(model, split, |start, out| {
        let rows = out.logits.len() / classes.max(1);
        let (c, hits) = xent_sums(&out.logits, &targets[start..start + rows], classes);
        ce += c;
        correct += hits;
    })?;
    let n = targets.len().max(1) as f64;
    Ok((ce / n, correct as f64 / n))
}

/// The result of a segment whose loss stopped being finite: the segment's starting weights,
/// marked with where and how it diverged, and the epochs completed before.
fn diverged_at(
    start: &Checkpoint,
    d: Diverged,
    logs: Vec<EpochLog>,
) -> (Checkpoint, Vec<EpochLog>) {
    let end = Checkpoint {
        diverged: Some(d.to_string()),
        ..start.clone()
    };
    (end, logs)
}
