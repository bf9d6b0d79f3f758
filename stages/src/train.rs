//! Training (SPEC §1.5): SGD with momentum and weight decay (PyTorch semantics), learning-rate
//! schedules, and one segment of training between two checkpoints.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::checkerboard::Dataset;
use crate::checkpoint::Checkpoint;
use crate::kernels::{self, mean_xent};
use crate::network::{Fc, Weights};
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
/// diverged (see [`Checkpoint::diverged`]) and training from it is a no-op.
pub fn run_segment(
    start: &Checkpoint,
    data: &Dataset,
    params: &SegmentParams,
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
    let mut net = Fc::from_weights(&start.shape, &start.weights)?;
    let mut momentum = Momentum::of(&net, &start.momentum)?;
    let train = &data.train;
    let targets = train.label(&params.target)?;
    let val_targets = data.val.label(&params.target)?;
    let classes = net.dims.last().map(|d| d.1).unwrap_or(0);
    let mut ws = Workspace::new(&net.dims, opt.batch);
    let n = train.len();
    let mut step = start.step;
    let mut logs = Vec::new();
    for epoch in start.epoch..params.to_epoch {
        let lr = opt.lr_at(epoch, params.phase_start);
        let settings = StepSettings {
            lr: lr as f32,
            momentum: opt.momentum as f32,
            weight_decay: opt.weight_decay as f32,
        };
        let order = Rng::derive(start.seed, "shuffle", epoch as u64).permutation(n);
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for batch in order.chunks(opt.batch) {
            ws.gather(&train.inputs, targets, batch);
            let (loss, hits) = sgd_step(&mut net, &mut momentum, &mut ws, &settings);
            if !loss.is_finite() {
                let d = Diverged {
                    epoch: epoch + 1,
                    step,
                    loss: loss / batch.len() as f32,
                };
                return Ok(diverged_at(start, d, logs));
            }
            loss_sum += loss as f64;
            correct += hits;
            step += 1;
        }
        let (val_loss, val_accuracy) =
            mean_xent(&net.forward(&data.val.inputs).logits, val_targets, classes);
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
    let end = Checkpoint {
        shape: start.shape.clone(),
        weights: net.to_weights(),
        momentum: momentum.to_weights(&net),
        epoch: params.to_epoch,
        step,
        seed: start.seed,
        diverged: None,
    };
    Ok((end, logs))
}

/// The SGD settings of one step.
struct StepSettings {
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

/// SGD momentum buffers per layer: (weight, bias).
struct Momentum(Vec<(Vec<f32>, Vec<f32>)>);

impl Momentum {
    /// The buffers saved in a checkpoint (zeros where none are).
    fn of(net: &Fc, saved: &Weights) -> Result<Momentum> {
        let mut out = Vec::new();
        for (i, (w, b)) in net.weights.iter().zip(&net.biases).enumerate() {
            let get = |name: String, len: usize| -> Result<Vec<f32>> {
                match saved.get(&name) {
                    Some((_, v)) if v.len() == len => Ok(v.clone()),
                    Some((s, _)) => bail!("momentum buffer `{name}` has shape {s:?}"),
                    None => Ok(vec![0.0; len]),
                }
            };
            out.push((
                get(format!("layers.{i}.weight"), w.len())?,
                get(format!("layers.{i}.bias"), b.len())?,
            ));
        }
        Ok(Momentum(out))
    }

    /// The buffers by parameter name, shaped like the parameters.
    fn to_weights(&self, net: &Fc) -> Weights {
        let mut w = net.to_weights();
        for (i, (mw, mb)) in self.0.iter().enumerate() {
            if let Some(t) = w.get_mut(&format!("layers.{i}.weight")) {
                t.1 = mw.clone();
            }
            if let Some(t) = w.get_mut(&format!("layers.{i}.bias")) {
                t.1 = mb.clone();
            }
        }
        w
    }
}

/// Buffers of one training step, allocated once per segment.
struct Workspace {
    /// The batch's inputs (rows × inputs) and targets.
    x: Vec<f32>,
    y: Vec<usize>,
    /// Rows in the current batch.
    rows: usize,
    /// Each layer's outputs (post-ReLU for hidden layers, logits for the head).
    acts: Vec<Vec<f32>>,
    /// The loss gradient with respect to each layer's outputs.
    deltas: Vec<Vec<f32>>,
    /// Gradients of each layer's weight and bias.
    grads: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Workspace {
    fn new(dims: &[(usize, usize)], batch: usize) -> Workspace {
        Workspace {
            x: vec![0.0; batch * dims[0].0],
            y: vec![0; batch],
            rows: 0,
            acts: dims.iter().map(|d| vec![0.0; batch * d.1]).collect(),
            deltas: dims.iter().map(|d| vec![0.0; batch * d.1]).collect(),
            grads: dims
                .iter()
                .map(|&(i, o)| (vec![0.0; i * o], vec![0.0; o]))
                .collect(),
        }
    }

    /// Copies the examples `batch` (indices into the split) into the input buffers.
    fn gather(&mut self, inputs: &[f32], targets: &[i64], batch: &[usize]) {
        let dim = self.x.len() / self.y.len().max(1);
        for (r, &i) in batch.iter().enumerate() {
            self.x[r * dim..(r + 1) * dim].copy_from_slice(&inputs[i * dim..(i + 1) * dim]);
            self.y[r] = targets[i] as usize;
        }
        self.rows = batch.len();
    }
}

/// One SGD step on the gathered batch (PyTorch semantics: `d = g + wd * w`, `buf = m * buf + d`,
/// `w -= lr * buf`): returns the batch's summed cross-entropy and how many it classified right.
#[inline(always)]
fn sgd_step_body(
    net: &mut Fc,
    momentum: &mut Momentum,
    ws: &mut Workspace,
    s: &StepSettings,
) -> (f32, usize) {
    let rows = ws.rows;
    let last = net.dims.len() - 1;
    for l in 0..=last {
        let (before, after) = ws.acts.split_at_mut(l);
        let input: &[f32] = match l {
            0 => &ws.x[..rows * net.dims[0].0],
            _ => &before[l - 1][..rows * net.dims[l - 1].1],
        };
        let out = &mut after[0][..rows * net.dims[l].1];
        kernels::dense(input, &net.weights[l], &net.biases[l], out);
        if l < last {
            kernels::relu(out);
        }
    }
    let classes = net.dims[last].1;
    let scale = 1.0 / rows as f32;
    let (mut loss, mut correct) = (0f32, 0usize);
    let head = &mut ws.deltas[last][..rows * classes];
    head.copy_from_slice(&ws.acts[last][..rows * classes]);
    for (z, &y) in head.chunks_exact_mut(classes).zip(&ws.y) {
        let (ce, hit) = kernels::softmax_xent(z, y, scale);
        loss += ce;
        correct += usize::from(hit);
    }
    for l in (0..=last).rev() {
        let (fan_in, fan_out) = net.dims[l];
        let (lower, upper) = ws.deltas.split_at_mut(l);
        let delta = &upper[0][..rows * fan_out];
        let input: &[f32] = match l {
            0 => &ws.x[..rows * fan_in],
            _ => &ws.acts[l - 1][..rows * fan_in],
        };
        let (gw, gb) = &mut ws.grads[l];
        kernels::dense_grads(input, delta, gw, gb);
        if l > 0 {
            let dx = &mut lower[l - 1][..rows * fan_in];
            kernels::dense_input_grad_relu(input, &net.weights[l], delta, fan_out, dx);
        }
    }
    for l in 0..=last {
        let (gw, gb) = &ws.grads[l];
        let (mw, mb) = &mut momentum.0[l];
        update(&mut net.weights[l], gw, mw, s);
        update(&mut net.biases[l], gb, mb, s);
    }
    (loss, correct)
}

kernels::simd! {
    /// [`sgd_step_body`] for the widest vectors the CPU has (the same bits on each).
    fn sgd_step(net: &mut Fc, momentum: &mut Momentum, ws: &mut Workspace, s: &StepSettings) -> (f32, usize) = sgd_step_body;
}

/// PyTorch's SGD update of one parameter from its gradient.
#[inline(always)]
fn update(w: &mut [f32], g: &[f32], buf: &mut [f32], s: &StepSettings) {
    for ((w, &g), b) in w.iter_mut().zip(g).zip(buf.iter_mut()) {
        let mut d = g;
        if s.weight_decay != 0.0 {
            d += s.weight_decay * *w;
        }
        if s.momentum != 0.0 {
            *b = s.momentum * *b + d;
            d = *b;
        }
        *w -= s.lr * d;
    }
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
