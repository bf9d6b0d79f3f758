//! Decoders (probes) that measure usable information (SPEC §1.1): softmax regression or a
//! one-hidden-layer ReLU MLP, trained with full-batch Adam on the training split minus a fixed
//! early-stopping slice, and scored on the held-out validation split.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::info::{entropy_bits, usable_bits};
use crate::kernels;
use crate::rng::Rng;

/// Decoder families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    /// Softmax regression.
    Linear,
    /// One hidden ReLU layer.
    Mlp,
}

impl DecoderKind {
    /// The family's name as used in tables.
    pub fn name(self) -> &'static str {
        match self {
            DecoderKind::Linear => "linear",
            DecoderKind::Mlp => "mlp",
        }
    }
}

/// Settings of a decoder, recorded with each result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderParams {
    /// Family.
    pub kind: DecoderKind,
    /// Hidden units of the MLP family.
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Maximum optimisation steps (full batch).
    pub steps: usize,
    /// Evaluate on the early-stopping slice every this many steps; keep the best.
    pub eval_every: usize,
    /// Standardise inputs with the fitting slice's mean and standard deviation.
    pub standardize: bool,
    /// Also train on permuted labels and report the shuffled-label null.
    pub null: bool,
    /// Fraction of the training split held back for early stopping (the last examples).
    pub holdout: f64,
    /// Seed of the decoder's initialisation and of the null's permutation.
    pub seed: u64,
}

impl DecoderParams {
    /// The default settings of a family.
    pub fn new(kind: DecoderKind) -> DecoderParams {
        DecoderParams {
            kind,
            hidden: 64,
            lr: 1e-2,
            steps: 300,
            eval_every: 10,
            standardize: false,
            null: false,
            holdout: 0.1,
            seed: 0,
        }
    }
}

/// One measurement: a decoder's read-out of one label from one representation.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Usable information, bits (raw, may be negative).
    pub bits: f64,
    /// Mean cross-entropy on the test examples, nats.
    pub ce_nats: f64,
    /// Accuracy on the test examples.
    pub accuracy: f64,
    /// Entropy of the labels in the decoder's training slice, bits.
    pub h_y_bits: f64,
    /// The same decoder on permuted labels (bits), if asked for.
    pub null_bits: Option<f64>,
    /// Examples the decoder was fitted on.
    pub n_train: usize,
    /// Examples it was scored on.
    pub n_test: usize,
    /// Step whose parameters were kept.
    pub best_step: usize,
}

/// A representation and its labels, split for one decoder.
pub struct ProbeData<'a> {
    /// Training-split features, n_train × dim.
    pub train: &'a [f32],
    /// Test-split features, n_test × dim.
    pub test: &'a [f32],
    /// Feature dimension.
    pub dim: usize,
    /// Training-split labels.
    pub y_train: &'a [i64],
    /// Test-split labels.
    pub y_test: &'a [i64],
    /// Number of classes.
    pub classes: usize,
}

/// The labels one decoder reads from a representation.
#[derive(Clone, Copy)]
pub struct Labels<'a> {
    /// Training-split labels.
    pub y_train: &'a [i64],
    /// Test-split labels.
    pub y_test: &'a [i64],
    /// Number of classes.
    pub classes: usize,
}

/// A representation split for decoders: training-split and test-split features.
#[derive(Clone, Copy)]
pub struct Features<'a> {
    /// Training-split features, n_train × dim.
    pub train: &'a [f32],
    /// Test-split features, n_test × dim.
    pub test: &'a [f32],
    /// Feature dimension.
    pub dim: usize,
}

struct Fitted {
    ce: f64,
    accuracy: f64,
    best_step: usize,
}

/// Trains the decoder and measures usable information on the test split.
pub fn measure(data: &ProbeData, p: &DecoderParams) -> Result<Measurement> {
    let features = Features {
        train: data.train,
        test: data.test,
        dim: data.dim,
    };
    let labels = Labels {
        y_train: data.y_train,
        y_test: data.y_test,
        classes: data.classes,
    };
    Ok(measure_labels(&features, &[labels], p)?.remove(0))
}

/// Trains one decoder per label (and its shuffled-label null, if asked for) on one
/// representation, all in one pass over the features per step, and measures each: the same
/// bits as [`measure`] on each label alone. An error names the first label whose decoder failed.
pub fn measure_labels(
    f: &Features,
    labels: &[Labels],
    p: &DecoderParams,
) -> Result<Vec<Measurement>> {
    let n = labels.first().map_or(0, |l| l.y_train.len());
    let n_test = labels.first().map_or(0, |l| l.y_test.len());
    let sizes_agree = labels
        .iter()
        .all(|l| l.y_train.len() == n && l.y_test.len() == n_test);
    if !sizes_agree || f.train.len() != n * f.dim || f.test.len() != n_test * f.dim {
        bail!("features and labels disagree in size");
    }
    let bad = f
        .train
        .iter()
        .chain(f.test)
        .filter(|v| !v.is_finite())
        .count();
    if bad > 0 {
        bail!("the representation has {bad} NaN or infinite values");
    }
    let n_es = ((n as f64) * p.holdout).round() as usize;
    let n_fit = n - n_es;
    if n_fit == 0 || n_es == 0 || n_test == 0 {
        bail!("too few examples to fit, early-stop and test a decoder ({n} train, {n_test} test)");
    }
    let dim = f.dim;
    let (mut fit_x, mut es_x, mut test_x) = (
        f.train[..n_fit * dim].to_vec(),
        f.train[n_fit * dim..].to_vec(),
        f.test.to_vec(),
    );
    if p.standardize {
        standardize(&mut fit_x, &mut [&mut es_x, &mut test_x], dim);
    }
    // Labels permuted independently of the features in every slice, test included: what the
    // same decoder reads when there is nothing to read.
    let nulls: Vec<(Vec<i64>, Vec<i64>)> = if p.null {
        labels
            .iter()
            .map(|l| {
                let mut rng = Rng::derive(p.seed, "null", 0);
                let mut train = l.y_train.to_vec();
                rng.shuffle(&mut train);
                let mut test = l.y_test.to_vec();
                rng.shuffle(&mut test);
                (train, test)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut targets: Vec<Target> = labels
        .iter()
        .map(|l| Target::new(l.y_train, l.y_test, n_fit, l.classes))
        .collect();
    for ((train, test), l) in nulls.iter().zip(labels) {
        targets.push(Target::new(train, test, n_fit, l.classes));
    }
    let x = Slices {
        fit: &fit_x,
        es: &es_x,
        test: &test_x,
        dim,
    };
    let fitted = match p.kind {
        DecoderKind::Linear => linear::fit(&x, &targets, p),
        DecoderKind::Mlp => mlp::fit(&x, &targets, p),
    };
    let mut fitted = fitted.into_iter().enumerate().map(|(i, f)| {
        f.ok_or_else(|| {
            anyhow::anyhow!(
                "the {} decoder's loss was never finite (lr {}; check the representation for NaN or infinite values){}",
                p.kind.name(),
                p.lr,
                if i >= labels.len() { " (shuffled-label null)" } else { "" }
            )
        })
    });
    let real: Vec<Fitted> = fitted.by_ref().take(labels.len()).collect::<Result<_>>()?;
    let null: Vec<Fitted> = fitted.collect::<Result<_>>()?;
    Ok(real
        .into_iter()
        .enumerate()
        .map(|(i, fit)| {
            let h_y_bits = entropy_bits(&labels[i].y_train[..n_fit], labels[i].classes);
            Measurement {
                bits: usable_bits(h_y_bits, fit.ce),
                ce_nats: fit.ce,
                accuracy: fit.accuracy,
                h_y_bits,
                null_bits: null.get(i).map(|f| usable_bits(h_y_bits, f.ce)),
                n_train: n_fit,
                n_test,
                best_step: fit.best_step,
            }
        })
        .collect())
}

/// Standardises `fit` in place with its own column statistics, and `others` with the same.
fn standardize(fit: &mut [f32], others: &mut [&mut Vec<f32>], dim: usize) {
    let rows = fit.len() / dim;
    let mut mean = vec![0f64; dim];
    let mut sq = vec![0f64; dim];
    for row in fit.chunks_exact(dim) {
        for (j, &v) in row.iter().enumerate() {
            mean[j] += v as f64;
            sq[j] += (v as f64) * (v as f64);
        }
    }
    let stats: Vec<(f32, f32)> = (0..dim)
        .map(|j| {
            let m = mean[j] / rows as f64;
            let var = (sq[j] / rows as f64 - m * m).max(0.0);
            (
                m as f32,
                if var > 1e-12 {
                    1.0 / var.sqrt() as f32
                } else {
                    1.0
                },
            )
        })
        .collect();
    let apply = |x: &mut [f32]| {
        for row in x.chunks_exact_mut(dim) {
            for (v, (m, s)) in row.iter_mut().zip(&stats) {
                *v = (*v - m) * s;
            }
        }
    };
    apply(fit);
    for o in others.iter_mut() {
        apply(o);
    }
}

/// The features of the three slices a decoder sees: fitting, early stopping, test.
struct Slices<'a> {
    fit: &'a [f32],
    es: &'a [f32],
    test: &'a [f32],
    dim: usize,
}

/// What one decoder is trained to predict: its labels on the three slices.
struct Target<'a> {
    fit: &'a [i64],
    es: &'a [i64],
    test: &'a [i64],
    classes: usize,
}

impl<'a> Target<'a> {
    fn new(train: &'a [i64], test: &'a [i64], n_fit: usize, classes: usize) -> Target<'a> {
        Target {
            fit: &train[..n_fit],
            es: &train[n_fit..],
            test,
            classes,
        }
    }

    /// Its labels on a held-out slice.
    fn held(&self, slice: Held) -> &'a [i64] {
        match slice {
            Held::EarlyStopping => self.es,
            Held::Test => self.test,
        }
    }
}

