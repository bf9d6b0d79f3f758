//! Decoders (probes) that measure usable information (SPEC §1.1): softmax regression or a
//! one-hidden-layer ReLU MLP, trained with full-batch Adam on the training split minus a fixed
//! early-stopping slice, and scored on the held-out validation split.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::info::{entropy_bits, usable_bits};
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

struct Fitted {
    ce: f64,
    accuracy: f64,
    best_step: usize,
}

/// Trains the decoder and measures usable information on the test split.
pub fn measure(data: &ProbeData, p: &DecoderParams) -> Result<Measurement> {
    let n = data.y_train.len();
    if data.train.len() != n * data.dim || data.test.len() != data.y_test.len() * data.dim {
        bail!("features and labels disagree in size");
    }
    let bad = data
        .train
        .iter()
        .chain(data.test)
        .filter(|v| !v.is_finite())
        .count();
    if bad > 0 {
        bail!("the representation has {bad} NaN or infinite values");
    }
    let n_es = ((n as f64) * p.holdout).round() as usize;
    let n_fit = n - n_es;
    if n_fit == 0 || n_es == 0 || data.y_test.is_empty() {
        bail!(
            "too few examples to fit, early-stop and test a decoder ({n} train, {} test)",
            data.y_test.len()
        );
    }
    let (mut fit_x, mut es_x, mut test_x) = (
        data.train[..n_fit * data.dim].to_vec(),
        data.train[n_fit * data.dim..].to_vec(),
        data.test.to_vec(),
    );
    if p.standardize {
        standardize(&mut fit_x, &mut [&mut es_x, &mut test_x], data.dim);
    }
    let fit_y = &data.y_train[..n_fit];
    let es_y = &data.y_train[n_fit..];
    let h_y_bits = entropy_bits(fit_y, data.classes);
    let slices = Slices {
        fit: (&fit_x, fit_y),
        es: (&es_x, es_y),
        test: (&test_x, data.y_test),
        dim: data.dim,
        classes: data.classes,
    };
    let real = fit(&slices, p)?;
    let null_bits = if p.null {
        // Labels permuted independently of the features in every slice, test included: what the
        // same decoder reads when there is nothing to read.
        let mut rng = Rng::derive(p.seed, "null", 0);
        let mut labels: Vec<i64> = data.y_train.to_vec();
        rng.shuffle(&mut labels);
        let mut test_labels: Vec<i64> = data.y_test.to_vec();
        rng.shuffle(&mut test_labels);
        let null = Slices {
            fit: (&fit_x, &labels[..n_fit]),
            es: (&es_x, &labels[n_fit..]),
            test: (&test_x, &test_labels),
            ..slices
        };
        Some(usable_bits(h_y_bits, fit(&null, p)?.ce))
    } else {
        None
    };
    Ok(Measurement {
        bits: usable_bits(h_y_bits, real.ce),
        ce_nats: real.ce,
        accuracy: real.accuracy,
        h_y_bits,
        null_bits,
        n_train: n_fit,
        n_test: data.y_test.len(),
        best_step: real.best_step,
    })
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

/// The three slices a decoder sees: fitting, early stopping, test (features, labels).
#[derive(Clone, Copy)]
struct Slices<'a> {
    fit: (&'a [f32], &'a [i64]),
    es: (&'a [f32], &'a [i64]),
    test: (&'a [f32], &'a [i64]),
    dim: usize,
    classes: usize,
}

/// Trains a decoder with early stopping and returns its test metrics at the best step; an error
/// when its early-stopping loss was never finite (features with NaN or infinite values, or
/// a learning rate that makes the decoder diverge).
fn fit(s: &Slices, p: &DecoderParams) -> Result<Fitted> {
    let fitted = match p.kind {
        DecoderKind::Linear => linear::fit(s, p),
        DecoderKind::Mlp => mlp::fit(s, p),
    };
    fitted.ok_or_else(|| {
        anyhow::anyhow!(
            "the {} decoder's loss was never finite (lr {}; check the representation for NaN or infinite values)",
            p.kind.name(),
            p.lr
        )
    })
}

