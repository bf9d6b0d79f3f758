//! Layers of the convolutional networks, forward and backward, on [`crate::kernels`]:
//! convolution (im2col, one image at a time), batch norm, ReLU, global average pooling and a
//! linear head. Activations are NHWC (`Act`); every sum runs in a fixed order, so the bits do
//! not depend on the CPU. Parameters keep their gradient and SGD momentum beside them.

use anyhow::Result;

use crate::kernels::{self, dense, gemm, simd};
use crate::model::{momentum_or_zeros, tensor, Sgd, Weights};
use crate::rng::Rng;

/// A trainable tensor with its gradient and SGD momentum buffer, in the layer's own layout.
#[derive(Clone, Debug)]
pub struct Param {
    /// Values.
    pub value: Vec<f32>,
    /// Gradient of the last step.
    pub grad: Vec<f32>,
    /// SGD momentum buffer.
    pub momentum: Vec<f32>,
}

impl Param {
    /// A parameter with these values, zero gradient and momentum.
    pub fn new(value: Vec<f32>) -> Param {
        let n = value.len();
        Param {
            value,
            grad: vec![0.0; n],
            momentum: vec![0.0; n],
        }
    }

    /// PyTorch's SGD update (`d = g + wd * w`, `buf = m * buf + d`, `w -= lr * buf`).
    pub fn update(&mut self, s: &Sgd) {
        for ((w, &g), b) in self
            .value
            .iter_mut()
            .zip(&self.grad)
            .zip(self.momentum.iter_mut())
        {
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
}

/// Activations of a batch, NHWC.
#[derive(Clone, Debug, Default)]
pub struct Act {
    /// Images.
    pub n: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Values, n × h × w × c.
    pub data: Vec<f32>,
}

impl Act {
    /// Zero activations of a shape.
    pub fn zeros(n: usize, h: usize, w: usize, c: usize) -> Act {
        Act {
            n,
            h,
            w,
            c,
            data: vec![0.0; n * h * w * c],
        }
    }

    /// A batch of network input rows (height × width × channels each) as activations.
    pub fn images(x: &[f32], [h, w, c]: [usize; 3]) -> Act {
        Act {
            n: x.len() / (h * w * c),
            h,
            w,
            c,
            data: x.to_vec(),
        }
    }

    /// Activations of the same shape with other values.
    fn like(&self, data: Vec<f32>) -> Act {
        Act { data, ..*self }
    }
}

/// The shape of a convolution: channels in and out, square kernel, stride, zero padding, bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
    /// Whether it has a bias.
    pub bias: bool,
}

impl ConvSpec {
    /// A k × k convolution padded to keep the size (k / 2), without bias.
    pub fn new(cin: usize, cout: usize, k: usize, stride: usize) -> ConvSpec {
        ConvSpec {
            cin,
            cout,
            k,
            stride,
            pad: k / 2,
            bias: false,
        }
    }
}

/// A 2-D convolution, weights `[out][ky][kx][in]`, optional bias.
#[derive(Clone, Debug)]
pub struct Conv {
    /// Weights, out × k × k × in.
    pub weight: Param,
    /// Bias, if any.
    pub bias: Option<Param>,
    /// Its shape.
    pub spec: ConvSpec,
}

/// The geometry of a convolution on one input size.
#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// Gathers image `x` (h × w × c) into rows of patches, one per output pixel (k × k × c each).
    #[inline(always)]
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let patch = self.k * self.k * self.c;
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                let row = &mut cols[(oy * self.wo + ox) * patch..][..patch];
                for ky in 0..self.k {
                    let iy = (oy * self.stride + ky).wrapping_sub(self.pad);
                    for kx in 0..self.k {
                        let ix = (ox * self.stride + kx).wrapping_sub(self.pad);
                        let dest = &mut row[(ky * self.k + kx) * self.c..][..self.c];
                        if iy < self.h && ix < self.w {
                            dest.copy_from_slice(&x[(iy * self.w + ix) * self.c..][..self.c]);
                        } else {
                            dest.iter_mut().for_each(|v| *v = 0.0);
                        }
                    }
                }
            }
        }
    }

    /// Adds rows of patch gradients back onto the image gradient `dx` (h × w × c), in order.
    #[inline(always)]
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        let patch = self.k * self.k * self.c;
        for oy in 0..self.ho {
            for ox in 0..self.wo {
                let row = &dcols[(oy * self.wo + ox) * patch..][..patch];
                for ky in 0..self.k {
                    let iy = (oy * self.stride + ky).wrapping_sub(self.pad);
                    for kx in 0..self.k {
                        let ix = (ox * self.stride + kx).wrapping_sub(self.pad);
                        if iy < self.h && ix < self.w {
                            let src = &row[(ky * self.k + kx) * self.c..][..self.c];
                            for (d, s) in dx[(iy * self.w + ix) * self.c..][..self.c]
                                .iter_mut()
                                .zip(src)
                            {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn conv_forward_body(g: Geometry, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    let patch = g.k * g.k * g.c;
    let pixels = g.ho * g.wo;
    let mut cols = vec![0f32; pixels * patch];
    let cout = bias.len();
    let mut wt = Vec::new();
    kernels::transpose(weight, cout, patch, &mut wt);
    for (image, o) in x
        .chunks_exact(g.h * g.w * g.c)
        .zip(out.chunks_exact_mut(pixels * cout))
    {
        g.im2col(image, &mut cols);
        for row in o.chunks_exact_mut(cout) {
            row.copy_from_slice(bias);
        }
        gemm((pixels, cout, patch), &cols, (patch, 1), &wt, cout, o, cout);
    }
}

simd! {
    /// [`conv_forward_body`] for the widest vectors the CPU has (the same bits on each).
    fn conv_forward(g: Geometry, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) = conv_forward_body;
}

#[inline(always)]
fn conv_backward_body(
    g: Geometry,
    x: &[f32],
    dy: &[f32],
    weight: &[f32],
    gw: &mut [f32],
    gb: &mut [f32],
    dx: Option<&mut [f32]>,
) {
    let patch = g.k * g.k * g.c;
    let pixels = g.ho * g.wo;
    let cout = gb.len();
    let mut cols = vec![0f32; pixels * patch];
    let mut dcols = vec![0f32; pixels * patch];
    gw.iter_mut().for_each(|v| *v = 0.0);
    gb.iter_mut().for_each(|v| *v = 0.0);
    let image_size = g.h * g.w * g.c;
    let mut dx = dx;
    if let Some(dx) = dx.as_deref_mut() {
        dx.iter_mut().for_each(|v| *v = 0.0);
    }
    for (i, (image, d)) in x
        .chunks_exact(image_size)
        .zip(dy.chunks_exact(pixels * cout))
        .enumerate()
    {
        g.im2col(image, &mut cols);
        for dr in d.chunks_exact(cout) {
            for (b, &v) in gb.iter_mut().zip(dr) {
                *b += v;
            }
        }
        gemm((cout, patch, pixels), d, (1, cout), &cols, patch, gw, patch);
        if let Some(dx) = dx.as_deref_mut() {
            dcols.iter_mut().for_each(|v| *v = 0.0);
            gemm(
                (pixels, patch, cout),
                d,
                (cout, 1),
                weight,
                patch,
                &mut dcols,
                patch,
            );
            g.col2im(&dcols, &mut dx[i * image_size..(i + 1) * image_size]);
        }
    }
}

simd! {
    /// [`conv_backward_body`] for the widest vectors the CPU has (the same bits on each).
    fn conv_backward(g: Geometry, x: &[f32], dy: &[f32], weight: &[f32], gw: &mut [f32], gb: &mut [f32], dx: Option<&mut [f32]>) = conv_backward_body;
}

impl Conv {
    /// A convolution initialised like PyTorch's `nn.Conv2d` (uniform ±1/√(in·k·k) for weight and
    /// bias), drawn in PyTorch's layout (out × in × k × k) from `rng`.
    pub fn init(rng: &mut Rng, spec: ConvSpec) -> Conv {
        let ConvSpec { cin, cout, k, .. } = spec;
        let bound = 1.0 / ((cin * k * k) as f64).sqrt();
        let torch: Vec<f32> = (0..cout * cin * k * k)
            .map(|_| rng.uniform_in(-bound, bound) as f32)
            .collect();
        let mut conv = Conv::from_torch(&torch, spec);
        if spec.bias {
            let b = (0..cout)
                .map(|_| rng.uniform_in(-bound, bound) as f32)
                .collect();
            conv.bias = Some(Param::new(b));
        }
        conv
    }

    /// A convolution from PyTorch-layout weights (out × in × k × k), without its bias.
    pub fn from_torch(torch: &[f32], spec: ConvSpec) -> Conv {
        let ConvSpec { cin, cout, k, .. } = spec;
        let mut w = vec![0f32; torch.len()];
        for o in 0..cout {
            for i in 0..cin {
                for t in 0..k * k {
                    w[(o * k * k + t) * cin + i] = torch[(o * cin + i) * k * k + t];
                }
            }
        }
        Conv {
            weight: Param::new(w),
            bias: None,
            spec,
        }
    }

    /// A tensor in this layer's weight layout, in PyTorch's (out × in × k × k).
    pub fn to_torch(&self, w: &[f32]) -> Vec<f32> {
        let ConvSpec { cin, cout, k, .. } = self.spec;
        let mut t = vec![0f32; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for p in 0..k * k {
                    t[(o * cin + i) * k * k + p] = w[(o * k * k + p) * cin + i];
                }
            }
        }
        t
    }

    /// PyTorch's shape of the weight.
    pub fn torch_shape(&self) -> Vec<usize> {
        let s = self.spec;
        vec![s.cout, s.cin, s.k, s.k]
    }

    fn geometry(&self, x: &Act) -> Geometry {
        let ConvSpec { k, stride, pad, .. } = self.spec;
        Geometry {
            h: x.h,
            w: x.w,
            c: x.c,
            k,
            stride,
            pad,
            ho: (x.h + 2 * pad - k) / stride + 1,
            wo: (x.w + 2 * pad - k) / stride + 1,
        }
    }

    /// The convolution of `x`.
    pub fn forward(&self, x: &Act) -> Act {
        let g = self.geometry(x);
        let mut out = Act::zeros(x.n, g.ho, g.wo, self.spec.cout);
        let zeros = vec![0f32; self.spec.cout];
        let bias = self.bias.as_ref().map_or(&zeros, |b| &b.value);
        conv_forward(g, &x.data, &self.weight.value, bias, &mut out.data);
        out
    }

    /// Sets the gradients from the output gradient `dy` and the input `x`; returns the input's
    /// gradient when `input_grad`.
    pub fn backward(&mut self, x: &Act, dy: &Act, input_grad: bool) -> Option<Act> {
        let g = self.geometry(x);
        let mut dx = input_grad.then(|| Act::zeros(x.n, x.h, x.w, x.c));
        let mut gb = vec![0f32; self.spec.cout];
        conv_backward(
            g,
            &x.data,
            &dy.data,
            &self.weight.value,
            &mut self.weight.grad,
            &mut gb,
            dx.as_mut().map(|d| d.data.as_mut_slice()),
        );
        if let Some(b) = &mut self.bias {
            b.grad = gb;
        }
        dx
    }
}

/// Batch normalisation over the channels of NHWC activations (PyTorch's `BatchNorm2d`: eps
/// 1e-5, momentum 0.1, biased variance to normalise, unbiased in the running estimate).
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale γ.
    pub gamma: Param,
    /// Shift β.
    pub beta: Param,
    /// Running mean.
    pub running_mean: Vec<f32>,
    /// Running variance.
    pub running_var: Vec<f32>,
}

/// What the backward pass of a batch norm needs from its forward pass.
#[derive(Clone, Debug)]
pub struct BnCache {
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
}

const BN_EPS: f32 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;

#[inline(always)]
fn bn_train_body(
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    out: &mut [f32],
    xhat: &mut [f32],
    (mean, var): (&mut [f32], &mut [f32]),
) {
    let c = gamma.len();
    let count = (x.len() / c) as f32;
    mean.iter_mut().for_each(|v| *v = 0.0);
    var.iter_mut().for_each(|v| *v = 0.0);
    for row in x.chunks_exact(c) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= count);
    for row in x.chunks_exact(c) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(mean.iter()) {
            *s += (v - m) * (v - m);
        }
    }
    var.iter_mut().for_each(|s| *s /= count);
    let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
    for ((row, o), xh) in x
        .chunks_exact(c)
        .zip(out.chunks_exact_mut(c))
        .zip(xhat.chunks_exact_mut(c))
    {
        for j in 0..c {
            xh[j] = (row[j] - mean[j]) * inv[j];
            o[j] = xh[j] * gamma[j] + beta[j];
        }
    }
}

simd! {
    /// [`bn_train_body`] for the widest vectors the CPU has (the same bits on each).
    fn bn_train(x: &[f32], affine: (&[f32], &[f32]), out: &mut [f32], xhat: &mut [f32], moments: (&mut [f32], &mut [f32])) = bn_train_body;
}

#[inline(always)]
fn bn_backward_body(
    dy: &[f32],
    xhat: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    gg: &mut [f32],
    gb: &mut [f32],
    dx: &mut [f32],
) {
    let c = gamma.len();
    let count = (dy.len() / c) as f32;
    gg.iter_mut().for_each(|v| *v = 0.0);
    gb.iter_mut().for_each(|v| *v = 0.0);
    for (d, xh) in dy.chunks_exact(c).zip(xhat.chunks_exact(c)) {
        for j in 0..c {
            gb[j] += d[j];
            gg[j] += d[j] * xh[j];
        }
    }
    for ((d, xh), o) in dy
        .chunks_exact(c)
        .zip(xhat.chunks_exact(c))
        .zip(dx.chunks_exact_mut(c))
    {
        for j in 0..c {
            o[j] = gamma[j] * inv_std[j] / count * (count * d[j] - gb[j] - xh[j] * gg[j]);
        }
    }
}

simd! {
    /// [`bn_backward_body`] for the widest vectors the CPU has (the same bits on each).
    fn bn_backward(dy: &[f32], xhat: &[f32], inv_std: &[f32], gamma: &[f32], gg: &mut [f32], gb: &mut [f32], dx: &mut [f32]) = bn_backward_body;
}

impl BatchNorm {
    /// γ = 1, β = 0, running mean 0 and variance 1, as PyTorch initialises it.
    pub fn new(c: usize) -> BatchNorm {
        BatchNorm {
            gamma: Param::new(vec![1.0; c]),
            beta: Param::new(vec![0.0; c]),
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
        }
    }

    /// Normalises with the batch's statistics and updates the running ones.
    pub fn forward_train(&mut self, x: &Act) -> (Act, BnCache) {
        let c = x.c;
        let mut out = x.like(vec![0.0; x.data.len()]);
        let mut xhat = vec![0f32; x.data.len()];
        let (mut mean, mut var) = (vec![0f32; c], vec![0f32; c]);
        bn_train(
            &x.data,
            (&self.gamma.value, &self.beta.value),
            &mut out.data,
            &mut xhat,
            (&mut mean, &mut var),
        );
        let count = (x.data.len() / c) as f32;
        let unbias = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        for j in 0..c {
            self.running_mean[j] =
                (1.0 - BN_MOMENTUM) * self.running_mean[j] + BN_MOMENTUM * mean[j];
            self.running_var[j] =
                (1.0 - BN_MOMENTUM) * self.running_var[j] + BN_MOMENTUM * var[j] * unbias;
        }
        let inv_std = var.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
        (out, BnCache { xhat, inv_std })
    }

    /// Normalises with the running statistics (eval mode).
    pub fn forward_eval(&self, x: &Act) -> Act {
        let c = x.c;
        let scale: Vec<f32> = (0..c)
            .map(|j| self.gamma.value[j] / (self.running_var[j] + BN_EPS).sqrt())
            .collect();
        let mut out = x.clone();
        for row in out.data.chunks_exact_mut(c) {
            for j in 0..c {
                row[j] = (row[j] - self.running_mean[j]) * scale[j] + self.beta.value[j];
            }
        }
        out
    }

    /// Sets the gradients of γ and β and returns the input's gradient.
    pub fn backward(&mut self, cache: &BnCache, dy: &Act) -> Act {
        let mut dx = dy.like(vec![0.0; dy.data.len()]);
        bn_backward(
            &dy.data,
            &cache.xhat,
            &cache.inv_std,
            &self.gamma.value,
            &mut self.gamma.grad,
            &mut self.beta.grad,
            &mut dx.data,
        );
        dx
    }
}

/// ReLU in place (NaN stays NaN).
pub fn relu(x: &mut Act) {
    kernels::relu(&mut x.data);
}

/// Zeroes the gradient where the ReLU's output `y` is not positive.
pub fn relu_backward(dy: &mut Act, y: &Act) {
    for (d, &v) in dy.data.iter_mut().zip(&y.data) {
        *d = kernels::zero_where(v <= 0.0, *d);
    }
}

/// The mean over each image's pixels, per channel: n × c.
pub fn global_pool(x: &Act) -> Vec<f32> {
    let pixels = x.h * x.w;
    let mut out = vec![0f32; x.n * x.c];
    for (image, o) in x
        .data
        .chunks_exact(pixels * x.c)
        .zip(out.chunks_exact_mut(x.c))
    {
        for row in image.chunks_exact(x.c) {
            for (s, v) in o.iter_mut().zip(row) {
                *s += v;
            }
        }
        o.iter_mut().for_each(|s| *s /= pixels as f32);
    }
    out
}

/// The gradient of [`global_pool`]: each pixel gets its channel's gradient divided by the pixels.
pub fn global_pool_backward(d: &[f32], like: &Act) -> Act {
    let pixels = (like.h * like.w) as f32;
    let mut dx = like.like(vec![0.0; like.data.len()]);
    for (image, g) in dx
        .data
        .chunks_exact_mut(like.h * like.w * like.c)
        .zip(d.chunks_exact(like.c))
    {
        for row in image.chunks_exact_mut(like.c) {
            for (v, &gv) in row.iter_mut().zip(g) {
                *v = gv / pixels;
            }
        }
    }
    dx
}

/// Adds `other` to `x` element by element (a residual connection).
pub fn add(x: &mut Act, other: &Act) {
    for (a, b) in x.data.iter_mut().zip(&other.data) {
        *a += b;
    }
}

/// A network's parameters and buffers as they are saved: values by PyTorch name, and the SGD
/// momentum of each parameter.
#[derive(Default)]
pub struct State {
    /// Parameters and buffers.
    pub weights: Weights,
    /// Momentum buffers of the parameters.
    pub momentum: Weights,
}

impl State {
    /// Records a parameter.
    pub fn param(&mut self, name: &str, shape: Vec<usize>, p: &Param) {
        self.weights
            .insert(name.into(), (shape.clone(), p.value.clone()));
        self.momentum
            .insert(name.into(), (shape, p.momentum.clone()));
    }

    /// Records a convolution (`{name}.weight` in PyTorch's layout, and `{name}.bias`).
    pub fn conv(&mut self, name: &str, c: &Conv) {
        let shape = c.torch_shape();
        self.weights.insert(
            format!("{name}.weight"),
            (shape.clone(), c.to_torch(&c.weight.value)),
        );
        self.momentum.insert(
            format!("{name}.weight"),
            (shape, c.to_torch(&c.weight.momentum)),
        );
        if let Some(b) = &c.bias {
            self.param(&format!("{name}.bias"), vec![c.spec.cout], b);
        }
    }

    /// Records a batch norm: `{name}.weight`, `.bias`, `.running_mean`, `.running_var`.
    pub fn batch_norm(&mut self, name: &str, bn: &BatchNorm) {
        let c = bn.running_mean.len();
        self.param(&format!("{name}.weight"), vec![c], &bn.gamma);
        self.param(&format!("{name}.bias"), vec![c], &bn.beta);
        for (what, v) in [
            ("running_mean", &bn.running_mean),
            ("running_var", &bn.running_var),
        ] {
            self.weights
                .insert(format!("{name}.{what}"), (vec![c], v.clone()));
        }
    }
}

/// Reads layers back from saved parameters, buffers and momentum.
pub struct Loader<'a> {
    /// Parameters and buffers.
    pub weights: &'a Weights,
    /// Momentum buffers (zeros where missing).
    pub momentum: &'a Weights,
}

impl Loader<'_> {
    /// A parameter of a given shape.
    pub fn param(&self, name: &str, shape: &[usize]) -> Result<Param> {
        let value = tensor(self.weights, name, shape)?;
        let momentum = momentum_or_zeros(self.momentum, name, value.len())?;
        Ok(Param {
            grad: vec![0.0; value.len()],
            value,
            momentum,
        })
    }

    /// A convolution saved by [`State::conv`].
    pub fn conv(&self, name: &str, spec: ConvSpec) -> Result<Conv> {
        let key = format!("{name}.weight");
        let torch = tensor(self.weights, &key, &[spec.cout, spec.cin, spec.k, spec.k])?;
        let mut conv = Conv::from_torch(&torch, spec);
        let saved = momentum_or_zeros(self.momentum, &key, torch.len())?;
        conv.weight.momentum = Conv::from_torch(&saved, spec).weight.value;
        if spec.bias {
            conv.bias = Some(self.param(&format!("{name}.bias"), &[spec.cout])?);
        }
        Ok(conv)
    }

    /// A batch norm saved by [`State::batch_norm`].
    pub fn batch_norm(&self, name: &str, c: usize) -> Result<BatchNorm> {
        Ok(BatchNorm {
            gamma: self.param(&format!("{name}.weight"), &[c])?,
            beta: self.param(&format!("{name}.bias"), &[c])?,
            running_mean: tensor(self.weights, &format!("{name}.running_mean"), &[c])?,
            running_var: tensor(self.weights, &format!("{name}.running_var"), &[c])?,
        })
    }
}

