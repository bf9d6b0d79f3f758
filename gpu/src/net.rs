//! The networks on candle tensors (NCHW), with candle's autograd for gradients. Every layer
//! follows `stages::model` exactly: the same layer list, padding and stride, batch norm (batch
//! statistics with the biased variance in training, running statistics updated with momentum
//! 0.1 and the unbiased variance, eps 1e-5), ReLU that keeps NaN, global average pooling,
//! summed cross-entropy (the gradient of its mean), and PyTorch's SGD (weight decay added to the
//! gradient, `buf = m * buf + d`, `w -= lr * buf`).

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var, D};
use stages::model::layers::ConvSpec;
use stages::model::{
    allcnn, fc, momentum_or_zeros, tensor, Arch, Backend, Forward, Model, Sgd, Shape, Weights,
};

type CResult<T> = candle_core::Result<T>;

/// A candle error as uinfo reports it (out of memory named as such).
fn dev(e: candle_core::Error) -> anyhow::Error {
    crate::device_error(&message(&e))
}

/// A candle error's message without the backtraces candle attaches when `RUST_BACKTRACE` is
/// set: uinfo's errors are one line.
pub(crate) fn message(e: &candle_core::Error) -> String {
    use candle_core::Error;
    match e {
        Error::WithBacktrace { inner, .. } => message(inner),
        Error::Context { inner, context } => format!("{context}: {}", message(inner)),
        Error::WithPath { inner, path } => format!("{}: {}", path.display(), message(inner)),
        other => other.to_string(),
    }
}

/// Where a backend's models live.
#[derive(Clone, Copy)]
enum Place {
    /// candle's CPU device.
    Cpu,
    /// A CUDA device by index.
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

/// Builds candle models on one device.
pub(crate) struct CandleBackend {
    place: Place,
    domain: &'static str,
}

impl CandleBackend {
    /// CUDA device `index`, TF32 off; opens the device once to fail early when it cannot.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(index: usize) -> Result<CandleBackend> {
        // f32 GEMMs accumulate in f32 (CUBLAS_COMPUTE_32F), never TF32. It is candle's default;
        // set here so that nothing else in the process can have turned it on.
        candle_core::cuda::set_gemm_reduced_precision_f32(false);
        let backend = CandleBackend {
            place: Place::Cuda(index),
            domain: crate::DOMAIN,
        };
        backend.device()?;
        Ok(backend)
    }

    /// candle's CPU device.
    pub(crate) fn cpu() -> CandleBackend {
        CandleBackend {
            place: Place::Cpu,
            domain: crate::CANDLE_CPU_DOMAIN,
        }
    }

    /// A device for one model. On CUDA each model gets its own stream and cuBLAS handle (and
    /// workspace), so models trained at once by different threads neither race on a shared
    /// handle nor change each other's bits; its work runs in order on that one stream.
    fn device(&self) -> Result<Device> {
        match self.place {
            Place::Cpu => Ok(Device::Cpu),
            #[cfg(feature = "cuda")]
            Place::Cuda(index) => Device::new_cuda_with_stream(index)
                .map_err(|e| anyhow::anyhow!("cannot open CUDA device {index}: {}", message(&e))),
        }
    }
}

impl Backend for CandleBackend {
    fn domain(&self) -> &'static str {
        self.domain
    }

    fn load(&self, shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<Box<dyn Model>> {
        Ok(Box::new(Net::load(
            &self.device()?,
            shape,
            weights,
            momentum,
        )?))
    }
}

/// A trainable tensor on the device and its SGD momentum buffer.
struct Param {
    var: Var,
    momentum: Tensor,
}

/// What is saved of a network: parameters (with momentum) and buffers (running statistics),
/// by PyTorch name and shape.
#[derive(Default)]
struct Layout {
    params: Vec<(String, Vec<usize>)>,
    buffers: Vec<(String, Vec<usize>)>,
}

impl Layout {
    fn param(&mut self, name: String, shape: Vec<usize>) {
        self.params.push((name, shape));
    }

    fn conv(&mut self, name: &str, s: ConvSpec) {
        self.param(format!("{name}.weight"), vec![s.cout, s.cin, s.k, s.k]);
        if s.bias {
            self.param(format!("{name}.bias"), vec![s.cout]);
        }
    }