/// The slices a decoder is evaluated on.
#[derive(Clone, Copy)]
enum Held {
    EarlyStopping,
    Test,
}

/// Early stopping: evaluates every `eval_every` steps and at the last, and keeps the step whose
/// early-stopping loss is lowest (its parameters are copied aside, and the test split is
/// evaluated once, with them, at the end: the same bits as evaluating it at that step).
struct EarlyStopping {
    every: usize,
    last: usize,
    best: Option<(f64, usize)>,
}

impl EarlyStopping {
    fn new(p: &DecoderParams) -> EarlyStopping {
        EarlyStopping {
            every: p.eval_every.max(1),
            last: p.steps,
            best: None,
        }
    }

    /// Whether `step` is evaluated.
    fn due(&self, step: usize) -> bool {
        step.is_multiple_of(self.every) || step == self.last
    }

    /// Records a step's early-stopping loss; true when it is the best so far (the caller then
    /// keeps the parameters).
    fn offer(&mut self, step: usize, es_ce: f64) -> bool {
        let better = es_ce.is_finite() && self.best.is_none_or(|(b, _)| es_ce < b);
        if better {
            self.best = Some((es_ce, step));
        }
        better
    }

    /// The kept step's test metrics (mean CE, accuracy), if any evaluation was finite.
    fn best(self, (ce, accuracy): (f64, f64)) -> Option<Fitted> {
        self.best.map(|(_, best_step)| Fitted {
            ce,
            accuracy,
            best_step,
        })
    }
}

/// PyTorch's Adam update (β = 0.9, 0.999; ε = 1e-8) of one parameter vector.
struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    fn new(len: usize) -> Adam {
        Adam {
            m: vec![0.0; len],
            v: vec![0.0; len],
        }
    }

    /// Step `t` (1-based) with gradient `grad`.
    fn step(&mut self, theta: &mut [f32], grad: &[f32], lr: f64, t: i32) {
        self.step_rows(theta, grad, &[lr], t);
    }

    /// [`Adam::step`] with a learning rate per row: `theta` is `lrs.len()` rows of equal length.
    fn step_rows(&mut self, theta: &mut [f32], grad: &[f32], lrs: &[f64], t: i32) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let row = theta.len() / lrs.len();
        for (r, &lr) in lrs.iter().enumerate() {
            for i in r * row..(r + 1) * row {
                let g = grad[i] as f64;
                self.m[i] = (b1 * self.m[i] as f64 + (1.0 - b1) * g) as f32;
                self.v[i] = (b2 * self.v[i] as f64 + (1.0 - b2) * g * g) as f32;
                let m_hat = self.m[i] as f64 / c1;
                let v_hat = self.v[i] as f64 / c2;
                theta[i] -= (lr * m_hat / (v_hat.sqrt() + eps)) as f32;
            }
        }
    }
}

/// The fitting slice in blocks of `block` examples, without the features that are zero in every
/// fitting example (`live` lists the others: dead ReLU units, a tenth of the default
/// experiment's features): each block's live features transposed (live × block, one after
/// another in `xt`), and, if asked for, as rows ending in 1 (`x1`, rows × (live + 1): the 1
/// turns a bias gradient into one more column of the weight gradient).
///
/// Leaving a dead feature out changes no bit: its products with a weight are zeros, which leave
/// a sum of fused multiply-adds as it was (but for the sign of a zero sum, which neither a
/// softmax nor a ReLU reads), and its weights' gradient is zero, which Adam turns into no step.
struct Blocked {
    xt: Vec<f32>,
    x1: Vec<f32>,
    labels: Vec<Vec<i32>>,
    live: Vec<usize>,
    rows: usize,
    block: usize,
}

/// Examples per block of a decoder's gradient: a block's features and activations stay in the
/// L2 cache. A multiple of [`kernels::NT_LANES`], so each block fills the sums' 16 lanes evenly.
const BLOCK: usize = 512;

/// Examples per block of the MLP decoder's gradient: its hidden units and their gradients for a
/// block (2 × stacked units × block floats) stay in the L2 cache beside the block's features.
const MLP_BLOCK: usize = 128;