/// A linear head: logits = pooled features × weightᵀ + bias, with its backward pass.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight, out × in.
    pub weight: Param,
    /// Bias.
    pub bias: Param,
}

impl Linear {
    /// PyTorch's default initialisation (uniform ±1/√in) from `rng`.
    pub fn init(rng: &mut Rng, fan_in: usize, fan_out: usize) -> Linear {
        let (w, b) =
            crate::model::uniform_linear(rng, fan_in, fan_out, 1.0 / (fan_in as f64).sqrt());
        Linear {
            weight: Param::new(w),
            bias: Param::new(b),
        }
    }

    /// Logits of `x` (rows × in).
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let fan_out = self.bias.value.len();
        let rows = x.len() * fan_out / self.weight.value.len();
        let mut out = vec![0f32; rows * fan_out];
        dense(
            x,
            &self.weight.value,
            &self.bias.value,
            &mut out,
            &mut Vec::new(),
        );
        out
    }

    /// Sets the gradients from the logits' gradient and returns the input's gradient.
    pub fn backward(&mut self, x: &[f32], dy: &[f32]) -> Vec<f32> {
        kernels::dense_grads(x, dy, &mut self.weight.grad, &mut self.bias.grad);
        let mut dx = vec![0f32; x.len()];
        kernels::dense_input_grad(&self.weight.value, dy, self.bias.value.len(), &mut dx);
        dx
    }
}

