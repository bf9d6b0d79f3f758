//! Checks of one backend against another, and of a backend against itself: agreement of a
//! forward pass and of one SGD step, run-to-run determinism, and throughput. They drive only
//! the [`Backend`] seam, so they compare any two (the CUDA backend with `stages::model::Cpu`
//! on a GPU machine, candle's CPU device with it anywhere).

use std::time::Instant;

use anyhow::{ensure, Result};
use stages::model::{init, Backend, Sgd, Shape, Weights};
use stages::rng::Rng;

/// The SGD settings of the checks: lr 0.05, momentum 0.9, weight decay 5e-4.
pub const SGD: Sgd = Sgd {
    lr: 0.05,
    momentum: 0.9,
    weight_decay: 5e-4,
};

/// A random batch for a shape: `rows` inputs with standard normal values (like normalised
/// images) and uniform labels, from `seed`.
pub fn batch(shape: &Shape, rows: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = Rng::derive(seed, "check-batch", 0);
    let x = (0..rows * shape.input_size())
        .map(|_| rng.normal() as f32)
        .collect();
    let y = (0..rows)
        .map(|_| rng.below(shape.classes as u64) as usize)
        .collect();
    (x, y)
}

/// The largest relative error of `other` against `reference`: per tensor, the largest absolute
/// difference over the largest absolute reference value (so values near zero do not blow it
/// up), and the tensor where it is largest. A NaN anywhere, or a length mismatch, counts as
/// infinite.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    /// The error.
    pub value: f64,
    /// The tensor it comes from.
    pub tensor: String,
}

impl Error {
    fn none() -> Error {
        Error {
            value: 0.0,
            tensor: String::new(),
        }
    }

    /// Takes the larger of this error and that of `other` against `reference` (named `name`).
    pub fn add(&mut self, name: &str, reference: &[f32], other: &[f32]) {
        let e = relative_error(reference, other);
        if e > self.value || self.tensor.is_empty() {
            *self = Error {
                value: e,
                tensor: name.to_string(),
            };
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3e} ({})", self.value, self.tensor)
    }
}

/// max |a - b| / max |a| over one tensor (the absolute error when `a` is all zeros); infinite
/// when the lengths differ or a value is not finite.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let (mut diff, mut scale) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        diff = diff.max((x as f64 - y as f64).abs());
        scale = scale.max((x as f64).abs());
    }
    if scale > 0.0 {
        diff / scale
    } else {
        diff
    }
}

/// How two backends agree on one shape.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// Eval-mode forward pass from the initial weights: each probed layer's features and the
    /// logits.
    pub forward: Error,
    /// Parameters and buffers after one training step.
    pub step: Error,
    /// The change of each parameter in that step (`w1 - w0`): gradients and SGD, not drowned
    /// by the weights themselves.
    pub update: Error,
    /// The step's summed cross-entropy, reference and other.
    pub loss: (f32, f32),
    /// The step's correct predictions, reference and other.
    pub correct: (usize, usize),
}

/// Compares `other` with `reference` on a shape: a forward pass over a random batch of `batch`
/// rows from freshly initialised weights (`seed`), then one SGD step ([`SGD`]) on it.
pub fn agreement(
    reference: &dyn Backend,
    other: &dyn Backend,
    shape: &Shape,
    batch: usize,
    seed: u64,
) -> Result<Agreement> {
    let weights = init(shape, seed);
    let (x, y) = self::batch(shape, batch, seed);
    let mut a = reference.load(shape, &weights, &Weights::new())?;
    let mut b = other.load(shape, &weights, &Weights::new())?;
    let (fa, fb) = (a.forward(&x)?, b.forward(&x)?);
    let names = shape.probed_layers();
    ensure!(
        fa.features.len() == names.len() && fb.features.len() == names.len(),
        "expected {} probed layers, got {} and {}",
        names.len(),
        fa.features.len(),
        fb.features.len()
    );
    let mut forward = Error::none();
    for ((name, ra), rb) in names.iter().zip(&fa.features).zip(&fb.features) {
        forward.add(name, ra, rb);
    }
    forward.add("logits", &fa.logits, &fb.logits);

    let la = a.step(&x, &y, &SGD)?;
    let lb = b.step(&x, &y, &SGD)?;
    let (wa, ma) = a.state()?;
    let (wb, mb) = b.state()?;
    ensure!(
        wa.keys().eq(wb.keys()) && ma.keys().eq(mb.keys()),
        "the backends save different tensors"
    );
    let (mut step, mut update) = (Error::none(), Error::none());
    for (name, (_, va)) in &wa {
        let vb = &wb[name].1;
        step.add(name, va, vb);
        if ma.contains_key(name) {
            let w0 = &weights[name].1;
            let da: Vec<f32> = va.iter().zip(w0).map(|(v, w)| v - w).collect();
            let db: Vec<f32> = vb.iter().zip(w0).map(|(v, w)| v - w).collect();
            update.add(name, &da, &db);
        }
    }
    Ok(Agreement {
        forward,
        step,
        update,
        loss: (la.0, lb.0),
        correct: (la.1, lb.1),
    })
}