impl Blocked {
    /// The first row of each block, in the order step `step` of a decoder's optimisation visits
    /// them: forward on even steps, backward on odd ones, so a step starts on the blocks the
    /// previous one ended with, still in the L2 cache (the fitting features, 3.2 MB in the
    /// default experiment, do not fit it: read in the same order every step, every block came
    /// from L3). Each gradient sum runs over the blocks in this order.
    fn order(&self, step: usize) -> impl Iterator<Item = usize> + '_ {
        let blocks = self.rows.div_ceil(self.block);
        (0..blocks).map(move |i| match step % 2 {
            0 => i * self.block,
            _ => (blocks - 1 - i) * self.block,
        })
    }

    /// `drop_dead: false` keeps every feature (for tests that compare both).
    fn new(
        x: &[f32],
        dim: usize,
        targets: &[Target],
        (block, ones, drop_dead): (usize, bool, bool),
    ) -> Blocked {
        let rows = x.len() / dim;
        let mut live: Vec<usize> = (0..dim)
            .filter(|&j| !drop_dead || x.chunks_exact(dim).any(|r| r[j] != 0.0))
            .collect();
        if live.is_empty() {
            live.push(0);
        }
        let mut kept = Vec::with_capacity(rows * live.len());
        for r in x.chunks_exact(dim) {
            kept.extend(live.iter().map(|&j| r[j]));
        }
        let (x, dim) = (kept, live.len());
        let mut xt = Vec::with_capacity(x.len());
        let mut t = Vec::new();
        for block in x.chunks(block * dim) {
            kernels::transpose(block, block.len() / dim, dim, &mut t);
            xt.extend_from_slice(&t);
        }
        let mut x1 = Vec::new();
        if ones {
            x1.reserve_exact(rows * (dim + 1));
            for r in x.chunks_exact(dim) {
                x1.extend_from_slice(r);
                x1.push(1.0);
            }
        }
        // As i32, so that comparisons with a class fill eight lanes of an AVX2 vector, not four.
        let labels = targets
            .iter()
            .map(|t| t.fit.iter().map(|&l| l as i32).collect())
            .collect();
        Blocked {
            xt,
            x1,
            labels,
            live,
            rows,
            block,
        }
    }

    /// The live features' columns of each row of `m` (rows of `width`), and, with `bias`, each
    /// row's last element after them.
    fn gather(&self, m: &[f32], width: usize, bias: bool, out: &mut Vec<f32>) {
        out.clear();
        for row in m.chunks_exact(width) {
            out.extend(self.live.iter().map(|&j| row[j]));
            if bias {
                out.push(row[width - 1]);
            }
        }
    }

    /// The inverse of [`Blocked::gather`] into `out` (rows of `width`), zeros for dead features.
    fn scatter(&self, m: &[f32], width: usize, bias: bool, out: &mut [f32]) {
        let kept = self.live.len() + usize::from(bias);
        for (row, from) in out.chunks_exact_mut(width).zip(m.chunks_exact(kept)) {
            row.fill(0.0);
            for (&j, &v) in self.live.iter().zip(from) {
                row[j] = v;
            }
            if bias {
                row[width - 1] = from[kept - 1];
            }
        }
    }
}

/// `out[i] +=` each element of row `i` of `m` (rows of `len`) in order: one chain of additions
/// per row, up to eight rows at a time in fixed registers (a variable-length accumulator array was
/// kept on the stack with masked stores, stalling every addition on store forwarding; one row
/// at a time waits on each addition's latency).
fn add_row_sums(m: &[f32], len: usize, out: &mut [f32]) {
    let mut groups = out.chunks_mut(8);
    for (o, rows) in (&mut groups).zip(m.chunks(8 * len)) {
        match o.len() {
            8 => row_sums::<8>(rows, len, o),
            7 => row_sums::<7>(rows, len, o),
            6 => row_sums::<6>(rows, len, o),
            5 => row_sums::<5>(rows, len, o),
            4 => row_sums::<4>(rows, len, o),
            3 => row_sums::<3>(rows, len, o),
            2 => row_sums::<2>(rows, len, o),
            _ => row_sums::<1>(rows, len, o),
        }
    }
}

/// [`add_row_sums`] of `R` rows, their chains interleaved.
#[inline(always)]
fn row_sums<const R: usize>(m: &[f32], len: usize, out: &mut [f32]) {
    let mut acc: [f32; R] = std::array::from_fn(|i| out[i]);
    let r: [&[f32]; R] = std::array::from_fn(|i| &m[i * len..(i + 1) * len]);
    for j in 0..len {
        for (a, row) in acc.iter_mut().zip(&r) {
            *a += row[j];
        }
    }
    out.copy_from_slice(&acc);
}

fn init_linear(rng: &mut Rng, fan_in: usize, fan_out: usize) -> (Vec<f32>, Vec<f32>) {
    crate::model::uniform_linear(rng, fan_in, fan_out, 1.0 / (fan_in as f64).sqrt())
}

/// Offsets of each target's block of classes in the stacked outputs, and their total.
fn class_offsets(targets: &[Target]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(targets.len());
    let mut total = 0;
    for t in targets {
        offsets.push(total);
        total += t.classes;
    }
    (offsets, total)
}

/// The softmax cross-entropy gradient, scaled, of every example's logits against its label,
/// in place, on logits stored class by class (`z[c * rows + r]`), with `max` and `sum` as
/// scratch: per example, `(e^(z - max) / Σ e^(z - max) - onehot) * scale`, vectorised across
/// examples.
#[inline(always)]
fn softmax_grad_columns(
    z: &mut [f32],
    y: &[i32],
    scale: f32,
    (max, sum): (&mut [f32], &mut [f32]),
) {
    let rows = y.len();
    max.fill(f32::NEG_INFINITY);
    for zc in z.chunks_exact(rows) {
        for (m, &v) in max.iter_mut().zip(zc) {
            // `+ 0.0`: see kernels::zero_where (a select of `*m` itself became a masked store).
            *m = if v > *m { v } else { *m + 0.0 };
        }
    }
    sum.fill(0.0);
    for zc in z.chunks_exact_mut(rows) {
        for ((v, &m), s) in zc.iter_mut().zip(max.iter()).zip(sum.iter_mut()) {
            *v = kernels::exp_fast(*v - m);
            *s += *v;
        }
    }
    for (c, zc) in z.chunks_exact_mut(rows).enumerate() {
        for ((v, &s), &label) in zc.iter_mut().zip(sum.iter()).zip(y) {
            let hit = if label == c as i32 { 1.0 } else { 0.0 };
            *v = (*v / s - hit) * scale;
        }
    }
}

/// Mean cross-entropy (nats) and accuracy of each target's block of `logits` (all targets'
/// classes × rows, class by class).
fn evaluate_all(
    targets: &[Target],
    slice: Held,
    offsets: &[usize],
    logits: &[f32],
) -> Vec<(f64, f64)> {
    targets
        .iter()
        .zip(offsets)
        .map(|(t, &off)| {
            let y = t.held(slice);
            let rows = y.len();
            let (ce, correct) =
                kernels::xent_sums_columns(&logits[off * rows..(off + t.classes) * rows], y);
            let n = rows.max(1) as f64;
            (ce / n, correct as f64 / n)
        })
        .collect()
}

