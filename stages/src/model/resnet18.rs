//! `resnet18`, the CIFAR variant (SPEC §1.4): a 3×3 stem convolution 3→64 with batch norm and
//! ReLU, no max-pool, four stages of two post-activation basic blocks (64, 128, 256, 512
//! channels; strides 1, 2, 2, 2; a 1×1 convolution + batch norm shortcut where the stride or the
//! width changes), global average pooling and a linear head: 11,173,962 trainable parameters for
//! 10 classes. Probed: each stage's output, globally average-pooled (`layer4` is the penultimate
//! layer). Names follow the common PyTorch CIFAR ResNet: `conv1`, `bn1`,
//! `layer{s}.{b}.conv1|bn1|conv2|bn2|shortcut.0|shortcut.1`, `linear`.

use anyhow::Result;

use crate::model::layers::{
    add, global_pool, global_pool_backward, relu, relu_backward, xent_grad, Act, BatchNorm,
    BnCache, Conv, ConvSpec, Linear, Loader, Param, State,
};
use crate::model::{Forward, Model, Sgd, Shape, Weights};
use crate::rng::Rng;

/// The probed layers.
pub const PROBED: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

/// Channels and stride of each stage's first block.
const STAGES: [(usize, usize); 4] = [(64, 1), (128, 2), (256, 2), (512, 2)];

/// A post-activation basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
struct Block {
    conv1: Conv,
    bn1: BatchNorm,
    conv2: Conv,
    bn2: BatchNorm,
    shortcut: Option<(Conv, BatchNorm)>,
}

/// What a block's backward pass needs from its forward pass.
struct BlockCache {
    x: Act,
    r1: Act,
    c1: BnCache,
    c2: BnCache,
    cs: Option<BnCache>,
    y: Act,
}

impl Block {
    /// The block's (input, output channels, stride) at position `b` of stage `s`.
    fn geometry(widths: &[usize; 4], s: usize, b: usize) -> (usize, usize, usize) {
        let cin = if b == 0 {
            if s == 0 {
                widths[0]
            } else {
                widths[s - 1]
            }
        } else {
            widths[s]
        };
        (cin, widths[s], if b == 0 { STAGES[s].1 } else { 1 })
    }

    /// The block's convolutions: conv1, conv2, and the shortcut's where the stride or the width
    /// changes.
    fn specs(cin: usize, cout: usize, stride: usize) -> (ConvSpec, ConvSpec, Option<ConvSpec>) {
        (
            ConvSpec::new(cin, cout, 3, stride),
            ConvSpec::new(cout, cout, 3, 1),
            (stride != 1 || cin != cout).then(|| ConvSpec::new(cin, cout, 1, stride)),
        )
    }

    fn init(rng: &mut Rng, cin: usize, cout: usize, stride: usize) -> Block {
        let (c1, c2, shortcut) = Self::specs(cin, cout, stride);
        Block {
            conv1: Conv::init(rng, c1),
            bn1: BatchNorm::new(cout),
            conv2: Conv::init(rng, c2),
            bn2: BatchNorm::new(cout),
            shortcut: shortcut.map(|s| (Conv::init(rng, s), BatchNorm::new(cout))),
        }
    }

    fn load(l: &Loader, name: &str, cin: usize, cout: usize, stride: usize) -> Result<Block> {
        let (c1, c2, shortcut) = Self::specs(cin, cout, stride);
        let shortcut = match shortcut {
            Some(spec) => Some((
                l.conv(&format!("{name}.shortcut.0"), spec)?,
                l.batch_norm(&format!("{name}.shortcut.1"), cout)?,
            )),
            None => None,
        };
        Ok(Block {
            conv1: l.conv(&format!("{name}.conv1"), c1)?,
            bn1: l.batch_norm(&format!("{name}.bn1"), cout)?,
            conv2: l.conv(&format!("{name}.conv2"), c2)?,
            bn2: l.batch_norm(&format!("{name}.bn2"), cout)?,
            shortcut,
        })
    }

