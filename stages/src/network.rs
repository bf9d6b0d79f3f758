//! Networks (SPEC §1.4). `fc`: input → `depth` hidden layers of `width` → classes, ReLU,
//! PyTorch-style uniform ±1/√fan_in initialisation times an optional scale.
//!
//! Weights are named like a PyTorch module with a `layers` list of `nn.Linear`:
//! `layers.{i}.weight` (out × in) and `layers.{i}.bias`, the last index being the output head.
//! The network runs in host memory on [`crate::kernels`].

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Architectures uinfo can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Fully connected ReLU network.
    Fc,
}

/// Parameters of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// Architecture.
    pub arch: Arch,
    /// Number of hidden layers.
    pub depth: usize,
    /// Units per hidden layer.
    pub width: usize,
    /// Multiplier on the default initialisation range.
    pub init_scale: f64,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            arch: Arch::Fc,
            depth: 3,
            width: 100,
            init_scale: 1.0,
        }
    }
}

/// The full shape of a network: its parameters plus input and output sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// Architecture parameters.
    pub model: ModelParams,
    /// Input features.
    pub inputs: usize,
    /// Output classes.
    pub classes: usize,
}

impl Shape {
    /// (fan_in, fan_out) of every linear layer, head last.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims = Vec::new();
        let mut fan_in = self.inputs;
        for _ in 0..self.model.depth {
            dims.push((fan_in, self.model.width));
            fan_in = self.model.width;
        }
        dims.push((fan_in, self.classes));
        dims
    }

    /// Names of the probed layers, index 1..=depth.
    pub fn probed_layers(&self) -> Vec<String> {
        (1..=self.model.depth)
            .map(|i| format!("hidden{i}"))
            .collect()
    }
}

/// Parameter values by name (row-major f32 with shape): a device-independent copy of weights.
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// A linear layer's (weight, bias), uniform in ±`bound` like PyTorch's default with
/// bound 1/√fan_in: the weight (fan_out × fan_in) drawn first, then the bias.
pub fn uniform_linear(
    rng: &mut Rng,
    fan_in: usize,
    fan_out: usize,
    bound: f64,
) -> (Vec<f32>, Vec<f32>) {
    let weight = (0..fan_in * fan_out)
        .map(|_| rng.uniform_in(-bound, bound) as f32)
        .collect();
    let bias = (0..fan_out)
        .map(|_| rng.uniform_in(-bound, bound) as f32)
        .collect();
    (weight, bias)
}

/// Freshly initialised weights for a shape and seed.
pub fn init_weights(shape: &Shape, seed: u64) -> Weights {
    let mut w = Weights::new();
    for (i, (fan_in, fan_out)) in shape.layer_dims().into_iter().enumerate() {
        let bound = shape.model.init_scale / (fan_in as f64).sqrt();
        let mut rng = Rng::derive(seed, "init", i as u64);
        let (weight, bias) = uniform_linear(&mut rng, fan_in, fan_out, bound);
        w.insert(
            format!("layers.{i}.weight"),
            (vec![fan_out, fan_in], weight),
        );
        w.insert(format!("layers.{i}.bias"), (vec![fan_out], bias));
    }
    w
}

/// The `fc` network in host memory: one (weight, bias) per linear layer, head last, weights
/// out × in row-major as in PyTorch. All its arithmetic goes through [`crate::kernels`], so its
/// bits do not depend on the CPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Fc {
    /// (fan_in, fan_out) per layer.
    pub dims: Vec<(usize, usize)>,
    /// Weights per layer, fan_out × fan_in.
    pub weights: Vec<Vec<f32>>,
    /// Biases per layer.
    pub biases: Vec<Vec<f32>>,
}

/// Activations of one forward pass over a batch.
pub struct Forward {
    /// Post-ReLU activations of each hidden layer (rows × width).
    pub hidden: Vec<Vec<f32>>,
    /// Output logits (rows × classes).
    pub logits: Vec<f32>,
}

impl Fc {
    /// Builds the network from weights, checking every tensor is present with the right shape.
    pub fn from_weights(shape: &Shape, w: &Weights) -> Result<Fc> {
        let dims = shape.layer_dims();
        let get = |name: String, expect: Vec<usize>| -> Result<Vec<f32>> {
            match w.get(&name) {
                Some((s, v)) if *s == expect => Ok(v.clone()),
                Some((s, _)) => bail!("weight `{name}` has shape {s:?}, expected {expect:?}"),
                None => bail!("weight `{name}` is missing"),
            }
        };
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        for (i, &(fan_in, fan_out)) in dims.iter().enumerate() {
            weights.push(get(format!("layers.{i}.weight"), vec![fan_out, fan_in])?);
            biases.push(get(format!("layers.{i}.bias"), vec![fan_out])?);
        }
        Ok(Fc {
            dims,
            weights,
            biases,
        })
    }

    /// The parameters by PyTorch name.
    pub fn to_weights(&self) -> Weights {
        let mut w = Weights::new();
        for (i, &(fan_in, fan_out)) in self.dims.iter().enumerate() {
            w.insert(
                format!("layers.{i}.weight"),
                (vec![fan_out, fan_in], self.weights[i].clone()),
            );
            w.insert(
                format!("layers.{i}.bias"),
                (vec![fan_out], self.biases[i].clone()),
            );
        }
        w
    }

    /// Forward pass over `x` (rows × inputs).
    pub fn forward(&self, x: &[f32]) -> Forward {
        let rows = x.len() / self.dims[0].0.max(1);
        let last = self.dims.len() - 1;
        let mut hidden: Vec<Vec<f32>> = Vec::with_capacity(last);
        for l in 0..=last {
            let input = if l == 0 { x } else { &hidden[l - 1] };
            let mut out = vec![0f32; rows * self.dims[l].1];
            forward_layer(input, &self.weights[l], &self.biases[l], &mut out, l < last);
            if l == last {
                return Forward {
                    hidden,
                    logits: out,
                };
            }
            hidden.push(out);
        }
        unreachable!("a network has at least its head layer")
    }
}

/// One dense layer, followed by a ReLU when `relu`.
#[inline(always)]
fn forward_layer_body(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], relu: bool) {
    crate::kernels::dense(x, w, b, out);
    if relu {
        crate::kernels::relu(out);
    }
}

crate::kernels::simd! {
    /// [`forward_layer_body`] for the widest vectors the CPU has (the same bits on each).
    pub(crate) fn forward_layer(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], relu: bool) = forward_layer_body;
}