    fn batch_norm(&mut self, name: &str, c: usize) {
        self.param(format!("{name}.weight"), vec![c]);
        self.param(format!("{name}.bias"), vec![c]);
        for what in ["running_mean", "running_var"] {
            self.buffers.push((format!("{name}.{what}"), vec![c]));
        }
    }

    /// Every tensor of a shape's network.
    fn of(shape: &Shape) -> Layout {
        let mut l = Layout::default();
        match shape.model.arch {
            Arch::Fc => {
                for (i, (fan_in, fan_out)) in fc::layer_dims(shape).into_iter().enumerate() {
                    l.param(format!("layers.{i}.weight"), vec![fan_out, fan_in]);
                    l.param(format!("layers.{i}.bias"), vec![fan_out]);
                }
            }
            Arch::Allcnn => {
                for (i, s) in allcnn::specs(shape).into_iter().enumerate() {
                    l.conv(&format!("conv{}", i + 1), s);
                    if !s.bias {
                        l.batch_norm(&format!("bn{}", i + 1), s.cout);
                    }
                }
            }
            Arch::Resnet18 => {
                let w = resnet_widths(shape);
                l.conv("conv1", ConvSpec::new(shape.image()[2], w[0], 3, 1));
                l.batch_norm("bn1", w[0]);
                for (name, cin, cout, stride) in resnet_blocks(&w) {
                    let (c1, c2, sc) = block_specs(cin, cout, stride);
                    l.conv(&format!("{name}.conv1"), c1);
                    l.batch_norm(&format!("{name}.bn1"), cout);
                    l.conv(&format!("{name}.conv2"), c2);
                    l.batch_norm(&format!("{name}.bn2"), cout);
                    if let Some(sc) = sc {
                        l.conv(&format!("{name}.shortcut.0"), sc);
                        l.batch_norm(&format!("{name}.shortcut.1"), cout);
                    }
                }
                l.param("linear.weight".into(), vec![shape.classes, w[3]]);
                l.param("linear.bias".into(), vec![shape.classes]);
            }
        }
        l
    }
}

/// All-CNN-C's probed convolutions (their output after batch norm and ReLU), by index.
const ALLCNN_TAPS: [usize; 3] = [2, 5, 7];

/// ResNet-18's stage widths and strides at full width.
const RESNET_STAGES: [(usize, usize); 4] = [(64, 1), (128, 2), (256, 2), (512, 2)];

fn resnet_widths(shape: &Shape) -> [usize; 4] {
    RESNET_STAGES.map(|(c, _)| shape.model.channels(c))
}

/// ResNet-18's blocks in order: name, input and output channels, stride.
fn resnet_blocks(w: &[usize; 4]) -> Vec<(String, usize, usize, usize)> {
    let mut out = Vec::new();
    for s in 0..4 {
        for b in 0..2 {
            let cin = match (s, b) {
                (0, 0) => w[0],
                (_, 0) => w[s - 1],
                _ => w[s],
            };
            let stride = if b == 0 { RESNET_STAGES[s].1 } else { 1 };
            out.push((format!("layer{}.{b}", s + 1), cin, w[s], stride));
        }
    }
    out
}