/// Softmax regression for every target at once: the stacked weights (all targets' rows × dim)
/// multiply the transposed features, so each step reads the features twice whatever the number
/// of labels.
///
/// A binary target keeps one row, not two. In softmax regression its two classes' gradients
/// are opposite at every step (`p0 - [y = 0] = -(p1 - [y = 1])`), so Adam moves their weights
/// `w0` and `w1` by opposite steps, and the logits enter the loss only through `z1 - z0`. The
/// decoder keeps `u = w1 - w0` (and `b1 - b0`) from the same initial weights, steps it by twice
/// `w1`'s Adam step, and evaluates the logits `(0, u·x + b1 - b0)`: the same optimisation in
/// exact arithmetic, with half the products per step.
mod linear {
    use super::{
        class_offsets, evaluate_all, init_linear, softmax_grad_columns, Adam, Blocked,
        DecoderParams, EarlyStopping, Fitted, Held, Rng, Slices, Target, BLOCK,
    };
    use crate::kernels::{self, gemm, gemm_nt_partial, reduce_partials};
    use std::ops::Range;

    /// `zt` (rows × examples) = `w` · `xt` + `b`, with `xt` the features transposed.
    #[inline(always)]
    fn logits_t(w: &[f32], b: &[f32], xt: &[f32], rows: usize, zt: &mut [f32]) {
        let (classes, dim) = (b.len(), w.len() / b.len());
        for (row, &bc) in zt.chunks_exact_mut(rows).zip(b) {
            row.iter_mut().for_each(|v| *v = bc);
        }
        gemm((classes, rows, dim), w, (dim, 1), xt, rows, zt, rows);
    }

    /// [`softmax_grad_columns`] of a binary target's one logit `d = z1 - z0` per example, in
    /// place: `(p1 - [y = 1]) * scale`, with `p1 = 1 / (1 + e^-d)` the softmax of `(0, d)`.
    #[inline(always)]
    fn binary_grad_column(d: &mut [f32], y: &[i32], scale: f32) {
        for (v, &label) in d.iter_mut().zip(y) {
            let hit = if label == 1 { 1.0 } else { 0.0 };
            *v = (1.0 / (1.0 + kernels::exp_fast(-*v)) - hit) * scale;
        }
    }

    /// Buffers of one step.
    struct Work {
        zt: Vec<f32>,
        gw: Vec<f32>,
        gb: Vec<f32>,
        max: Vec<f32>,
        sum: Vec<f32>,
        partial: Vec<f32>,
        partial_b: Vec<f32>,
        ones: Vec<f32>,
    }

    /// The mean cross-entropy gradient of every target over the fitting rows, into `g`, block
    /// by block in the order of `step` (see [`Blocked::order`]): one read of a block's features
    /// from memory serves both the logits and the weight gradient (sums of products along the
    /// examples, in 16 lanes, as are the bias gradient's sums, products with ones). `w` and the
    /// weight gradient hold the live features' columns ([`Blocked::gather`]); `at` holds each
    /// target's rows.
    #[inline(always)]
    fn gradient_body(
        (w, b, step): (&[f32], &[f32], usize),
        x: &Blocked,
        (targets, at): (&[Target], &[Range<usize>]),
        g: &mut Work,
    ) {
        let (rows, dim) = (b.len(), w.len() / b.len());
        let scale = 1.0 / x.rows as f32;
        g.gw.fill(0.0);
        g.gb.fill(0.0);
        g.partial.clear();
        g.partial.resize(rows * dim * kernels::NT_LANES, 0.0);
        g.partial_b.clear();
        g.partial_b.resize(rows * kernels::NT_LANES, 0.0);
        for r0 in x.order(step) {
            let n = x.block.min(x.rows - r0);
            let xt = &x.xt[r0 * dim..(r0 + n) * dim];
            let zt = &mut g.zt[..rows * n];
            logits_t(w, b, xt, n, zt);
            for (t, (target, r)) in targets.iter().zip(at).enumerate() {
                let block = &mut zt[r.start * n..r.end * n];
                let y = &x.labels[t][r0..r0 + n];
                if r.len() < target.classes {
                    binary_grad_column(block, y, scale);
                } else {
                    softmax_grad_columns(block, y, scale, (&mut g.max[..n], &mut g.sum[..n]));
                }
            }
            gemm_nt_partial((rows, 1, n), (zt, n), (&g.ones, n), &mut g.partial_b);
            gemm_nt_partial((rows, dim, n), (zt, n), (xt, n), &mut g.partial);
        }
        reduce_partials(&g.partial_b, (rows, 1), &mut g.gb, 1);
        reduce_partials(&g.partial, (rows, dim), &mut g.gw, dim);
    }

    kernels::simd! {
        /// [`gradient_body`] for the widest vectors the CPU has (the same bits on each).
        fn gradient(params: (&[f32], &[f32], usize), x: &Blocked, targets: (&[Target], &[Range<usize>]), g: &mut Work) = gradient_body;
    }

    kernels::simd! {
        /// [`logits_t`] for the widest vectors the CPU has (the same bits on each).
        fn logits_for(w: &[f32], b: &[f32], xt: &[f32], rows: usize, zt: &mut [f32]) = logits_t;
    }

    /// Each target's (mean CE, accuracy) on a slice whose transposed features are `xt`; `at`
    /// holds each target's rows.
    fn evaluate(
        (w, b): (&[f32], &[f32]),
        xt: &[f32],
        (targets, at): (&[Target], &[Range<usize>]),
        slice: Held,
    ) -> Vec<(f64, f64)> {
        let rows = xt.len() / (w.len() / b.len());
        let mut zt = vec![0f32; b.len() * rows];
        logits_for(w, b, xt, rows, &mut zt);
        let (offsets, classes) = class_offsets(targets);
        let mut logits = Vec::with_capacity(classes * rows);
        for (t, r) in targets.iter().zip(at) {
            if r.len() < t.classes {
                logits.resize(logits.len() + rows, 0.0);
            }
            logits.extend_from_slice(&zt[r.start * rows..r.end * rows]);
        }
        evaluate_all(targets, slice, &offsets, &logits)
    }

    /// Fits softmax regression for every target; `None` for one whose early-stopping loss was
    /// never finite.
    pub(super) fn fit(s: &Slices, targets: &[Target], p: &DecoderParams) -> Vec<Option<Fitted>> {
        fit_with(s, targets, p, (true, true))
    }

