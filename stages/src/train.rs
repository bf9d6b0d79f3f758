//! Training (SPEC §1.5): SGD with momentum and weight decay (PyTorch semantics), learning-rate
//! schedules, and one segment of training between two checkpoints.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::checkerboard::{Dataset, Split, INPUT_DIM};
use crate::checkpoint::Checkpoint;
use crate::network::{Network, Weights};
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

/// Inputs of a split as a tensor and its labels as u32 classes.
fn split_tensors(split: &Split, label: &str, device: &Device) -> Result<(Tensor, Tensor)> {
    let x = Tensor::from_slice(&split.inputs, (split.len(), INPUT_DIM), device)?;
    let y: Vec<u32> = split.label(label)?.iter().map(|&v| v as u32).collect();
    let y = Tensor::from_vec(y, split.len(), device)?;
    Ok((x, y))
}

/// Mean cross-entropy (nats) and accuracy of logits against classes.
pub fn loss_and_accuracy(logits: &Tensor, y: &Tensor) -> Result<(f64, f64)> {
    let loss = candle_nn::loss::cross_entropy(logits, y)?.to_scalar::<f32>()? as f64;
    let pred = logits.argmax(D::Minus1)?;
    let correct = pred
        .eq(y)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as f64;
    Ok((loss, correct / y.dims()[0].max(1) as f64))
}

/// Trains from `start` to `params.to_epoch` and returns the new checkpoint and one log row per
/// epoch. Deterministic: epoch e's order depends only on (seed, e), so a chain of segments gives
/// the same bits as one uninterrupted run. When the loss stops being finite, the returned
/// checkpoint is marked diverged (see [`Checkpoint::diverged`]) and training from it is a no-op.
pub fn run_segment(
    start: &Checkpoint,
    data: &Dataset,
    params: &SegmentParams,
    device: &Device,
) -> Result<(Checkpoint, Vec<EpochLog>)> {
    if start.diverged.is_some() {
        return Ok((start.clone(), Vec::new()));
    }
    let opt = &params.optimiser;
    let net = Network::from_weights(&start.shape, &start.weights, device)?;
    let mut momentum: Vec<Tensor> = net
        .named_vars()
        .iter()
        .map(|(name, var)| match start.momentum.get(name) {
            Some((s, v)) => Ok(Tensor::from_slice(v, s.as_slice(), device)?),
            None => Ok(var.as_tensor().zeros_like()?),
        })
        .collect::<Result<_>>()?;
    let train = &data.train;
    let targets = train.label(&params.target)?;
    let (x_val, y_val) = split_tensors(&data.val, &params.target, device)?;
    let n = train.len();
    let mut step = start.step;
    let mut logs = Vec::new();
    for epoch in start.epoch..params.to_epoch {
        let lr = opt.lr_at(epoch, params.phase_start);
        let order = Rng::derive(start.seed, "shuffle", epoch as u64).permutation(n);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0.0f64, 0usize);
        for batch in order.chunks(opt.batch) {
            let mut xb = Vec::with_capacity(batch.len() * INPUT_DIM);
            let mut yb = Vec::with_capacity(batch.len());
            for &i in batch {
                xb.extend_from_slice(&train.inputs[i * INPUT_DIM..(i + 1) * INPUT_DIM]);
                yb.push(targets[i] as u32);
            }
            let x = Tensor::from_vec(xb, (batch.len(), INPUT_DIM), device)?;
            let y = Tensor::from_vec(yb, batch.len(), device)?;
            let logits = net.forward(&x)?.logits;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                return Ok(diverged_at(
                    start,
                    Diverged {
                        epoch: epoch + 1,
                        step,
                        loss: loss_value,
                    },
                    logs,
                ));
            }
            let pred = logits.argmax(D::Minus1)?;
            correct += pred
                .eq(&y)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()? as f64;
            loss_sum += loss_value as f64 * batch.len() as f64;
            seen += batch.len();
            let grads = loss.backward()?;
            for ((_, var), buf) in net.named_vars().into_iter().zip(momentum.iter_mut()) {
                let Some(g) = grads.get(var) else { continue };
                let mut d = g.clone();
                if opt.weight_decay != 0.0 {
                    d = (d + (var.as_tensor() * opt.weight_decay)?)?;
                }
                if opt.momentum != 0.0 {
                    *buf = ((&*buf * opt.momentum)? + d)?;
                    d = buf.clone();
                }
                var.set(&(var.as_tensor() - (d * lr)?)?)?;
            }
            step += 1;
        }
        let (val_loss, val_accuracy) = loss_and_accuracy(&net.forward(&x_val)?.logits, &y_val)?;
        if !val_loss.is_finite() {
            return Ok(diverged_at(
                start,
                Diverged {
                    epoch: epoch + 1,
                    step,
                    loss: val_loss as f32,
                },
                logs,
            ));
        }
        logs.push(EpochLog {
            epoch: epoch + 1,
            step,
            lr,
            batch: opt.batch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct / seen as f64,
            val_loss,
            val_accuracy,
        });
    }
    let names: Vec<String> = net.named_vars().into_iter().map(|(n, _)| n).collect();
    let mut mom = Weights::new();
    for (name, buf) in names.into_iter().zip(&momentum) {
        mom.insert(
            name,
            (buf.dims().to_vec(), buf.flatten_all()?.to_vec1::<f32>()?),
        );
    }
    if params.to_epoch < start.epoch {
        bail!(
            "segment ends at epoch {} before its start {}",
            params.to_epoch,
            start.epoch
        );
    }
    let end = Checkpoint {
        shape: start.shape.clone(),
        weights: net.weights()?,
        momentum: mom,
        epoch: params.to_epoch,
        step,
        seed: start.seed,
        diverged: None,
    };
    Ok((end, logs))
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