    fn save(&self, s: &mut State, name: &str) {
        s.conv(&format!("{name}.conv1"), &self.conv1);
        s.batch_norm(&format!("{name}.bn1"), &self.bn1);
        s.conv(&format!("{name}.conv2"), &self.conv2);
        s.batch_norm(&format!("{name}.bn2"), &self.bn2);
        if let Some((conv, bn)) = &self.shortcut {
            s.conv(&format!("{name}.shortcut.0"), conv);
            s.batch_norm(&format!("{name}.shortcut.1"), bn);
        }
    }

    fn forward_train(&mut self, x: Act) -> (Act, BlockCache) {
        let (mut r1, c1) = self.bn1.forward_train(&self.conv1.forward(&x));
        relu(&mut r1);
        let (mut y, c2) = self.bn2.forward_train(&self.conv2.forward(&r1));
        let cs = match &mut self.shortcut {
            Some((conv, bn)) => {
                let (s, cs) = bn.forward_train(&conv.forward(&x));
                add(&mut y, &s);
                Some(cs)
            }
            None => {
                add(&mut y, &x);
                None
            }
        };
        relu(&mut y);
        let out = y.clone();
        (
            out,
            BlockCache {
                x,
                r1,
                c1,
                c2,
                cs,
                y,
            },
        )
    }

    fn forward_eval(&self, x: &Act) -> Act {
        let mut r1 = self.bn1.forward_eval(&self.conv1.forward(x));
        relu(&mut r1);
        let mut y = self.bn2.forward_eval(&self.conv2.forward(&r1));
        match &self.shortcut {
            Some((conv, bn)) => add(&mut y, &bn.forward_eval(&conv.forward(x))),
            None => add(&mut y, x),
        }
        relu(&mut y);
        y
    }

    fn backward(&mut self, cache: BlockCache, mut dy: Act) -> Act {
        relu_backward(&mut dy, &cache.y);
        let d2 = self.bn2.backward(&cache.c2, &dy);
        let mut dr1 = self
            .conv2
            .backward(&cache.r1, &d2, true)
            .expect("input gradient");
        relu_backward(&mut dr1, &cache.r1);
        let d1 = self.bn1.backward(&cache.c1, &dr1);
        let mut dx = self
            .conv1
            .backward(&cache.x, &d1, true)
            .expect("input gradient");
        match (&mut self.shortcut, &cache.cs) {
            (Some((conv, bn)), Some(cs)) => {
                let ds = bn.backward(cs, &dy);
                add(
                    &mut dx,
                    &conv.backward(&cache.x, &ds, true).expect("input gradient"),
                );
            }
            _ => add(&mut dx, &dy),
        }
        dx
    }

    fn params(&mut self) -> Vec<&mut Param> {
        let mut out = vec![
            &mut self.conv1.weight,
            &mut self.bn1.gamma,
            &mut self.bn1.beta,
            &mut self.conv2.weight,
            &mut self.bn2.gamma,
            &mut self.bn2.beta,
        ];
        if let Some((conv, bn)) = &mut self.shortcut {
            out.extend([&mut conv.weight, &mut bn.gamma, &mut bn.beta]);
        }
        out
    }
}

/// The network.
pub struct ResNet18 {
    conv1: Conv,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    linear: Linear,
    input: [usize; 3],
}

impl ResNet18 {
    /// Each stage's width for a shape.
    fn widths(shape: &Shape) -> [usize; 4] {
        STAGES.map(|(c, _)| shape.model.channels(c))
    }

    /// PyTorch's default initialisation: each convolution from its own stream, in module order.
    pub fn init(shape: &Shape, seed: u64) -> ResNet18 {
        let w = Self::widths(shape);
        let input = shape.image();
        let mut stream = 0;
        let mut rng = || {
            stream += 1;
            Rng::derive(seed, "init", stream - 1)
        };
        let conv1 = Conv::init(&mut rng(), ConvSpec::new(input[2], w[0], 3, 1));
        let mut blocks = Vec::new();
        for s in 0..4 {
            for b in 0..2 {
                let (cin, cout, stride) = Block::geometry(&w, s, b);
                blocks.push(Block::init(&mut rng(), cin, cout, stride));
            }
        }
        let linear = Linear::init(&mut rng(), w[3], shape.classes);
        ResNet18 {
            conv1,
            bn1: BatchNorm::new(w[0]),
            blocks,
            linear,
            input,
        }
    }