/// Softmax cross-entropy of logits against targets: the summed loss, the correct predictions,
/// and the gradient of the mean loss with respect to the logits.
pub fn xent_grad(logits: &[f32], y: &[usize]) -> (f32, usize, Vec<f32>) {
    let classes = logits.len() / y.len().max(1);
    let mut d = logits.to_vec();
    let (mut loss, mut correct) = (0f32, 0usize);
    for (z, &t) in d.chunks_exact_mut(classes).zip(y) {
        let (ce, hit) = kernels::softmax_xent(z, t, 1.0 / y.len() as f32);
        loss += ce;
        correct += usize::from(hit);
    }
    (loss, correct, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(n: usize, h: usize, w: usize, c: usize, seed: u64) -> Act {
        let mut rng = Rng::new(seed);
        let mut a = Act::zeros(n, h, w, c);
        a.data
            .iter_mut()
            .for_each(|v| *v = rng.uniform_in(-1.0, 1.0) as f32);
        a
    }

    /// Σ out · r for fixed random weights r: a scalar loss whose gradient is r.
    fn loss(out: &Act, r: &[f32]) -> f64 {
        out.data
            .iter()
            .zip(r)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    }

    #[test]
    fn convolution_matches_a_direct_sum_and_its_gradients_match_finite_differences() {
        let mut rng = Rng::new(3);
        let spec = ConvSpec {
            bias: true,
            ..ConvSpec::new(3, 4, 3, 2)
        };
        let conv = Conv::init(&mut rng, spec);
        let x = act(2, 5, 5, 3, 1);
        let y = conv.forward(&x);
        assert_eq!((y.h, y.w, y.c), (3, 3, 4));
        // Direct: y[n][oy][ox][o] = b[o] + Σ w[o][ky][kx][i] x[n][2oy+ky-1][2ox+kx-1][i].
        let (n, oy, ox, o) = (1, 2, 1, 3);
        let mut direct = conv.bias.as_ref().unwrap().value[o] as f64;
        for ky in 0..3 {
            for kx in 0..3 {
                let (iy, ix) = (2 * oy + ky, 2 * ox + kx);
                if iy == 0 || ix == 0 || iy > 5 || ix > 5 {
                    continue;
                }
                for i in 0..3 {
                    direct += conv.weight.value[((o * 3 + ky) * 3 + kx) * 3 + i] as f64
                        * x.data[((n * 5 + iy - 1) * 5 + ix - 1) * 3 + i] as f64;
                }
            }
        }
        assert!((y.data[((n * 3 + oy) * 3 + ox) * 4 + o] as f64 - direct).abs() < 1e-5);

        let r: Vec<f32> = act(2, 3, 3, 4, 9).data;
        let mut c2 = conv.clone();
        let dx = c2.backward(&x, &y.like(r.clone()), true).unwrap();
        let eps = 1e-2;
        for idx in [0, 17, 44, 70] {
            let mut xp = x.clone();
            xp.data[idx] += eps;
            let mut xm = x.clone();
            xm.data[idx] -= eps;
            let numeric =
                (loss(&conv.forward(&xp), &r) - loss(&conv.forward(&xm), &r)) / (2.0 * eps as f64);
            assert!((dx.data[idx] as f64 - numeric).abs() < 1e-3, "dx[{idx}]");
        }
        for idx in [0, 20, 107] {
            let mut cp = conv.clone();
            cp.weight.value[idx] += eps;
            let mut cm = conv.clone();
            cm.weight.value[idx] -= eps;
            let numeric =
                (loss(&cp.forward(&x), &r) - loss(&cm.forward(&x), &r)) / (2.0 * eps as f64);
            assert!(
                (c2.weight.grad[idx] as f64 - numeric).abs() < 1e-3,
                "dw[{idx}]"
            );
        }
        // PyTorch layout round trip.
        let t = conv.to_torch(&conv.weight.value);
        let back = Conv::from_torch(&t, spec);
        assert_eq!(back.weight.value, conv.weight.value);
    }

    #[test]
    fn batch_norm_gradients_match_finite_differences_and_running_statistics_follow_pytorch() {
        let x = act(2, 3, 3, 2, 4);
        let mut bn = BatchNorm::new(2);
        bn.gamma.value = vec![1.5, 0.7];
        bn.beta.value = vec![0.1, -0.2];
        let r = act(2, 3, 3, 2, 5).data;
        let mut b2 = bn.clone();
        let (y, cache) = b2.forward_train(&x);
        let dx = b2.backward(&cache, &y.like(r.clone()));
        let eps = 1e-2;
        for idx in [0, 5, 21, 35] {
            let f = |delta: f32| {
                let mut xp = x.clone();
                xp.data[idx] += delta;
                loss(&bn.clone().forward_train(&xp).0, &r)
            };
            let numeric = (f(eps) - f(-eps)) / (2.0 * eps as f64);
            assert!(
                (dx.data[idx] as f64 - numeric).abs() < 2e-3,
                "dx[{idx}]: {} vs {numeric}",
                dx.data[idx]
            );
        }
        let ch0: Vec<f64> = x.data.iter().step_by(2).map(|v| *v as f64).collect();
        let mean = ch0.iter().sum::<f64>() / 18.0;
        let var = ch0.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 17.0;
        assert!((b2.running_mean[0] as f64 - 0.1 * mean).abs() < 1e-6);
        assert!((b2.running_var[0] as f64 - (0.9 + 0.1 * var)).abs() < 1e-6);
    }
}