/// Early stopping: evaluates every `eval_every` steps and at the last, and keeps the test
/// metrics of the step whose early-stopping loss is lowest.
struct EarlyStopping {
    every: usize,
    last: usize,
    best: Option<(f64, Fitted)>,
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

    /// Records a step's early-stopping loss; measures the test split with `test` (mean CE,
    /// accuracy) only when the step is the best so far.
    fn offer(&mut self, step: usize, es_ce: f64, test: impl FnOnce() -> (f64, f64)) {
        if es_ce.is_finite() && self.best.as_ref().is_none_or(|(b, _)| es_ce < *b) {
            let (ce, accuracy) = test();
            self.best = Some((
                es_ce,
                Fitted {
                    ce,
                    accuracy,
                    best_step: step,
                },
            ));
        }
    }

    /// The kept metrics, if any evaluation was finite.
    fn best(self) -> Option<Fitted> {
        self.best.map(|(_, f)| f)
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
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for i in 0..theta.len() {
            let g = grad[i] as f64;
            self.m[i] = (b1 * self.m[i] as f64 + (1.0 - b1) * g) as f32;
            self.v[i] = (b2 * self.v[i] as f64 + (1.0 - b2) * g * g) as f32;
            let m_hat = self.m[i] as f64 / c1;
            let v_hat = self.v[i] as f64 / c2;
            theta[i] -= (lr * m_hat / (v_hat.sqrt() + eps)) as f32;
        }
    }
}

/// A uniform ±1/√fan_in initialised linear layer (weight fan_out × fan_in, then bias).
fn init_linear(rng: &mut Rng, fan_in: usize, fan_out: usize) -> (Vec<f32>, Vec<f32>) {
    crate::model::uniform_linear(rng, fan_in, fan_out, 1.0 / (fan_in as f64).sqrt())
}

/// Softmax regression: one pass over the features per Adam step, no allocation in the loop.
mod linear {
    use super::{init_linear, Adam, DecoderParams, EarlyStopping, Fitted, Slices};
    use crate::kernels::{self, dot, softmax_xent};
    use crate::math::expf;
    use crate::rng::Rng;

    /// Logits of one row into `z`.
    #[inline(always)]
    fn logits(w: &[f32], b: &[f32], x: &[f32], z: &mut [f32]) {
        let dim = x.len();
        for (c, zc) in z.iter_mut().enumerate() {
            *zc = b[c] + dot(&w[c * dim..(c + 1) * dim], x);
        }
    }

    /// Mean cross-entropy (nats) and accuracy.
    fn evaluate(
        w: &[f32],
        b: &[f32],
        (x, y): (&[f32], &[i64]),
        dim: usize,
        z: &mut [f32],
    ) -> (f64, f64) {
        let (mut ce, mut correct) = (0f64, 0usize);
        for (row, &label) in x.chunks_exact(dim).zip(y) {
            logits(w, b, row, z);
            let (c, hit) = softmax_xent(z, label as usize, 0.0);
            ce += c as f64;
            correct += usize::from(hit);
        }
        let n = y.len().max(1) as f64;
        (ce / n, correct as f64 / n)
    }

    /// Gradient buffers: of the weights (classes × dim), of the biases, and a row's logits.
    struct Grads {
        w: Vec<f32>,
        b: Vec<f32>,
        z: Vec<f32>,
    }

