//! Networks (SPEC §1.4) behind one seam: a [`Model`] owns its training step (forward, backward,
//! SGD update), an eval-mode forward that returns the probed features and the logits, and its
//! parameters and buffers under PyTorch names. `fc`, `resnet18` and `allcnn` implement it, each
//! in its own file, on [`crate::kernels`], so the bits do not depend on the CPU.

pub mod allcnn;
pub mod fc;
pub mod layers;
pub mod resnet18;

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Architectures uinfo can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Fully connected ReLU network.
    Fc,
    /// ResNet-18, CIFAR variant.
    Resnet18,
    /// All-CNN-C with batch norm.
    Allcnn,
}

impl Arch {
    /// The architecture's name in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Fc => "fc",
            Arch::Resnet18 => "resnet18",
            Arch::Allcnn => "allcnn",
        }
    }

    /// Whether it takes images (height × width × channels) rather than feature vectors.
    pub fn convolutional(self) -> bool {
        self != Arch::Fc
    }
}

/// Parameters of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// Architecture.
    pub arch: Arch,
    /// `fc`: number of hidden layers.
    pub depth: usize,
    /// `fc`: units per hidden layer.
    pub width: usize,
    /// Multiplier on the default initialisation range.
    pub init_scale: f64,
    /// Convolutional networks: channels × this, rounded, at least 1.
    #[serde(default = "one")]
    pub width_mult: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            arch: Arch::Fc,
            depth: 3,
            width: 100,
            init_scale: 1.0,
            width_mult: 1.0,
        }
    }
}

impl ModelParams {
    /// `channels` scaled by the width multiplier.
    pub fn channels(&self, channels: usize) -> usize {
        ((channels as f64 * self.width_mult).round() as usize).max(1)
    }
}

/// The full shape of a network: its parameters plus input shape and output classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// Architecture parameters.
    pub model: ModelParams,
    /// One example as the network sees it: `[features]` or `[height, width, channels]`.
    pub input: Vec<usize>,
    /// Output classes.
    pub classes: usize,
}

impl Shape {
    /// The input as an image: height, width, channels (a feature vector as a 1 × 1 image).
    pub fn image(&self) -> [usize; 3] {
        match self.input[..] {
            [h, w, c] => [h, w, c],
            _ => [1, 1, self.input_size()],
        }
    }

    /// Values per input example.
    pub fn input_size(&self) -> usize {
        self.input.iter().product()
    }

    /// Names of the probed layers, in index order (index = position + 1).
    pub fn probed_layers(&self) -> Vec<String> {
        match self.model.arch {
            Arch::Fc => (1..=self.model.depth)
                .map(|i| format!("hidden{i}"))
                .collect(),
            Arch::Resnet18 => resnet18::PROBED.iter().map(|s| s.to_string()).collect(),
            Arch::Allcnn => allcnn::PROBED.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Tensors by name (row-major f32 with shape): parameters, buffers or momentum, host-side.
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The settings of one SGD step.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum.
    pub momentum: f32,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
}

/// An eval-mode forward pass over a batch.
pub struct Forward {
    /// Each probed layer's features (rows × its width), in index order.
    pub features: Vec<Vec<f32>>,
    /// Output logits (rows × classes).
    pub logits: Vec<f32>,
}

/// A network being trained or read.
pub trait Model {
    /// One SGD step on a batch: `x` is rows × input size, `y` the target classes. Returns the
    /// batch's summed cross-entropy (nats) and how many it classified right.
    /// Errors come from the device (a GPU out of memory), never from the arithmetic.
    fn step(&mut self, x: &[f32], y: &[usize], sgd: &Sgd) -> Result<(f32, usize)>;
    /// The eval-mode forward pass (batch norm with its running statistics) over `x`.
    fn forward(&self, x: &[f32]) -> Result<Forward>;
    /// Parameters and buffers by PyTorch name, and the SGD momentum of each parameter.
    fn state(&self) -> Result<(Weights, Weights)>;
}

/// Where a network's arithmetic runs: builds [`Model`]s for one device and names the numerics
/// domain (SPEC §2.2) of what they compute. [`Cpu`] is this crate's; the `gpu` crate adds CUDA.
pub trait Backend: Sync {
    /// The numerics domain of the models it builds, e.g. `cpu-f32`.
    fn domain(&self) -> &'static str;
    /// A model from its shape, parameters and buffers, and momentum (zeros where missing).
    fn load(&self, shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<Box<dyn Model>>;
}

/// The portable CPU backend: [`crate::kernels`], the same bits on every CPU.
pub struct Cpu;

impl Backend for Cpu {
    fn domain(&self) -> &'static str {
        crate::DOMAIN
    }

    fn load(&self, shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<Box<dyn Model>> {
        load(shape, weights, momentum)
    }
}

/// A model from its shape, its parameters and buffers, and momentum buffers (zeros where
/// missing); errors name a missing or misshapen tensor.
pub fn load(shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<Box<dyn Model>> {
    Ok(match shape.model.arch {
        Arch::Fc => Box::new(fc::FcModel::load(shape, weights, momentum)?),
        Arch::Resnet18 => Box::new(resnet18::ResNet18::load(shape, weights, momentum)?),
        Arch::Allcnn => Box::new(allcnn::AllCnn::load(shape, weights, momentum)?),
    })
}

/// Freshly initialised parameters and buffers for a shape and seed (PyTorch's default
/// initialisation, drawn from seeded streams).
pub fn init(shape: &Shape, seed: u64) -> Weights {
    match shape.model.arch {
        Arch::Fc => fc::init_weights(shape, seed),
        Arch::Resnet18 => resnet18::ResNet18::init(shape, seed).parameters().0,
        Arch::Allcnn => allcnn::AllCnn::init(shape, seed).parameters().0,
    }
}

/// The number of trainable parameters (buffers such as running statistics excluded).
pub fn parameter_count(shape: &Shape) -> usize {
    let (_, momentum) = load(shape, &init(shape, 0), &Weights::new())
        .expect("freshly initialised")
        .state()
        .expect("on the CPU");
    momentum.values().map(|(_, v)| v.len()).sum()
}

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

/// Fetches a tensor of an expected shape from saved state, or says what is wrong.
pub fn tensor(w: &Weights, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    match w.get(name) {
        Some((s, v)) if s == shape => Ok(v.clone()),
        Some((s, _)) => anyhow::bail!("tensor `{name}` has shape {s:?}, expected {shape:?}"),
        None => anyhow::bail!("tensor `{name}` is missing"),
    }
}

/// A momentum buffer from saved state, zeros when there is none.
pub fn momentum_or_zeros(m: &Weights, name: &str, len: usize) -> Result<Vec<f32>> {
    match m.get(name) {
        Some((_, v)) if v.len() == len => Ok(v.clone()),
        Some((s, _)) => anyhow::bail!("momentum buffer `{name}` has shape {s:?}"),
        None => Ok(vec![0.0; len]),
    }
}