    /// The network from saved parameters, buffers and momentum.
    pub fn load(shape: &Shape, weights: &Weights, momentum: &Weights) -> Result<ResNet18> {
        let l = Loader { weights, momentum };
        let w = Self::widths(shape);
        let input = shape.image();
        let mut blocks = Vec::new();
        for s in 0..4 {
            for b in 0..2 {
                let (cin, cout, stride) = Block::geometry(&w, s, b);
                blocks.push(Block::load(
                    &l,
                    &format!("layer{}.{b}", s + 1),
                    cin,
                    cout,
                    stride,
                )?);
            }
        }
        Ok(ResNet18 {
            conv1: l.conv("conv1", ConvSpec::new(input[2], w[0], 3, 1))?,
            bn1: l.batch_norm("bn1", w[0])?,
            blocks,
            linear: Linear {
                weight: l.param("linear.weight", &[shape.classes, w[3]])?,
                bias: l.param("linear.bias", &[shape.classes])?,
            },
            input,
        })
    }
}

impl Model for ResNet18 {
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

impl ResNet18 {
    fn train_step(&mut self, x: &[f32], y: &[usize], sgd: &Sgd) -> (f32, usize) {
        let input = Act::images(x, self.input);
        let (mut r0, c0) = self.bn1.forward_train(&self.conv1.forward(&input));
        relu(&mut r0);
        let mut caches = Vec::with_capacity(self.blocks.len());
        let mut h = r0.clone();
        for block in &mut self.blocks {
            let (out, cache) = block.forward_train(h);
            caches.push(cache);
            h = out;
        }
        let pooled = global_pool(&h);
        let (loss, correct, dlogits) = xent_grad(&self.linear.forward(&pooled), y);
        let dpooled = self.linear.backward(&pooled, &dlogits);
        let mut d = global_pool_backward(&dpooled, &h);
        for (block, cache) in self.blocks.iter_mut().zip(caches).rev() {
            d = block.backward(cache, d);
        }
        relu_backward(&mut d, &r0);
        let d0 = self.bn1.backward(&c0, &d);
        self.conv1.backward(&input, &d0, false);
        let mut params = vec![
            &mut self.conv1.weight,
            &mut self.bn1.gamma,
            &mut self.bn1.beta,
            &mut self.linear.weight,
            &mut self.linear.bias,
        ];
        for block in &mut self.blocks {
            params.extend(block.params());
        }
        params.into_iter().for_each(|p| p.update(sgd));
        (loss, correct)
    }

    fn eval(&self, x: &[f32]) -> Forward {
        let mut h = self
            .bn1
            .forward_eval(&self.conv1.forward(&Act::images(x, self.input)));
        relu(&mut h);
        let mut features = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward_eval(&h);
            if i % 2 == 1 {
                features.push(global_pool(&h));
            }
        }
        let logits = self.linear.forward(features.last().expect("four stages"));
        Forward { features, logits }
    }

    /// Parameters and buffers by PyTorch name, and momentum.
    pub(crate) fn parameters(&self) -> (Weights, Weights) {
        let mut s = State::default();
        s.conv("conv1", &self.conv1);
        s.batch_norm("bn1", &self.bn1);
        for (i, block) in self.blocks.iter().enumerate() {
            block.save(&mut s, &format!("layer{}.{}", i / 2 + 1, i % 2));
        }
        s.param(
            "linear.weight",
            vec![
                self.linear.bias.value.len(),
                self.linear.weight.value.len() / self.linear.bias.value.len(),
            ],
            &self.linear.weight,
        );
        s.param(
            "linear.bias",
            vec![self.linear.bias.value.len()],
            &self.linear.bias,
        );
        (s.weights, s.momentum)
    }
}