    /// The mean cross-entropy gradient over the fitting rows `(x, y)`, into `g`.
    #[inline(always)]
    fn gradient_body(w: &[f32], b: &[f32], x: &[f32], y: &[i64], g: &mut Grads) {
        let (dim, n) = (w.len() / b.len(), y.len() as f32);
        g.w.iter_mut().for_each(|v| *v = 0.0);
        g.b.iter_mut().for_each(|v| *v = 0.0);
        if b.len() == 2 {
            // Two classes: only the logit difference matters, and class 0's gradient is the
            // negative of class 1's, so one dot product, one exp and one update per row.
            let diff: Vec<f32> = (0..dim).map(|j| w[dim + j] - w[j]).collect();
            let bias = b[1] - b[0];
            let (g0, g1) = g.w.split_at_mut(dim);
            for (row, &label) in x.chunks_exact(dim).zip(y) {
                let p1 = 1.0 / (1.0 + expf(-(dot(&diff, row) + bias)));
                let d = (p1 - f32::from(label == 1)) / n;
                g.b[1] += d;
                kernels::axpy(g1, d, row);
            }
            g0.iter_mut().zip(g1.iter()).for_each(|(a, b)| *a = -b);
            g.b[0] = -g.b[1];
            return;
        }
        for (row, &label) in x.chunks_exact(dim).zip(y) {
            logits(w, b, row, &mut g.z);
            softmax_xent(&mut g.z, label as usize, 1.0 / n);
            for (c, &d) in g.z.iter().enumerate() {
                g.b[c] += d;
                kernels::axpy(&mut g.w[c * dim..(c + 1) * dim], d, row);
            }
        }
    }

    kernels::simd! {
        /// [`gradient_body`] for the widest vectors the CPU has (the same bits on each).
        fn gradient(w: &[f32], b: &[f32], x: &[f32], y: &[i64], g: &mut Grads) = gradient_body;
    }

    /// Fits softmax regression; `None` when the early-stopping loss was never finite.
    pub(super) fn fit(s: &Slices, p: &DecoderParams) -> Option<Fitted> {
        let (dim, k) = (s.dim, s.classes);
        let mut rng = Rng::derive(p.seed, "decoder", 0);
        let (mut w, mut b) = init_linear(&mut rng, dim, k);
        let (mut adam_w, mut adam_b) = (Adam::new(k * dim), Adam::new(k));
        let mut g = Grads {
            w: vec![0f32; k * dim],
            b: vec![0f32; k],
            z: vec![0f32; k],
        };
        let mut z = vec![0f32; k];
        let mut stopping = EarlyStopping::new(p);
        for step in 0..=p.steps {
            if stopping.due(step) {
                let (es_ce, _) = evaluate(&w, &b, s.es, dim, &mut z);
                stopping.offer(step, es_ce, || evaluate(&w, &b, s.test, dim, &mut z));
            }
            if step == p.steps {
                break;
            }
            gradient(&w, &b, s.fit.0, s.fit.1, &mut g);
            adam_w.step(&mut w, &g.w, p.lr, step as i32 + 1);
            adam_b.step(&mut b, &g.b, p.lr, step as i32 + 1);
        }
        stopping.best()
    }
}

/// One hidden ReLU layer, full-batch: the forward and backward passes are [`crate::kernels`]
/// dense layers.
mod mlp {
    use super::{init_linear, Adam, DecoderParams, EarlyStopping, Fitted, Slices};
    use crate::kernels::{self, dense, dense_grads, dense_input_grad_relu, relu, softmax_xent};
    use crate::rng::Rng;

    /// The decoder's parameters: (weight, bias) of the hidden layer and of the output layer.
    struct Params {
        w1: Vec<f32>,
        b1: Vec<f32>,
        w2: Vec<f32>,
        b2: Vec<f32>,
    }

    /// Buffers for the fitting slice's forward and backward passes, and the gradients.
    struct Work {
        hidden: Vec<f32>,
        delta1: Vec<f32>,
        logits: Vec<f32>,
        grads: Params,
    }

    /// Mean cross-entropy (nats) and accuracy on a slice.
    fn evaluate(p: &Params, (x, y): (&[f32], &[i64])) -> (f64, f64) {
        let n = y.len();
        let mut hidden = vec![0f32; n * p.b1.len()];
        let mut logits = vec![0f32; n * p.b2.len()];
        forward(p, x, &mut hidden, &mut logits);
        kernels::mean_xent(&logits, y, p.b2.len())
    }

