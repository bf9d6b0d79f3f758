//! Decoders (probes) that measure usable information (SPEC §1.1): softmax regression or a
//! one-hidden-layer ReLU MLP, trained with full-batch Adam on the training split minus a fixed
//! early-stopping slice, and scored on the held-out validation split.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::info::{entropy_bits, usable_bits};
use crate::rng::Rng;
use crate::train::loss_and_accuracy;

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
pub fn measure(data: &ProbeData, p: &DecoderParams, device: &Device) -> Result<Measurement> {
    let n = data.y_train.len();
    if data.train.len() != n * data.dim || data.test.len() != data.y_test.len() * data.dim {
        bail!("features and labels disagree in size");
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
    let real = fit(&slices, p, device)?;
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
        Some(usable_bits(h_y_bits, fit(&null, p, device)?.ce))
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

/// A uniform ±1/√fan_in initialised linear layer.
fn linear_vars(
    fan_in: usize,
    fan_out: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<(Var, Var)> {
    let (w, b) = crate::network::uniform_linear(rng, fan_in, fan_out, 1.0 / (fan_in as f64).sqrt());
    Ok((
        Var::from_tensor(&Tensor::from_vec(w, (fan_out, fan_in), device)?)?,
        Var::from_tensor(&Tensor::from_vec(b, fan_out, device)?)?,
    ))
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

/// Trains a decoder with early stopping and returns its test metrics at the best step.
fn fit(s: &Slices, p: &DecoderParams, device: &Device) -> Result<Fitted> {
    match p.kind {
        DecoderKind::Linear => Ok(linear::fit(s, p)),
        DecoderKind::Mlp => fit_mlp(s, p, device),
    }
}

/// The MLP decoder, on candle.
fn fit_mlp(s: &Slices, p: &DecoderParams, device: &Device) -> Result<Fitted> {
    let t = |(x, y): (&[f32], &[i64])| -> Result<(Tensor, Tensor)> {
        Ok((
            Tensor::from_slice(x, (y.len(), s.dim), device)?,
            Tensor::from_vec(
                y.iter().map(|&c| c as u32).collect::<Vec<_>>(),
                y.len(),
                device,
            )?,
        ))
    };
    let ((fx, fy), (ex, ey), (tx, ty)) = (t(s.fit)?, t(s.es)?, t(s.test)?);
    let mut rng = Rng::derive(p.seed, "decoder", 0);
    let layers = [
        linear_vars(s.dim, p.hidden, &mut rng, device)?,
        linear_vars(p.hidden, s.classes, &mut rng, device)?,
    ];
    let forward = |x: &Tensor| -> Result<Tensor> {
        let h = x
            .matmul(&layers[0].0.as_tensor().t()?)?
            .broadcast_add(layers[0].1.as_tensor())?
            .relu()?;
        Ok(h.matmul(&layers[1].0.as_tensor().t()?)?
            .broadcast_add(layers[1].1.as_tensor())?)
    };
    let vars: Vec<Var> = layers
        .iter()
        .flat_map(|(w, b)| [w.clone(), b.clone()])
        .collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: p.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    )?;
    let mut stopping = EarlyStopping::new(p);
    for step in 0..=p.steps {
        if stopping.due(step) {
            let (es_ce, _) = loss_and_accuracy(&forward(&ex)?, &ey)?;
            stopping.offer(step, es_ce, || loss_and_accuracy(&forward(&tx)?, &ty))?;
        }
        if step == p.steps {
            break;
        }
        opt.backward_step(&candle_nn::loss::cross_entropy(&forward(&fx)?, &fy)?)?;
    }
    stopping
        .best()
        .ok_or_else(|| anyhow::anyhow!("the decoder's loss was never finite"))
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
    fn offer<E>(
        &mut self,
        step: usize,
        es_ce: f64,
        test: impl FnOnce() -> Result<(f64, f64), E>,
    ) -> Result<(), E> {
        if es_ce.is_finite() && self.best.as_ref().is_none_or(|(b, _)| es_ce < *b) {
            let (ce, accuracy) = test()?;
            self.best = Some((
                es_ce,
                Fitted {
                    ce,
                    accuracy,
                    best_step: step,
                },
            ));
        }
        Ok(())
    }

    /// The kept metrics, if any evaluation was finite.
    fn best(self) -> Option<Fitted> {
        self.best.map(|(_, f)| f)
    }
}

/// Softmax regression by hand: one pass over the features per Adam step, no allocation in the
/// loop. Same initialisation and Adam update as the candle path, ~10x faster on small problems.
mod linear {
    use super::{DecoderParams, EarlyStopping, Fitted, Slices};
    use crate::rng::Rng;

    /// Dot product with 16 independent partial sums, so the compiler can vectorise it. The lanes
    /// are fixed, so every vector width gives the same bits.
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 16];
        let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (x, y) in ca.zip(cb) {
            for i in 0..16 {
                acc[i] += x[i] * y[i];
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    /// Logits of one row into `z`.
    #[inline(always)]
    fn logits(w: &[f32], b: &[f32], x: &[f32], z: &mut [f32]) {
        let dim = x.len();
        for (c, zc) in z.iter_mut().enumerate() {
            *zc = b[c] + dot(&w[c * dim..(c + 1) * dim], x);
        }
    }

    /// Log-softmax in place, returning log-sum-exp.
    fn log_softmax(z: &mut [f32]) {
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f32>().ln();
        z.iter_mut().for_each(|v| *v -= lse);
    }

    /// Softmax in place.
    #[inline(always)]
    fn softmax(z: &mut [f32]) {
        let m = z.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in z.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        z.iter_mut().for_each(|v| *v /= sum);
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
            log_softmax(z);
            ce -= z[label as usize] as f64;
            let arg = z
                .iter()
                .enumerate()
                .fold(0, |best, (i, v)| if *v > z[best] { i } else { best });
            correct += usize::from(arg == label as usize);
        }
        let n = y.len().max(1) as f64;
        (ce / n, correct as f64 / n)
    }

    /// PyTorch's Adam update of one parameter vector.
    struct Adam {
        m: Vec<f32>,
        v: Vec<f32>,
    }

    impl Adam {
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

    /// Gradient buffers: of the weights (classes × dim), of the biases, and a row's logits.
    struct Grads {
        w: Vec<f32>,
        b: Vec<f32>,
        z: Vec<f32>,
    }

    /// The mean cross-entropy gradient over the fitting rows `(x, y)`, into `g`.
    #[inline(always)]
    fn gradient_body(w: &[f32], b: &[f32], (x, y): (&[f32], &[i64]), g: &mut Grads) {
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
                let p1 = 1.0 / (1.0 + (-(dot(&diff, row) + bias)).exp());
                let d = (p1 - f32::from(label == 1)) / n;
                g.b[1] += d;
                for (acc, x) in g1.iter_mut().zip(row) {
                    *acc += d * x;
                }
            }
            g0.iter_mut().zip(g1.iter()).for_each(|(a, b)| *a = -b);
            g.b[0] = -g.b[1];
            return;
        }
        for (row, &label) in x.chunks_exact(dim).zip(y) {
            logits(w, b, row, &mut g.z);
            softmax(&mut g.z);
            for (c, &p) in g.z.iter().enumerate() {
                let d = (p - f32::from(c == label as usize)) / n;
                g.b[c] += d;
                for (acc, x) in g.w[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                    *acc += d * x;
                }
            }
        }
    }

    /// [`gradient_body`] compiled for the widest vectors the CPU has (same bits on each: no FMA).
    fn gradient(w: &[f32], b: &[f32], xy: (&[f32], &[i64]), g: &mut Grads) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            unsafe fn avx512(w: &[f32], b: &[f32], xy: (&[f32], &[i64]), g: &mut Grads) {
                gradient_body(w, b, xy, g)
            }
            #[target_feature(enable = "avx2")]
            unsafe fn avx2(w: &[f32], b: &[f32], xy: (&[f32], &[i64]), g: &mut Grads) {
                gradient_body(w, b, xy, g)
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports the enabled feature.
                return unsafe { avx512(w, b, xy, g) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports the enabled feature.
                return unsafe { avx2(w, b, xy, g) };
            }
        }
        gradient_body(w, b, xy, g)
    }

    pub(super) fn fit(s: &Slices, p: &DecoderParams) -> Fitted {
        let (dim, k) = (s.dim, s.classes);
        let mut rng = Rng::derive(p.seed, "decoder", 0);
        let (mut w, mut b) =
            crate::network::uniform_linear(&mut rng, dim, k, 1.0 / (dim as f64).sqrt());
        let (mut adam_w, mut adam_b) = (
            Adam {
                m: vec![0.0; k * dim],
                v: vec![0.0; k * dim],
            },
            Adam {
                m: vec![0.0; k],
                v: vec![0.0; k],
            },
        );
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
                let test =
                    || Ok::<_, std::convert::Infallible>(evaluate(&w, &b, s.test, dim, &mut z));
                let Ok(()) = stopping.offer(step, es_ce, test);
            }
            if step == p.steps {
                break;
            }
            gradient(&w, &b, s.fit, &mut g);
            adam_w.step(&mut w, &g.w, p.lr, step as i32 + 1);
            adam_b.step(&mut b, &g.b, p.lr, step as i32 + 1);
        }
        stopping.best().unwrap_or(Fitted {
            ce: f64::INFINITY,
            accuracy: 0.0,
            best_step: 0,
        })
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
        measure(&data, p, &Device::Cpu).unwrap()
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
        let lin = measure(
            &data,
            &DecoderParams::new(DecoderKind::Linear),
            &Device::Cpu,
        )
        .unwrap();
        let mlp = measure(&data, &DecoderParams::new(DecoderKind::Mlp), &Device::Cpu).unwrap();
        assert!(lin.bits < 0.1, "{lin:?}");
        assert!(mlp.bits > 0.9 * mlp.h_y_bits, "{mlp:?}");
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
        let m = measure(&data, &p, &Device::Cpu).unwrap();
        assert!(m.bits > 0.6, "{m:?}");
        assert!(m.null_bits.unwrap().abs() < 0.03, "{m:?}");
    }
}
