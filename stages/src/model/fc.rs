//! `fc`: input → `depth` hidden layers of `width` → classes, ReLU, PyTorch-style uniform
//! ±1/√fan_in initialisation times an optional scale.
//!
//! Weights are named like a PyTorch module with a `layers` list of `nn.Linear`:
//! `layers.{i}.weight` (out × in) and `layers.{i}.bias`, the last index being the output head.

use anyhow::{bail, Result};

use crate::kernels;
use crate::model::{momentum_or_zeros, uniform_linear, Forward, Model, Sgd, Shape, Weights};
use crate::rng::Rng;

/// (fan_in, fan_out) of every linear layer of an `fc` shape, head last.
pub fn layer_dims(shape: &Shape) -> Vec<(usize, usize)> {
    let mut dims = Vec::new();
    let mut fan_in = shape.input_size();
    for _ in 0..shape.model.depth {
        dims.push((fan_in, shape.model.width));
        fan_in = shape.model.width;
    }
    dims.push((fan_in, shape.classes));
    dims
}

/// Freshly initialised weights for a shape and seed.
pub fn init_weights(shape: &Shape, seed: u64) -> Weights {
    let mut w = Weights::new();
    for (i, (fan_in, fan_out)) in layer_dims(shape).into_iter().enumerate() {
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

impl Fc {
    /// Builds the network from weights, checking every tensor is present with the right shape.
    pub fn from_weights(shape: &Shape, w: &Weights) -> Result<Fc> {
        let dims = layer_dims(shape);
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

    /// Forward pass over `x` (rows × inputs): the post-ReLU activations of each hidden layer,
    /// and the logits.
    pub fn forward(&self, x: &[f32]) -> Forward {
        let rows = x.len() / self.dims[0].0.max(1);
        let last = self.dims.len() - 1;
        let mut hidden: Vec<Vec<f32>> = Vec::with_capacity(last);
        let mut wt = Vec::new();
        for l in 0..=last {
            let input = if l == 0 { x } else { &hidden[l - 1] };
            let mut out = vec![0f32; rows * self.dims[l].1];
            forward_layer(
                input,
                &self.weights[l],
                &self.biases[l],
                &mut out,
                l < last,
                &mut wt,
            );
            if l == last {
                return Forward {
                    features: hidden,
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
fn forward_layer_body(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    out: &mut [f32],
    relu: bool,
    wt: &mut Vec<f32>,
) {
    crate::kernels::dense(x, w, b, out, wt);
    if relu {
        crate::kernels::relu(out);
    }
}

crate::kernels::simd! {
    /// [`forward_layer_body`] for the widest vectors the CPU has (the same bits on each).
    pub(crate) fn forward_layer(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], relu: bool, wt: &mut Vec<f32>) = forward_layer_body;
}

/// The `fc` network with its SGD momentum and step buffers: its [`Model`].
pub struct FcModel {
    net: Fc,
    momentum: Momentum,
    ws: Workspace,
}

impl FcModel {
    /// The model from saved weights and momentum buffers.
    pub fn load(shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<FcModel> {
        let net = Fc::from_weights(shape, weights)?;
        let momentum = Momentum::of(&net, momentum)?;
        let ws = Workspace::new(&net.dims, 0);
        Ok(FcModel { net, momentum, ws })
    }
}

impl Model for FcModel {
    fn step(&mut self, x: &[f32], y: &[usize], s: &Sgd) -> Result<(f32, usize)> {
        self.ws.load(&self.net.dims, x, y);
        Ok(sgd_step(&mut self.net, &mut self.momentum, &mut self.ws, s))
    }

    fn forward(&self, x: &[f32]) -> Result<Forward> {
        Ok(self.net.forward(x))
    }

    fn state(&self) -> Result<(Weights, Weights)> {
        Ok((self.net.to_weights(), self.momentum.to_weights(&self.net)))
    }
}

/// SGD momentum buffers per layer: (weight, bias).
struct Momentum(Vec<(Vec<f32>, Vec<f32>)>);

impl Momentum {
    /// The buffers saved in a checkpoint (zeros where none are).
    fn of(net: &Fc, saved: &Weights) -> Result<Momentum> {
        let mut out = Vec::new();
        for (i, (w, b)) in net.weights.iter().zip(&net.biases).enumerate() {
            out.push((
                momentum_or_zeros(saved, &format!("layers.{i}.weight"), w.len())?,
                momentum_or_zeros(saved, &format!("layers.{i}.bias"), b.len())?,
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

/// Buffers of one training step, allocated at the first step of a segment.
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
    /// A layer's weights transposed, for the forward pass.
    wt: Vec<f32>,
}

impl Workspace {
    /// Buffers for batches of up to `batch` rows.
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
            wt: Vec::new(),
        }
    }

    /// Copies a batch into the input buffers, growing them when it is larger than any before.
    fn load(&mut self, dims: &[(usize, usize)], x: &[f32], y: &[usize]) {
        if y.len() > self.y.len() {
            *self = Workspace::new(dims, y.len());
        }
        self.x[..x.len()].copy_from_slice(x);
        self.y[..y.len()].copy_from_slice(y);
        self.rows = y.len();
    }
}

/// One SGD step on the gathered batch (PyTorch semantics: `d = g + wd * w`, `buf = m * buf + d`,
/// `w -= lr * buf`): returns the batch's summed cross-entropy and how many it classified right.
#[inline(always)]
fn sgd_step_body(
    net: &mut Fc,
    momentum: &mut Momentum,
    ws: &mut Workspace,
    s: &Sgd,
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
        kernels::dense(input, &net.weights[l], &net.biases[l], out, &mut ws.wt);
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
    fn sgd_step(net: &mut Fc, momentum: &mut Momentum, ws: &mut Workspace, s: &Sgd) -> (f32, usize) = sgd_step_body;
}

/// PyTorch's SGD update of one parameter from its gradient.
#[inline(always)]
fn update(w: &mut [f32], g: &[f32], buf: &mut [f32], s: &Sgd) {
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