    #[inline(always)]
    fn forward_body(p: &Params, x: &[f32], hidden: &mut [f32], logits: &mut [f32]) {
        dense(x, &p.w1, &p.b1, hidden);
        relu(hidden);
        dense(hidden, &p.w2, &p.b2, logits);
    }

    kernels::simd! {
        /// [`forward_body`] for the widest vectors the CPU has (the same bits on each).
        fn forward(p: &Params, x: &[f32], hidden: &mut [f32], logits: &mut [f32]) = forward_body;
    }

    /// The mean cross-entropy gradient over the fitting rows, into `w.grads`.
    #[inline(always)]
    fn gradient_body(p: &Params, x: &[f32], y: &[i64], w: &mut Work) {
        let k = p.b2.len();
        forward_body(p, x, &mut w.hidden, &mut w.logits);
        let scale = 1.0 / y.len() as f32;
        for (z, &label) in w.logits.chunks_exact_mut(k).zip(y) {
            softmax_xent(z, label as usize, scale);
        }
        let g = &mut w.grads;
        dense_grads(&w.hidden, &w.logits, &mut g.w2, &mut g.b2);
        dense_input_grad_relu(&w.hidden, &p.w2, &w.logits, k, &mut w.delta1);
        dense_grads(x, &w.delta1, &mut g.w1, &mut g.b1);
    }

    kernels::simd! {
        /// [`gradient_body`] for the widest vectors the CPU has (the same bits on each).
        fn gradient(p: &Params, x: &[f32], y: &[i64], w: &mut Work) = gradient_body;
    }

    /// Fits the MLP; `None` when the early-stopping loss was never finite.
    pub(super) fn fit(s: &Slices, d: &DecoderParams) -> Option<Fitted> {
        let (dim, h, k, n) = (s.dim, d.hidden, s.classes, s.fit.1.len());
        let mut rng = Rng::derive(d.seed, "decoder", 0);
        let (w1, b1) = init_linear(&mut rng, dim, h);
        let (w2, b2) = init_linear(&mut rng, h, k);
        let mut p = Params { w1, b1, w2, b2 };
        let mut adam = [h * dim, h, k * h, k].map(Adam::new);
        let mut work = Work {
            hidden: vec![0.0; n * h],
            delta1: vec![0.0; n * h],
            logits: vec![0.0; n * k],
            grads: Params {
                w1: vec![0.0; h * dim],
                b1: vec![0.0; h],
                w2: vec![0.0; k * h],
                b2: vec![0.0; k],
            },
        };
        let mut stopping = EarlyStopping::new(d);
        for step in 0..=d.steps {
            if stopping.due(step) {
                let (es_ce, _) = evaluate(&p, s.es);
                stopping.offer(step, es_ce, || evaluate(&p, s.test));
            }
            if step == d.steps {
                break;
            }
            gradient(&p, s.fit.0, s.fit.1, &mut work);
            let t = step as i32 + 1;
            let g = &work.grads;
            adam[0].step(&mut p.w1, &g.w1, d.lr, t);
            adam[1].step(&mut p.b1, &g.b1, d.lr, t);
            adam[2].step(&mut p.w2, &g.w2, d.lr, t);
            adam[3].step(&mut p.b2, &g.b2, d.lr, t);
        }
        stopping.best()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            fit: (&ok[..20], &y[..10]),
            es: (&nan[..20], &y[10..20]),
            test: (&ok[20..], &y[20..30]),
            dim: 2,
            classes: 2,
        };
        for kind in [DecoderKind::Linear, DecoderKind::Mlp] {
            let e = run(&nan, kind);
            assert!(e.contains("200 NaN or infinite values"), "{kind:?}: {e}");
            let e = fit(&slices, &DecoderParams::new(kind))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("loss was never finite"), "{kind:?}: {e}");
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