/// The BLAKE3 digest (hex) of a model's state: every tensor's name, shape and little-endian
/// f32 bytes, in name order, parameters and buffers then momentum.
pub fn digest(weights: &Weights, momentum: &Weights) -> String {
    let mut h = blake3::Hasher::new();
    for (part, w) in [("weights", weights), ("momentum", momentum)] {
        h.update(part.as_bytes());
        for (name, (shape, values)) in w {
            h.update(name.as_bytes());
            h.update(&[0]);
            for d in shape {
                h.update(&(*d as u64).to_le_bytes());
            }
            for v in values {
                h.update(&v.to_le_bytes());
            }
        }
    }
    h.finalize().to_hex().to_string()
}

/// Two identical training runs on one backend.
#[derive(Clone, Debug)]
pub struct Determinism {
    /// The state digest ([`digest`]) after each run.
    pub digests: [String; 2],
    /// Each run's per-step losses (their bits must match too).
    pub losses: [Vec<f32>; 2],
}

impl Determinism {
    /// Whether the runs gave the same bits.
    pub fn identical(&self) -> bool {
        self.digests[0] == self.digests[1]
            && self.losses[0]
                .iter()
                .map(|l| l.to_bits())
                .eq(self.losses[1].iter().map(|l| l.to_bits()))
    }
}

/// Trains `steps` SGD steps ([`SGD`]) on random batches of `batch` rows from freshly
/// initialised weights, twice, and digests the states.
pub fn determinism(
    backend: &dyn Backend,
    shape: &Shape,
    batch: usize,
    steps: usize,
    seed: u64,
) -> Result<Determinism> {
    let weights = init(shape, seed);
    let run = || -> Result<(String, Vec<f32>)> {
        let mut model = backend.load(shape, &weights, &Weights::new())?;
        let mut losses = Vec::new();
        for s in 0..steps {
            let (x, y) = self::batch(shape, batch, seed.wrapping_add(s as u64));
            losses.push(model.step(&x, &y, &SGD)?.0);
        }
        let (w, m) = model.state()?;
        Ok((digest(&w, &m), losses))
    };
    let (d0, l0) = run()?;
    let (d1, l1) = run()?;
    Ok(Determinism {
        digests: [d0, d1],
        losses: [l0, l1],
    })
}

/// Training throughput in images (rows) per second: one warm-up step, then `steps` steps on
/// one random batch of `batch` rows, timed until the last step's loss is back on the host
/// (which waits for the device).
pub fn images_per_second(
    backend: &dyn Backend,
    shape: &Shape,
    batch: usize,
    steps: usize,
) -> Result<f64> {
    ensure!(steps > 0 && batch > 0, "steps and batch must be positive");
    let mut model = backend.load(shape, &init(shape, 0), &Weights::new())?;
    let (x, y) = self::batch(shape, batch, 0);
    model.step(&x, &y, &SGD)?;
    let start = Instant::now();
    for _ in 0..steps {
        model.step(&x, &y, &SGD)?;
    }
    Ok((batch * steps) as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stages::model::{Cpu, ModelParams};

    #[test]
    fn relative_error_is_scaled_per_tensor_and_nan_is_infinite() {
        assert_eq!(relative_error(&[2.0, -4.0], &[2.0, -4.0]), 0.0);
        assert!((relative_error(&[2.0, -4.0], &[2.5, -4.0]) - 0.125).abs() < 1e-12);
        assert_eq!(relative_error(&[1.0], &[f32::NAN]), f64::INFINITY);
        assert_eq!(relative_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }

    #[test]
    fn the_cpu_agrees_with_itself_and_is_deterministic() {
        let shape = Shape {
            model: ModelParams::default(),
            input: vec![4],
            classes: 2,
        };
        let a = agreement(&Cpu, &Cpu, &shape, 8, 1).unwrap();
        assert_eq!(
            (a.forward.value, a.step.value, a.update.value),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(a.loss.0.to_bits(), a.loss.1.to_bits());
        let d = determinism(&Cpu, &shape, 8, 3, 1).unwrap();
        assert!(d.identical(), "{d:?}");
        assert!(images_per_second(&Cpu, &shape, 8, 2).unwrap() > 0.0);
    }
}