/// A basic block's convolutions: conv1, conv2, and a 1×1 shortcut where the shape changes.
fn block_specs(cin: usize, cout: usize, stride: usize) -> (ConvSpec, ConvSpec, Option<ConvSpec>) {
    (
        ConvSpec::new(cin, cout, 3, stride),
        ConvSpec::new(cout, cout, 3, 1),
        (stride != 1 || cin != cout).then(|| ConvSpec::new(cin, cout, 1, stride)),
    )
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// A batch norm's batch statistics from a training step: name, mean, biased variance (per
/// channel, detached) and the number of values per channel.
struct BatchStats {
    name: String,
    mean: Tensor,
    var: Tensor,
    count: usize,
}

/// A network on a device.
struct Net {
    device: Device,
    shape: Shape,
    params: BTreeMap<String, Param>,
    buffers: BTreeMap<String, Tensor>,
}

impl Net {
    fn load(device: &Device, shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<Net> {
        let layout = Layout::of(shape);
        let upload = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s, device).map_err(dev);
        let mut params = BTreeMap::new();
        for (name, s) in &layout.params {
            let value = tensor(weights, name, s)?;
            let m = momentum_or_zeros(momentum, name, value.len())?;
            let var = Var::from_tensor(&upload(value, s)?).map_err(dev)?;
            let momentum = upload(m, s)?;
            params.insert(name.clone(), Param { var, momentum });
        }
        let mut buffers = BTreeMap::new();
        for (name, s) in &layout.buffers {
            buffers.insert(name.clone(), upload(tensor(weights, name, s)?, s)?);
        }
        Ok(Net {
            device: device.clone(),
            shape: shape.clone(),
            params,
            buffers,
        })
    }

    fn p(&self, name: &str) -> CResult<&Tensor> {
        match self.params.get(name) {
            Some(p) => Ok(p.var.as_tensor()),
            None => Err(candle_core::Error::Msg(format!("no parameter `{name}`"))),
        }
    }

    fn buffer(&self, name: &str) -> CResult<&Tensor> {
        self.buffers
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("no buffer `{name}`")))
    }

    /// A batch of rows as the network's input: rows × features for `fc`, NCHW images otherwise.
    fn input(&self, x: &[f32]) -> CResult<Tensor> {
        let size = self.shape.input_size().max(1);
        let rows = x.len() / size;
        if self.shape.model.arch.convolutional() {
            let [h, w, c] = self.shape.image();
            Tensor::from_slice(x, (rows, h, w, c), &self.device)?
                .permute((0, 3, 1, 2))?
                .contiguous()
        } else {
            Tensor::from_slice(x, (rows, size), &self.device)
        }
    }

    /// The forward pass: probed features (eval only) and logits; in training, batch norm uses
    /// the batch's statistics and records them in `stats`.
    fn run(
        &self,
        x: &Tensor,
        stats: Option<&mut Vec<BatchStats>>,
    ) -> CResult<(Vec<Tensor>, Tensor)> {
        let mut f = Pass {
            net: self,
            stats,
            features: Vec::new(),
        };
        let logits = match self.shape.model.arch {
            Arch::Fc => f.fc(x)?,
            Arch::Allcnn => f.allcnn(x)?,
            Arch::Resnet18 => f.resnet18(x)?,
        };
        Ok((f.features, logits))
    }

    fn train_step(&mut self, x: &[f32], y: &[usize], sgd: &Sgd) -> CResult<(f32, usize)> {
        let rows = y.len();
        let classes = self.shape.classes;
        let input = self.input(x)?;
        let mut onehot = vec![0f32; rows * classes];
        for (r, &t) in y.iter().enumerate() {
            onehot[r * classes + t] = 1.0;
        }
        let onehot = Tensor::from_vec(onehot, (rows, classes), &self.device)?;
        let targets: Vec<u32> = y.iter().map(|&t| t as u32).collect();
        let targets = Tensor::from_vec(targets, (rows, 1), &self.device)?;

        let mut stats = Vec::new();
        let (_, logits) = self.run(&input, Some(&mut stats))?;
        // Cross-entropy through a log-softmax shifted by the (constant) row maximum.
        let max = logits.detach().max_keepdim(D::Minus1)?;
        let shifted = logits.broadcast_sub(&max)?;
        let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let logp = shifted.broadcast_sub(&lse)?;
        let summed = (logp * &onehot)?.sum_all()?.neg()?;
        let grads = summed.affine(1.0 / rows.max(1) as f64, 0.0)?.backward()?;
        let correct = logits
            .detach()
            .argmax_keepdim(D::Minus1)?
            .eq(&targets)?
            .to_dtype(DType::F32)?
            .sum_all()?;

        for p in self.params.values_mut() {
            let w = p.var.as_tensor();
            let mut d = match grads.get(w) {
                Some(g) => g.clone(),
                None => w.zeros_like()?,
            };
            if sgd.weight_decay != 0.0 {
                d = (d + w.affine(sgd.weight_decay as f64, 0.0)?)?;
            }
            if sgd.momentum != 0.0 {
                p.momentum = (p.momentum.affine(sgd.momentum as f64, 0.0)? + d)?;
                d = p.momentum.clone();
            }
            let next = (w.detach() - d.affine(sgd.lr as f64, 0.0)?)?;
            p.var.set(&next)?;
        }
        for s in stats {
            let unbias = if s.count > 1 {
                s.count as f64 / (s.count as f64 - 1.0)
            } else {
                1.0
            };
            let mean_name = format!("{}.running_mean", s.name);
            let var_name = format!("{}.running_var", s.name);
            let mean = (self.buffer(&mean_name)?.affine(1.0 - BN_MOMENTUM, 0.0)?
                + s.mean.affine(BN_MOMENTUM, 0.0)?)?;
            let var = (self.buffer(&var_name)?.affine(1.0 - BN_MOMENTUM, 0.0)?
                + s.var.affine(BN_MOMENTUM * unbias, 0.0)?)?;
            self.buffers.insert(mean_name, mean);
            self.buffers.insert(var_name, var);
        }
        // One read back per step: the loss and the count of correct predictions.
        let out = Tensor::stack(&[summed.detach(), correct], 0)?.to_vec1::<f32>()?;
        Ok((out[0], out[1] as usize))
    }

    fn eval(&self, x: &[f32]) -> CResult<Forward> {
        let input = self.input(x)?;
        let (features, logits) = self.run(&input, None)?;
        let read = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        Ok(Forward {
            features: features.iter().map(read).collect::<CResult<_>>()?,
            logits: read(&logits)?,
        })
    }

    fn save(&self) -> CResult<(Weights, Weights)> {
        let read = |t: &Tensor| -> CResult<(Vec<usize>, Vec<f32>)> {
            Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?))
        };
        let (mut weights, mut momentum) = (Weights::new(), Weights::new());
        for (name, p) in &self.params {
            weights.insert(name.clone(), read(p.var.as_tensor())?);
            momentum.insert(name.clone(), read(&p.momentum)?);
        }
        for (name, b) in &self.buffers {
            weights.insert(name.clone(), read(b)?);
        }
        Ok((weights, momentum))
    }
}

