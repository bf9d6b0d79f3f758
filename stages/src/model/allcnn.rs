//! `allcnn`: All-CNN-C (Springenberg et al. 2015) with batch norm (SPEC §1.4): 3×3
//! convolutions of 96, 96, 96 (stride 2), 192, 192, 192 (stride 2) channels, a valid 3×3
//! convolution of 192, a 1×1 of 192 and a 1×1 to the classes, then global average pooling.
//! Every convolution but the last is followed by batch norm and ReLU and has no bias. Probed:
//! the output at each resolution, globally average-pooled: after the first stride-2 convolution
//! (`conv3`), the second (`conv6`) and the last 192-channel 1×1 convolution (`conv8`, the
//! penultimate layer). Names: `conv1` … `conv9`, `bn1` … `bn8`.

use anyhow::Result;

use crate::model::layers::{
    global_pool, global_pool_backward, relu, relu_backward, xent_grad, Act, BatchNorm, BnCache,
    Conv, ConvSpec, Loader, Param, State,
};
use crate::model::{Forward, Model, Sgd, Shape, Weights};
use crate::rng::Rng;

/// The probed layers.
pub const PROBED: [&str; 3] = ["conv3", "conv6", "conv8"];

/// (output channels, kernel, stride, padding) of each convolution at full width; the last
/// outputs the classes.
pub const LAYERS: [(usize, usize, usize, usize); 9] = [
    (96, 3, 1, 1),
    (96, 3, 1, 1),
    (96, 3, 2, 1),
    (192, 3, 1, 1),
    (192, 3, 1, 1),
    (192, 3, 2, 1),
    (192, 3, 1, 0),
    (192, 1, 1, 0),
    (0, 1, 1, 0),
];

/// The indices of the probed convolutions (their output after batch norm and ReLU).
const TAPS: [usize; 3] = [2, 5, 7];

/// The network.
pub struct AllCnn {
    convs: Vec<Conv>,
    bns: Vec<BatchNorm>,
    input: [usize; 3],
}

/// Every convolution of a shape; the last has a bias and outputs the classes.
pub fn specs(shape: &Shape) -> Vec<ConvSpec> {
    let mut cin = shape.image()[2];
    LAYERS
        .iter()
        .enumerate()
        .map(|(i, &(c, k, stride, pad))| {
            let last = i == LAYERS.len() - 1;
            let cout = if last {
                shape.classes
            } else {
                shape.model.channels(c)
            };
            let spec = ConvSpec {
                cin,
                cout,
                k,
                stride,
                pad,
                bias: last,
            };
            cin = cout;
            spec
        })
        .collect()
}

impl AllCnn {
    /// PyTorch's default initialisation, each convolution from its own stream.
    pub fn init(shape: &Shape, seed: u64) -> AllCnn {
        let specs = specs(shape);
        let convs = specs
            .iter()
            .enumerate()
            .map(|(i, &spec)| Conv::init(&mut Rng::derive(seed, "init", i as u64), spec))
            .collect();
        let bns = specs[..specs.len() - 1]
            .iter()
            .map(|s| BatchNorm::new(s.cout))
            .collect();
        AllCnn {
            convs,
            bns,
            input: shape.image(),
        }
    }

    /// The network from saved parameters, buffers and momentum.
    pub fn load(shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<AllCnn> {
        let l = Loader { weights, momentum };
        let specs = specs(shape);
        let mut convs = Vec::new();
        let mut bns = Vec::new();
        for (i, &spec) in specs.iter().enumerate() {
            convs.push(l.conv(&format!("conv{}", i + 1), spec)?);
            if !spec.bias {
                bns.push(l.batch_norm(&format!("bn{}", i + 1), spec.cout)?);
            }
        }
        Ok(AllCnn {
            convs,
            bns,
            input: shape.image(),
        })
    }
}

impl Model for AllCnn {
    fn step(&mut self, x: &[f32], y: &[usize], sgd: &Sgd) -> Result<(f32, usize)> {
        Ok(self.train_step(x, y, sgd))
    }

    fn forward(&self, x: &[f32]) -> Result<Forward> {
        Ok(self.eval(x))
    }

    fn state(&self) -> Result<(Weights, Weights)> {
        Ok(self.parameters())
    }
}

impl AllCnn {
    fn train_step(&mut self, x: &[f32], y: &[usize], sgd: &Sgd) -> (f32, usize) {
        let mut h = Act::images(x, self.input);
        let mut caches: Vec<(Act, BnCache, Act)> = Vec::new();
        for (conv, bn) in self.convs.iter().zip(self.bns.iter_mut()) {
            let (mut r, c) = bn.forward_train(&conv.forward(&h));
            relu(&mut r);
            caches.push((h, c, r.clone()));
            h = r;
        }
        let last = self.convs.len() - 1;
        let map = self.convs[last].forward(&h);
        let (loss, correct, dlogits) = xent_grad(&global_pool(&map), y);
        let dmap = global_pool_backward(&dlogits, &map);
        let mut d = self.convs[last]
            .backward(&h, &dmap, true)
            .expect("input gradient");
        for (i, (input, c, r)) in caches.into_iter().enumerate().rev() {
            relu_backward(&mut d, &r);
            let db = self.bns[i].backward(&c, &d);
            match self.convs[i].backward(&input, &db, i > 0) {
                Some(dx) => d = dx,
                None => break,
            }
        }
        let mut params: Vec<&mut Param> = Vec::new();
        for conv in &mut self.convs {
            params.push(&mut conv.weight);
            if let Some(b) = &mut conv.bias {
                params.push(b);
            }
        }
        for bn in &mut self.bns {
            params.extend([&mut bn.gamma, &mut bn.beta]);
        }
        params.into_iter().for_each(|p| p.update(sgd));
        (loss, correct)
    }

    fn eval(&self, x: &[f32]) -> Forward {
        let mut h = Act::images(x, self.input);
        let mut features = Vec::new();
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            h = bn.forward_eval(&conv.forward(&h));
            relu(&mut h);
            if TAPS.contains(&i) {
                features.push(global_pool(&h));
            }
        }
        let logits = global_pool(&self.convs[self.convs.len() - 1].forward(&h));
        Forward { features, logits }
    }

    /// Parameters and buffers by PyTorch name, and momentum.
    pub(crate) fn parameters(&self) -> (Weights, Weights) {
        let mut s = State::default();
        for (i, conv) in self.convs.iter().enumerate() {
            s.conv(&format!("conv{}", i + 1), conv);
        }
        for (i, bn) in self.bns.iter().enumerate() {
            s.batch_norm(&format!("bn{}", i + 1), bn);
        }
        (s.weights, s.momentum)
    }
}
