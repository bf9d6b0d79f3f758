//! Networks (SPEC §1.4). `fc`: input → `depth` hidden layers of `width` → classes, ReLU,
//! PyTorch-style uniform ±1/√fan_in initialisation times an optional scale.
//!
//! Weights are named like a PyTorch module with a `layers` list of `nn.Linear`:
//! `layers.{i}.weight` (out × in) and `layers.{i}.bias`, the last index being the output head.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor, Var};
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

/// A network on a device, with trainable variables.
pub struct Network {
    /// (weight, bias) per linear layer, head last.
    pub layers: Vec<(Var, Var)>,
}

/// Activations of one forward pass.
pub struct Forward {
    /// Post-ReLU activations of each hidden layer.
    pub hidden: Vec<Tensor>,
    /// Output logits.
    pub logits: Tensor,
}

impl Network {
    /// Builds the network from weights, checking every tensor is present with the right shape.
    pub fn from_weights(shape: &Shape, w: &Weights, device: &Device) -> Result<Network> {
        let mut layers = Vec::new();
        for (i, (fan_in, fan_out)) in shape.layer_dims().into_iter().enumerate() {
            let get = |name: String, expect: Vec<usize>| -> Result<Var> {
                match w.get(&name) {
                    Some((s, v)) if *s == expect => Ok(Var::from_tensor(&Tensor::from_slice(
                        v,
                        s.as_slice(),
                        device,
                    )?)?),
                    Some((s, _)) => bail!("weight `{name}` has shape {s:?}, expected {expect:?}"),
                    None => bail!("weight `{name}` is missing"),
                }
            };
            layers.push((
                get(format!("layers.{i}.weight"), vec![fan_out, fan_in])?,
                get(format!("layers.{i}.bias"), vec![fan_out])?,
            ));
        }
        Ok(Network { layers })
    }

    /// All variables with their names, in a fixed order.
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            out.push((format!("layers.{i}.weight"), w));
            out.push((format!("layers.{i}.bias"), b));
        }
        out
    }

    /// Copies the current weights back to host memory.
    pub fn weights(&self) -> Result<Weights> {
        let mut w = Weights::new();
        for (name, var) in self.named_vars() {
            let t = var.as_tensor();
            w.insert(
                name,
                (t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?),
            );
        }
        Ok(w)
    }

    /// Forward pass over a batch `x` (n × inputs).
    pub fn forward(&self, x: &Tensor) -> Result<Forward> {
        let mut h = x.clone();
        let mut hidden = Vec::new();
        let last = self.layers.len() - 1;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            let z = h
                .matmul(&w.as_tensor().t()?)?
                .broadcast_add(b.as_tensor())?;
            if i == last {
                return Ok(Forward { hidden, logits: z });
            }
            h = z.relu()?;
            hidden.push(h.clone());
        }
        unreachable!("a network has at least its head layer")
    }
}