impl Model for Net {
    fn step(&mut self, x: &[f32], y: &[usize], sgd: &Sgd) -> Result<(f32, usize)> {
        self.train_step(x, y, sgd).map_err(dev)
    }

    fn forward(&self, x: &[f32]) -> Result<Forward> {
        self.eval(x).map_err(dev)
    }

    fn state(&self) -> Result<(Weights, Weights)> {
        self.save().map_err(dev)
    }
}

/// One forward pass: training (with `stats`) or eval (collecting the probed features).
struct Pass<'a> {
    net: &'a Net,
    stats: Option<&'a mut Vec<BatchStats>>,
    features: Vec<Tensor>,
}

impl Pass<'_> {
    fn train(&self) -> bool {
        self.stats.is_some()
    }

    /// Records a probed layer's features (eval only).
    fn probe(&mut self, f: impl FnOnce() -> CResult<Tensor>) -> CResult<()> {
        if !self.train() {
            self.features.push(f()?);
        }
        Ok(())
    }

    fn conv(&self, x: &Tensor, name: &str, s: ConvSpec) -> CResult<Tensor> {
        let y = x.conv2d(
            self.net.p(&format!("{name}.weight"))?,
            s.pad,
            s.stride,
            1,
            1,
        )?;
        if s.bias {
            let b = self
                .net
                .p(&format!("{name}.bias"))?
                .reshape((1, s.cout, 1, 1))?;
            y.broadcast_add(&b)
        } else {
            Ok(y)
        }
    }

    fn batch_norm(&mut self, x: &Tensor, name: &str) -> CResult<Tensor> {
        let c = x.dim(1)?;
        let channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        let gamma = channel(self.net.p(&format!("{name}.weight"))?)?;
        let beta = channel(self.net.p(&format!("{name}.bias"))?)?;
        match self.stats.as_deref_mut() {
            Some(stats) => {
                let mean = x.mean_keepdim((0, 2, 3))?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
                let inv_std = var.affine(1.0, BN_EPS)?.sqrt()?.recip()?;
                stats.push(BatchStats {
                    name: name.to_string(),
                    mean: mean.detach().flatten_all()?,
                    var: var.detach().flatten_all()?,
                    count: x.elem_count() / c,
                });
                centred
                    .broadcast_mul(&inv_std)?
                    .broadcast_mul(&gamma)?
                    .broadcast_add(&beta)
            }
            None => {
                let mean = channel(self.net.buffer(&format!("{name}.running_mean"))?)?;
                let var = channel(self.net.buffer(&format!("{name}.running_var"))?)?;
                let scale = gamma.broadcast_div(&var.affine(1.0, BN_EPS)?.sqrt()?)?;
                x.broadcast_sub(&mean)?
                    .broadcast_mul(&scale)?
                    .broadcast_add(&beta)
            }
        }
    }

    /// ReLU as the CPU code has it: negatives to zero, NaN kept; the gradient passes where the
    /// output is positive (or NaN).
    fn relu(x: &Tensor) -> CResult<Tensor> {
        // Zeros made on the device: a scalar comparison would upload its scalar every time.
        let zeros = x.zeros_like()?;
        x.le(&zeros)?.where_cond(&zeros, x)
    }

    /// Global average pooling: n × c.
    fn pool(x: &Tensor) -> CResult<Tensor> {
        x.mean((2, 3))
    }

    fn linear(&self, x: &Tensor, name: &str) -> CResult<Tensor> {
        let w = self.net.p(&format!("{name}.weight"))?;
        let b = self.net.p(&format!("{name}.bias"))?;
        x.matmul(&w.t()?)?.broadcast_add(b)
    }

    fn fc(&mut self, x: &Tensor) -> CResult<Tensor> {
        let layers = self.net.shape.model.depth;
        let mut h = x.clone();
        for i in 0..layers {
            h = Self::relu(&self.linear(&h, &format!("layers.{i}"))?)?;
            let f = h.clone();
            self.probe(|| Ok(f))?;
        }
        self.linear(&h, &format!("layers.{layers}"))
    }

    fn allcnn(&mut self, x: &Tensor) -> CResult<Tensor> {
        let specs = allcnn::specs(&self.net.shape);
        let last = specs.len() - 1;
        let mut h = x.clone();
        for (i, &s) in specs[..last].iter().enumerate() {
            let y = self.conv(&h, &format!("conv{}", i + 1), s)?;
            h = Self::relu(&self.batch_norm(&y, &format!("bn{}", i + 1))?)?;
            if ALLCNN_TAPS.contains(&i) {
                self.probe(|| Self::pool(&h))?;
            }
        }
        Self::pool(&self.conv(&h, &format!("conv{}", last + 1), specs[last])?)
    }

    fn block(&mut self, x: &Tensor, name: &str, specs: &BlockSpecs) -> CResult<Tensor> {
        let (c1, c2, sc) = *specs;
        let r1 = self.conv(x, &format!("{name}.conv1"), c1)?;
        let r1 = Self::relu(&self.batch_norm(&r1, &format!("{name}.bn1"))?)?;
        let y = self.conv(&r1, &format!("{name}.conv2"), c2)?;
        let y = self.batch_norm(&y, &format!("{name}.bn2"))?;
        let shortcut = match sc {
            Some(s) => {
                let t = self.conv(x, &format!("{name}.shortcut.0"), s)?;
                self.batch_norm(&t, &format!("{name}.shortcut.1"))?
            }
            None => x.clone(),
        };
        Self::relu(&(y + shortcut)?)
    }

    fn resnet18(&mut self, x: &Tensor) -> CResult<Tensor> {
        let shape = &self.net.shape;
        let w = resnet_widths(shape);
        let stem = ConvSpec::new(shape.image()[2], w[0], 3, 1);
        let h = self.conv(x, "conv1", stem)?;
        let mut h = Self::relu(&self.batch_norm(&h, "bn1")?)?;
        for (i, (name, cin, cout, stride)) in resnet_blocks(&w).into_iter().enumerate() {
            h = self.block(&h, &name, &block_specs(cin, cout, stride))?;
            if i % 2 == 1 {
                self.probe(|| Self::pool(&h))?;
            }
        }
        self.linear(&Self::pool(&h)?, "linear")
    }
}

type BlockSpecs = (ConvSpec, ConvSpec, Option<ConvSpec>);

#[cfg(test)]
mod tests {
    use super::*;

    /// With `RUST_BACKTRACE` set candle attaches a backtrace to its errors; the message
    /// uinfo shows keeps only the text.
    #[test]
    fn backtraces_are_left_out_of_messages() {
        let bt = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("no device".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert!(bt.to_string().lines().count() > 1);
        assert_eq!(message(&bt), "no device");
        assert_eq!(dev(bt).to_string(), "device error: no device");
    }
}