    /// [`fit`], keeping the features that are zero in every fitting example if `drop_dead` is
    /// false (see [`Blocked`]), and both rows of a binary target if `fold_binary` is false.
    pub(super) fn fit_with(
        s: &Slices,
        targets: &[Target],
        p: &DecoderParams,
        (drop_dead, fold_binary): (bool, bool),
    ) -> Vec<Option<Fitted>> {
        let dim = s.dim;
        let (mut w, mut b, mut lrs, mut at) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for t in targets {
            let first = b.len();
            let mut rng = Rng::derive(p.seed, "decoder", 0);
            let (tw, tb) = init_linear(&mut rng, dim, t.classes);
            if fold_binary && t.classes == 2 {
                w.extend(tw[dim..].iter().zip(&tw[..dim]).map(|(w1, w0)| w1 - w0));
                b.push(tb[1] - tb[0]);
                lrs.push(2.0 * p.lr);
            } else {
                w.extend(tw);
                b.extend(tb);
                lrs.resize(b.len(), p.lr);
            }
            at.push(first..b.len());
        }
        let rows_total = b.len();
        let transposed = |x: &[f32]| {
            let mut t = Vec::new();
            kernels::transpose(x, x.len() / dim, dim, &mut t);
            t
        };
        let (es_t, test_t) = (transposed(s.es), transposed(s.test));
        let fit = Blocked::new(s.fit, dim, targets, (BLOCK, false, drop_dead));
        let (mut adam_w, mut adam_b) = (Adam::new(rows_total * dim), Adam::new(rows_total));
        let rows = fit.rows.min(BLOCK);
        let (mut w_live, mut gw) = (Vec::new(), vec![0f32; rows_total * dim]);
        let mut g = Work {
            zt: vec![0f32; rows_total * rows],
            gw: vec![0f32; rows_total * fit.live.len()],
            gb: vec![0f32; rows_total],
            max: vec![0f32; rows],
            sum: vec![0f32; rows],
            partial: Vec::new(),
            partial_b: Vec::new(),
            ones: vec![1.0; rows],
        };
        let mut stopping: Vec<EarlyStopping> =
            targets.iter().map(|_| EarlyStopping::new(p)).collect();
        let (mut best_w, mut best_b) = (w.clone(), b.clone());
        for step in 0..=p.steps {
            if stopping[0].due(step) {
                let es = evaluate((&w, &b), &es_t, (targets, &at), Held::EarlyStopping);
                for ((stop, e), rows) in stopping.iter_mut().zip(es).zip(&at) {
                    if stop.offer(step, e.0) {
                        best_b[rows.clone()].copy_from_slice(&b[rows.clone()]);
                        let (from, to) = (rows.start * dim, rows.end * dim);
                        best_w[from..to].copy_from_slice(&w[from..to]);
                    }
                }
            }
            if step == p.steps {
                break;
            }
            fit.gather(&w, dim, false, &mut w_live);
            gradient((&w_live, &b, step), &fit, (targets, &at), &mut g);
            fit.scatter(&g.gw, dim, false, &mut gw);
            adam_w.step_rows(&mut w, &gw, &lrs, step as i32 + 1);
            adam_b.step_rows(&mut b, &g.gb, &lrs, step as i32 + 1);
        }
        let test = evaluate((&best_w, &best_b), &test_t, (targets, &at), Held::Test);
        stopping
            .into_iter()
            .zip(test)
            .map(|(s, t)| s.best(t))
            .collect()
    }
}

/// One hidden ReLU layer per target, full-batch: the hidden layers of every target are one
/// stacked dense layer over the features (one pass per step for the forward pass and one for
/// the weight gradient), the output layers are per target. Feature-major: activations are
/// stored unit by unit (`h[j * rows + r]`), so the hidden layer, the heads and the softmax run
/// along the examples, where the vectors are long.
mod mlp {

    use super::{
        add_row_sums, class_offsets, evaluate_all, init_linear, softmax_grad_columns, Adam,
        Blocked, DecoderParams, EarlyStopping, Fitted, Held, Rng, Slices, Target, MLP_BLOCK,
    };
    use crate::kernels::{self, gemm, gemm_nt_partial, reduce_partials};

    /// The stacked decoders: `w1` is stacked-hidden × (dim + 1), each row a unit's weights then
    /// its bias; `w2` holds each target's classes × hidden block in turn, `b2` their biases.
    struct Params {
        w1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    }

    impl Params {
        /// Copies target `t`'s decoder (its hidden rows, its output block and biases) from `p`.
        fn keep(&mut self, p: &Params, d: Dims, t: usize) {
            let hidden_rows = t * d.hidden * (d.dim + 1)..(t + 1) * d.hidden * (d.dim + 1);
            self.w1[hidden_rows.clone()].copy_from_slice(&p.w1[hidden_rows]);
            let classes = d.offsets[t]..d.offsets[t] + d.targets[t].classes;
            let block = classes.start * d.hidden..classes.end * d.hidden;
            self.w2[block.clone()].copy_from_slice(&p.w2[block]);
            self.b2[classes.clone()].copy_from_slice(&p.b2[classes]);
        }
    }

    /// The sizes of the stacked decoders.
    #[derive(Clone, Copy)]
    struct Dims<'a> {
        dim: usize,
        hidden: usize,
        stacked: usize,
        classes: usize,
        offsets: &'a [usize],
        targets: &'a [Target<'a>],
    }

    struct Work {
        hidden: Vec<f32>,
        logits: Vec<f32>,
        delta: Vec<f32>,
        max: Vec<f32>,
        sum: Vec<f32>,
        partial: Vec<f32>,
        grads: Params,
    }

    /// Hidden units and logits (both feature-major) of the `rows` examples in `xt` (dim × rows).
    #[inline(always)]
    fn forward_body(p: &Params, d: Dims, xt: &[f32], hidden: &mut [f32], logits: &mut [f32]) {
        let rows = xt.len() / d.dim;
        for (h, w) in hidden
            .chunks_exact_mut(rows)
            .zip(p.w1.chunks_exact(d.dim + 1))
        {
            h.fill(w[d.dim]);
        }
        gemm(
            (d.stacked, rows, d.dim),
            &p.w1,
            (d.dim + 1, 1),
            xt,
            rows,
            hidden,
            rows,
        );
        kernels::relu(hidden);
        for (z, &b) in logits.chunks_exact_mut(rows).zip(&p.b2) {
            z.fill(b);
        }
        for (t, (target, &off)) in d.targets.iter().zip(d.offsets).enumerate() {
            gemm(
                (target.classes, rows, d.hidden),
                &p.w2[off * d.hidden..],
                (d.hidden, 1),
                &hidden[t * d.hidden * rows..],
                rows,
                &mut logits[off * rows..],
                rows,
            );
        }
    }

    kernels::simd! {
        fn forward(p: &Params, d: Dims, xt: &[f32], hidden: &mut [f32], logits: &mut [f32]) = forward_body;
    }

    fn evaluate(p: &Params, d: Dims, xt: &[f32], slice: Held) -> Vec<(f64, f64)> {
        let rows = xt.len() / d.dim;
        let mut hidden = vec![0f32; d.stacked * rows];
        let mut logits = vec![0f32; d.classes * rows];
        forward(p, d, xt, &mut hidden, &mut logits);
        evaluate_all(d.targets, slice, d.offsets, &logits)
    }

    /// The loss's gradient with respect to every parameter, into `w.grads`, block by block in
    /// the order of `step` (see [`Blocked::order`]): each sum runs over the examples of a block
    /// in order, and over the blocks in that order.
    #[inline(always)]
    fn gradient_body((p, step): (&Params, usize), d: Dims, x: &Blocked, w: &mut Work) {
        let scale = 1.0 / x.rows as f32;
        let g = &mut w.grads;
        g.w1.fill(0.0);
        g.w2.fill(0.0);
        g.b2.fill(0.0);
        w.partial.clear();
        w.partial
            .resize(d.classes * d.hidden * kernels::NT_LANES, 0.0);
        for r0 in x.order(step) {
            let n = x.block.min(x.rows - r0);
            let xt = &x.xt[r0 * d.dim..(r0 + n) * d.dim];
            let (hidden, logits) = (
                &mut w.hidden[..d.stacked * n],
                &mut w.logits[..d.classes * n],
            );
            forward_body(p, d, xt, hidden, logits);
            let delta = &mut w.delta[..d.stacked * n];
            for (t, (target, &off)) in d.targets.iter().zip(d.offsets).enumerate() {
                let (k, h) = (target.classes, d.hidden);
                let dz = &mut logits[off * n..(off + k) * n];
                let y = &x.labels[t][r0..r0 + n];
                softmax_grad_columns(dz, y, scale, (&mut w.max[..n], &mut w.sum[..n]));
                let hidden = &hidden[t * h * n..(t + 1) * h * n];
                let partial = &mut w.partial[off * h * kernels::NT_LANES..];
                gemm_nt_partial((k, h, n), (dz, n), (hidden, n), partial);
                let w2 = &p.w2[off * h..(off + k) * h];
                hidden_gradient(w2, dz, hidden, &mut delta[t * h * n..(t + 1) * h * n], h);
            }
            add_row_sums(logits, n, &mut g.b2);
            let x1 = &x.x1[r0 * (d.dim + 1)..];
            let shape = (d.stacked, d.dim + 1, n);
            gemm(shape, delta, (n, 1), x1, d.dim + 1, &mut g.w1, d.dim + 1);
        }
        for (target, &off) in d.targets.iter().zip(d.offsets) {
            let (k, h) = (target.classes, d.hidden);
            let partial = &w.partial[off * h * kernels::NT_LANES..];
            reduce_partials(partial, (k, h), &mut g.w2[off * h..], h);
        }
    }

    kernels::simd! {
        fn gradient(params: (&Params, usize), d: Dims, x: &Blocked, w: &mut Work) = gradient_body;
    }

    /// The loss's gradient with respect to one target's hidden units before the ReLU, one unit
    /// (`n` examples) at a time while it is in the L1 cache: `delta[j][r] = Σ_c w2[c][j] ·
    /// dz[c][r]` (fused multiply-adds from zero, in class order), then zero where the unit's
    /// output `hidden[j][r]` is not positive. The same bits as the product `w2ᵀ · dz` into zeros
    /// and a pass of the mask, without their passes over the whole block.
    #[inline(always)]
    pub(super) fn hidden_gradient(
        w2: &[f32],
        dz: &[f32],
        hidden: &[f32],
        delta: &mut [f32],
        h: usize,
    ) {
        let n = hidden.len() / h;
        for (j, (out, act)) in delta
            .chunks_exact_mut(n)
            .zip(hidden.chunks_exact(n))
            .enumerate()
        {
            out.fill(0.0);
            for (wc, dzc) in w2.chunks_exact(h).zip(dz.chunks_exact(n)) {
                let wj = wc[j];
                for (o, &g) in out.iter_mut().zip(dzc) {
                    *o = wj.mul_add(g, *o);
                }
            }
            for (o, &a) in out.iter_mut().zip(act) {
                *o = kernels::zero_where(a <= 0.0, *o);
            }
        }
    }

    pub(super) fn fit(s: &Slices, targets: &[Target], d: &DecoderParams) -> Vec<Option<Fitted>> {
        fit_blocked(s, targets, d, (MLP_BLOCK, true))
    }

    /// [`fit`] with the gradient taken `block` examples at a time (a multiple of 16), keeping
    /// the features that are zero in every fitting example if `drop_dead` is false (see
    /// [`Blocked`]).
    pub(super) fn fit_blocked(
        s: &Slices,
        targets: &[Target],
        d: &DecoderParams,
        (block, drop_dead): (usize, bool),
    ) -> Vec<Option<Fitted>> {
        let (dim, h) = (s.dim, d.hidden);
        let (offsets, classes) = class_offsets(targets);
        let dims = Dims {
            dim,
            hidden: h,
            stacked: h * targets.len(),
            classes,
            offsets: &offsets,
            targets,
        };
        let mut p = Params {
            w1: Vec::new(),
            w2: Vec::new(),
            b2: Vec::new(),
        };
        for t in targets {
            let mut rng = Rng::derive(d.seed, "decoder", 0);
            let (w1, b1) = init_linear(&mut rng, dim, h);
            let (w2, b2) = init_linear(&mut rng, h, t.classes);
            for (row, b) in w1.chunks_exact(dim).zip(b1) {
                p.w1.extend(row);
                p.w1.push(b);
            }
            p.w2.extend(w2);
            p.b2.extend(b2);
        }
        let transposed = |x: &[f32]| {
            let mut t = Vec::new();
            kernels::transpose(x, x.len() / dim, dim, &mut t);
            t
        };
        let (es_t, test_t) = (transposed(s.es), transposed(s.test));
        let fit = Blocked::new(s.fit, dim, targets, (block, true, drop_dead));
        let rows = fit.rows.min(block);
        let live_dims = Dims {
            dim: fit.live.len(),
            ..dims
        };
        // The decoders' parameters and weight gradient on the live features (see [`Blocked`]).
        let mut fitting = Params {
            w1: Vec::new(),
            w2: Vec::new(),
            b2: Vec::new(),
        };
        let mut g_w1 = vec![0.0; p.w1.len()];
        let mut adam = [p.w1.len(), p.w2.len(), p.b2.len()].map(Adam::new);
        let mut work = Work {
            hidden: vec![0.0; dims.stacked * rows],
            logits: vec![0.0; classes * rows],
            delta: vec![0.0; dims.stacked * rows],
            max: vec![0.0; rows],
            sum: vec![0.0; rows],
            partial: Vec::new(),
            grads: Params {
                w1: vec![0.0; dims.stacked * (live_dims.dim + 1)],
                w2: vec![0.0; p.w2.len()],
                b2: vec![0.0; p.b2.len()],
            },
        };
        let mut stopping: Vec<EarlyStopping> =
            targets.iter().map(|_| EarlyStopping::new(d)).collect();
        let mut best = Params {
            w1: p.w1.clone(),
            w2: p.w2.clone(),
            b2: p.b2.clone(),
        };
        for step in 0..=d.steps {
            if stopping[0].due(step) {
                let es = evaluate(&p, dims, &es_t, Held::EarlyStopping);
                for (t, (stop, e)) in stopping.iter_mut().zip(es).enumerate() {
                    if stop.offer(step, e.0) {
                        best.keep(&p, dims, t);
                    }
                }
            }
            if step == d.steps {
                break;
            }
            fit.gather(&p.w1, dim + 1, true, &mut fitting.w1);
            fitting.w2.clone_from(&p.w2);
            fitting.b2.clone_from(&p.b2);
            gradient((&fitting, step), live_dims, &fit, &mut work);
            let t = step as i32 + 1;
            let g = &work.grads;
            fit.scatter(&g.w1, dim + 1, true, &mut g_w1);
            adam[0].step(&mut p.w1, &g_w1, d.lr, t);
            adam[1].step(&mut p.w2, &g.w2, d.lr, t);
            adam[2].step(&mut p.b2, &g.b2, d.lr, t);
        }
        let test = evaluate(&best, dims, &test_t, Held::Test);
        stopping
            .into_iter()
            .zip(test)
            .map(|(s, t)| s.best(t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Examples `..n_fit` to fit, `n_fit..1200` to early-stop and `1200..` to test.
    fn split(x: &[f32], n_fit: usize, dim: usize) -> Slices<'_> {
        Slices {
            fit: &x[..n_fit * dim],
            es: &x[n_fit * dim..1200 * dim],
            test: &x[1200 * dim..],
            dim,
        }
    }

    /// A target of `classes` with the labels of [`split`]'s slices.
    fn target(y: &[i64], n_fit: usize, classes: usize) -> Target<'_> {
        Target::new(&y[..1200], &y[1200..], n_fit, classes)
    }

    fn run(
        features: &dyn Fn(i64, &mut Rng) -> Vec<f32>,
        dim: usize,
        p: &DecoderParams,
        labels: &dyn Fn(&mut Rng) -> i64,
    ) -> Measurement {
        let mut rng = Rng::new(11);
        let mut make = |n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for _ in 0..n {
                let c = labels(&mut rng);
                x.extend(features(c, &mut rng));
                y.push(c);
            }
            (x, y)
        };
        let (xtr, ytr) = make(2000);
        let (xte, yte) = make(1000);
        let data = ProbeData {
            train: &xtr,
            test: &xte,
            dim,
            y_train: &ytr,
            y_test: &yte,
            classes: 2,
        };
        measure(&data, p).unwrap()
    }

    #[test]
    fn row_sums_add_each_row_in_order() {
        let mut rng = Rng::new(3);
        for rows in [1, 3, 4, 8, 9, 17] {
            let len = 37;
            let m: Vec<f32> = (0..rows * len)
                .map(|_| rng.uniform() as f32 * 100.0 - 50.0)
                .collect();
            let start: Vec<f32> = (0..rows).map(|i| i as f32 * 0.1).collect();
            let mut out = start.clone();
            add_row_sums(&m, len, &mut out);
            for (i, (&o, &s)) in out.iter().zip(&start).enumerate() {
                let want = m[i * len..(i + 1) * len].iter().fold(s, |a, &v| a + v);
                assert_eq!(o.to_bits(), want.to_bits(), "{rows} rows, row {i}");
            }
        }
    }

    #[test]
    fn independent_representation_gives_zero_bits() {
        let p = DecoderParams::new(DecoderKind::Linear);
        let m = run(
            &|_, r| (0..8).map(|_| r.normal() as f32).collect(),
            8,
            &p,
            &|r| r.below(2) as i64,
        );
        assert!(m.bits.abs() < 0.02, "{m:?}");
    }

    #[test]
    fn one_hot_label_gives_its_entropy() {
        // With the default budget (Adam lr 0.01, 300 steps) a linear decoder reaches about 0.93
        // bits here: the logits cannot grow large enough in 300 small steps. A larger step
        // lets it converge.
        let p = DecoderParams {
            lr: 0.1,
            ..DecoderParams::new(DecoderKind::Linear)
        };
        let m = run(
            &|c, _| {
                if c == 0 {
                    vec![1.0, 0.0]
                } else {
                    vec![0.0, 1.0]
                }
            },
            2,
            &p,
            &|r| r.below(2) as i64,
        );
        assert!((m.bits - m.h_y_bits).abs() < 0.02, "{m:?}");
    }

    #[test]
    fn hidden_gradient_is_the_product_then_the_mask() {
        let mut rng = Rng::new(5);
        let (k, h, n) = (3, 20, 48);
        let mut draw = |len: usize| -> Vec<f32> { (0..len).map(|_| rng.normal() as f32).collect() };
        let (w2, dz, hidden) = (draw(k * h), draw(k * n), draw(h * n));
        let mut want = vec![0f32; h * n];
        kernels::gemm((h, n, k), &w2, (1, h), &dz, n, &mut want, n);
        for (v, &a) in want.iter_mut().zip(&hidden) {
            if a <= 0.0 {
                *v = 0.0;
            }
        }
        let mut got = vec![f32::NAN; h * n];
        mlp::hidden_gradient(&w2, &dz, &hidden, &mut got, h);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn mlp_results_barely_depend_on_the_gradient_blocks() {
        let mut rng = Rng::new(3);
        let x: Vec<f32> = (0..1500 * 6).map(|_| rng.normal() as f32).collect();
        let y: Vec<i64> = x.chunks(6).map(|r| i64::from(r[0] + r[3] > 0.0)).collect();
        let (n_fit, dim) = (1000, 6);
        let target = target(&y, n_fit, 2);
        let slices = split(&x, n_fit, dim);
        let mut p = DecoderParams::new(DecoderKind::Mlp);
        p.steps = 40;
        let ce = |block| {
            let fitted =
                mlp::fit_blocked(&slices, std::slice::from_ref(&target), &p, (block, true));
            fitted[0].as_ref().unwrap().ce
        };
        // One block, or blocks summed forward and backward in turn: the same sums but for their
        // rounding.
        let whole = ce(1024);
        for block in [16, 512] {
            assert!(
                (ce(block) - whole).abs() < 1e-5,
                "{block}: {} {whole}",
                ce(block)
            );
        }
    }

    #[test]
    fn binary_targets_in_one_row_follow_softmax_regression_on_two() {
        let (n, n_fit, dim) = (1500, 1000, 7);
        let mut rng = Rng::new(11);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
        let y: Vec<i64> = x.chunks(dim).map(|r| i64::from(r[0] > r[1])).collect();
        let z: Vec<i64> = x
            .chunks(dim)
            .map(|r| i64::from(r[2] > 0.0) + i64::from(r[3] > 0.5))
            .collect();
        let noisy: Vec<i64> = x
            .chunks(dim)
            .map(|r| i64::from(r[4] + rng.normal() as f32 > 0.0))
            .collect();
        let targets = [
            target(&y, n_fit, 2),
            target(&z, n_fit, 3),
            target(&noisy, n_fit, 2),
        ];
        let slices = split(&x, n_fit, dim);
        let p = DecoderParams::new(DecoderKind::Linear);
        let fit = |fold| -> Vec<Fitted> {
            let fitted = linear::fit_with(&slices, &targets, &p, (true, fold));
            fitted.into_iter().map(Option::unwrap).collect()
        };
        let (one, two) = (fit(true), fit(false));
        for (t, (a, b)) in one.iter().zip(&two).enumerate() {
            assert!(
                (a.ce - b.ce).abs() < 1e-6 * b.ce,
                "target {t}: {} vs {}",
                a.ce,
                b.ce
            );
            assert_eq!(
                (a.accuracy, a.best_step),
                (b.accuracy, b.best_step),
                "target {t}"
            );
        }
        // The three-class target between them keeps its rows, and its bits.
        assert_eq!(one[1].ce.to_bits(), two[1].ce.to_bits());
        assert!(one[0].accuracy > 0.95 && one[2].accuracy < 0.9);
    }

    #[test]
    fn features_zero_in_every_fitting_example_change_no_bit() {
        // ReLU-like features, three of them zero on the fitting slice but not on the others.
        let (n, n_fit, dim) = (1500, 1000, 9);
        let mut rng = Rng::new(5);
        let mut x: Vec<f32> = (0..n * dim)
            .map(|_| (rng.normal() as f32).max(0.0))
            .collect();
        for (i, row) in x.chunks_exact_mut(dim).enumerate() {
            if i < n_fit {
                [0, 4, 8].iter().for_each(|&j| row[j] = 0.0);
            }
        }
        let y: Vec<i64> = x.chunks(dim).map(|r| i64::from(r[1] > r[2])).collect();
        let z: Vec<i64> = x
            .chunks(dim)
            .map(|r| i64::from(r[3] + r[8] > 0.5))
            .collect();
        let targets = [target(&y, n_fit, 2), target(&z, n_fit, 2)];
        let slices = split(&x, n_fit, dim);
        assert_eq!(
            Blocked::new(slices.fit, dim, &targets, (BLOCK, false, true)).live,
            [1, 2, 3, 5, 6, 7]
        );
        let bits = |fitted: Vec<Option<Fitted>>| -> Vec<(u64, u64, usize)> {
            fitted
                .into_iter()
                .map(|f| f.unwrap())
                .map(|f| (f.ce.to_bits(), f.accuracy.to_bits(), f.best_step))
                .collect()
        };
        let mut p = DecoderParams::new(DecoderKind::Linear);
        p.steps = 60;
        let linear = |drop| bits(linear::fit_with(&slices, &targets, &p, (drop, true)));
        assert_eq!(linear(true), linear(false));
        p.kind = DecoderKind::Mlp;
        for block in [16, MLP_BLOCK] {
            let mlp = |drop| bits(mlp::fit_blocked(&slices, &targets, &p, (block, drop)));
            assert_eq!(mlp(true), mlp(false), "block {block}");
        }
    }

    #[test]
    fn gather_keeps_the_live_columns_and_scatter_puts_them_back() {
        let x = [0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0];
        let fit = Blocked::new(&x, 4, &[], (16, false, true));
        assert_eq!(fit.live, [1, 3]);
        let m: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let mut live = Vec::new();
        fit.gather(&m, 5, true, &mut live);
        assert_eq!(live, [1.0, 3.0, 4.0, 6.0, 8.0, 9.0]);
        let mut back = vec![f32::NAN; 10];
        fit.scatter(&live, 5, true, &mut back);
        assert_eq!(back, [0.0, 1.0, 0.0, 3.0, 4.0, 0.0, 6.0, 0.0, 8.0, 9.0]);
        fit.gather(&m[..8], 4, false, &mut live);
        assert_eq!(live, [1.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn xor_is_invisible_to_linear_and_visible_to_mlp() {
        // Two ±1 bits a, b with label a XOR b.
        let gen = |r: &mut Rng| r.below(4) as i64;
        let feat = |code: i64, _: &mut Rng| {
            vec![
                if code & 1 == 1 { 1.0 } else { -1.0 },
                if code & 2 == 2 { 1.0 } else { -1.0 },
            ]
        };
        let mut rng = Rng::new(5);
        let mut make = |n: usize| {
            let (mut x, mut y) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let code = gen(&mut rng);
                x.extend(feat(code, &mut rng));
                y.push((code & 1) ^ ((code >> 1) & 1));
            }
            (x, y)
        };
        let (xtr, ytr) = make(2000);
        let (xte, yte) = make(1000);
        let data = ProbeData {
            train: &xtr,
            test: &xte,
            dim: 2,
            y_train: &ytr,
            y_test: &yte,
            classes: 2,
        };
        let lin = measure(&data, &DecoderParams::new(DecoderKind::Linear)).unwrap();
        let mlp = measure(&data, &DecoderParams::new(DecoderKind::Mlp)).unwrap();
        assert!(lin.bits < 0.1, "{lin:?}");
        assert!(mlp.bits > 0.9 * mlp.h_y_bits, "{mlp:?}");
    }

    #[test]
    fn non_finite_features_or_losses_are_errors_not_values() {
        let y: Vec<i64> = (0..200).map(|i| i % 2).collect();
        let run = |x: &[f32], kind| {
            let dim = x.len() / 200;
            let data = ProbeData {
                train: &x[..150 * dim],
                test: &x[150 * dim..],
                dim,
                y_train: &y[..150],
                y_test: &y[150..],
                classes: 2,
            };
            measure(&data, &DecoderParams::new(kind))
                .unwrap_err()
                .to_string()
        };
        let nan: Vec<f32> = (0..400)
            .map(|i| if i % 2 == 0 { f32::NAN } else { 1.0 })
            .collect();
        // A loss that is never finite on the early-stopping slice: no step can be kept.
        let ok = [1f32; 40];
        let slices = Slices {
            fit: &ok[..20],
            es: &nan[..20],
            test: &ok[20..],
            dim: 2,
        };
        let targets = [Target::new(&y[..20], &y[20..30], 10, 2)];
        for kind in [DecoderKind::Linear, DecoderKind::Mlp] {
            let e = run(&nan, kind);
            assert!(e.contains("200 NaN or infinite values"), "{kind:?}: {e}");
            let p = DecoderParams::new(kind);
            let fitted = match kind {
                DecoderKind::Linear => linear::fit(&slices, &targets, &p),
                DecoderKind::Mlp => mlp::fit(&slices, &targets, &p),
            };
            assert!(fitted[0].is_none(), "{kind:?}: a step was kept");
        }
    }

    #[test]
    fn labels_decoded_together_give_the_bits_of_each_alone() {
        let mut rng = Rng::new(3);
        let n = 600;
        let x: Vec<f32> = (0..n * 5).map(|_| rng.normal() as f32).collect();
        let two: Vec<i64> = x.chunks(5).map(|r| i64::from(r[0] + r[1] > 0.0)).collect();
        let three: Vec<i64> = x
            .chunks(5)
            .map(|r| (r[2] > 0.5) as i64 + (r[3] > 0.0) as i64)
            .collect();
        let features = Features {
            train: &x[..400 * 5],
            test: &x[400 * 5..],
            dim: 5,
        };
        let labels = [
            Labels {
                y_train: &two[..400],
                y_test: &two[400..],
                classes: 2,
            },
            Labels {
                y_train: &three[..400],
                y_test: &three[400..],
                classes: 3,
            },
        ];
        for kind in [DecoderKind::Linear, DecoderKind::Mlp] {
            let p = DecoderParams {
                null: true,
                steps: 40,
                ..DecoderParams::new(kind)
            };
            let together = measure_labels(&features, &labels, &p).unwrap();
            for (label, joint) in labels.iter().zip(&together) {
                let alone = measure_labels(&features, std::slice::from_ref(label), &p).unwrap();
                assert_eq!(alone[0], *joint, "{kind:?}");
            }
            assert!(together[0].bits > 0.3, "{kind:?}: {:?}", together[0]);
        }
    }

    #[test]
    fn null_is_near_zero_for_an_informative_representation() {
        let feat =
            |c: i64, r: &mut Rng| vec![c as f32 + 0.3 * r.normal() as f32, r.normal() as f32];
        let mut p = DecoderParams::new(DecoderKind::Linear);
        p.null = true;
        let mut rng = Rng::new(2);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..3000 {
            let c = rng.below(2) as i64;
            x.extend(feat(c, &mut rng));
            y.push(c);
        }
        let data = ProbeData {
            train: &x[..4000],
            test: &x[4000..],
            dim: 2,
            y_train: &y[..2000],
            y_test: &y[2000..],
            classes: 2,
        };
        let m = measure(&data, &p).unwrap();
        assert!(m.bits > 0.6, "{m:?}");
        assert!(m.null_bits.unwrap().abs() < 0.03, "{m:?}");
    }
}
