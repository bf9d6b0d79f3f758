//! CPU throughput of the convolutional networks (`cargo bench -p stages --bench networks`):
//! training images/s of `resnet18` and `allcnn` at full width and batch 128, eval-mode images/s,
//! and the multiply-adds per second this reaches as a fraction of the dense kernel alone on a
//! convolution-shaped product, measured in the same process.
//!
//! `cargo bench -p stages --bench networks -- extract N` instead extracts N random images through
//! full-width `resnet18` (the pipeline's extract stage) and prints the peak resident memory.

use std::time::Instant;

#[path = "support/mod.rs"]
mod support;
use support::peak_rss_mib;

use stages::checkpoint::Checkpoint;
use stages::data::{Dataset, Inputs, Split};
use stages::extract::{extract, ExtractParams};
use stages::model::{self, Arch, ModelParams, Sgd, Shape};
use stages::rng::Rng;
use stages::task::cifar::CifarParams;
use stages::task::TaskParams;

fn shape(arch: Arch) -> Shape {
    Shape {
        model: ModelParams {
            arch,
            ..Default::default()
        },
        input: vec![32, 32, 3],
        classes: 10,
    }
}

/// Multiply-adds of one forward pass, from each architecture's layer list.
fn forward_macs(arch: Arch) -> f64 {
    // (in, out, kernel, output side) of every convolution, and the head.
    let convs: Vec<(usize, usize, usize, usize)> = match arch {
        Arch::Resnet18 => {
            let mut v = vec![(3, 64, 3, 32)];
            let mut cin = 64;
            for (c, side) in [(64, 32), (128, 16), (256, 8), (512, 4)] {
                v.push((cin, c, 3, side));
                v.push((c, c, 3, side));
                if cin != c {
                    v.push((cin, c, 1, side));
                }
                v.push((c, c, 3, side));
                v.push((c, c, 3, side));
                cin = c;
            }
            v.push((512, 10, 1, 1));
            v
        }
        _ => {
            let (mut cin, mut side) = (3, 32);
            stages::model::allcnn::LAYERS
                .iter()
                .map(|&(c, k, stride, pad)| {
                    let cout = if c == 0 { 10 } else { c };
                    side = (side + 2 * pad - k) / stride + 1;
                    let conv = (cin, cout, k, side);
                    cin = cout;
                    conv
                })
                .collect()
        }
    };
    convs
        .iter()
        .map(|&(i, o, k, s)| (i * o * k * k * s * s) as f64)
        .sum()
}

fn random_images(n: usize) -> Vec<f32> {
    let mut rng = Rng::new(1);
    (0..n * 3072)
        .map(|_| rng.uniform_in(-2.0, 2.0) as f32)
        .collect()
}

/// Multiply-adds per second of the dense kernel on a convolution-shaped product (1024 output
/// pixels × 576 inputs × 64 outputs: a 3×3 convolution of 64 channels at 32 × 32).
fn dense_baseline() -> f64 {
    let (rows, fan_in, fan_out) = (1024, 576, 64);
    let x = vec![0.5f32; rows * fan_in];
    let w = vec![0.25f32; fan_out * fan_in];
    let b = vec![0f32; fan_out];
    let mut out = vec![0f32; rows * fan_out];
    let mut wt = Vec::new();
    let start = Instant::now();
    let reps = 20;
    for _ in 0..reps {
        stages::kernels::dense(&x, &w, &b, &mut out, &mut wt);
        std::hint::black_box(&out);
    }
    (reps * rows * fan_in * fan_out) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("extract") {
        let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
        let s = shape(Arch::Resnet18);
        let ckpt = Checkpoint::initial(s.clone(), model::init(&s, 0), 0).unwrap();
        let mut rng = Rng::new(2);
        let mut split = |n: usize| Split {
            inputs: Inputs::Images {
                shape: [3, 32, 32],
                pixels: (0..n * 3072).map(|_| rng.below(256) as u8).collect(),
            },
            labels: [
                ("coarse".to_string(), vec![0; n]),
                ("fine".to_string(), vec![0; n]),
            ]
            .into(),
        };
        let (train, val) = (split(n), split(1));
        let data = Dataset::new(train, val, TaskParams::Cifar10(CifarParams::default()));
        let before = peak_rss_mib();
        let start = Instant::now();
        let f = extract(
            &ckpt,
            &data,
            &ExtractParams {
                train_examples: n,
                val_examples: 1,
            },
            &model::Cpu,
        )
        .unwrap();
        println!(
            "extract {n} images through full-width resnet18: {:.0} s ({:.1} images/s); peak resident memory {:.0} MiB (dataset and network loaded: {:.0} MiB); {} tensors",
            start.elapsed().as_secs_f64(),
            n as f64 / start.elapsed().as_secs_f64(),
            peak_rss_mib(),
            before,
            f.tensors.len()
        );
        return;
    }
    let baseline = dense_baseline();
    println!(
        "dense kernel alone: {:.2} GMAC/s (one thread)",
        baseline / 1e9
    );
    let sgd = Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 5e-4,
    };
    for arch in [Arch::Allcnn, Arch::Resnet18] {
        let s = shape(arch);
        let mut net = model::load(&s, &model::init(&s, 0), &Default::default()).unwrap();
        let batch = 128;
        let x = random_images(batch);
        let y: Vec<usize> = (0..batch).map(|i| i % 10).collect();
        let steps = 2;
        let start = Instant::now();
        for _ in 0..steps {
            std::hint::black_box(net.step(&x, &y, &sgd).unwrap());
        }
        let train = (steps * batch) as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        std::hint::black_box(net.forward(&x).unwrap());
        let eval = batch as f64 / start.elapsed().as_secs_f64();
        let macs = forward_macs(arch);
        println!(
            "{}: training {train:.2} images/s at batch {batch} ({:.2} GMAC/s with backward = 2 × forward, {:.0}% of the dense kernel); eval {eval:.1} images/s; {:.3} GMAC per forward",
            arch.name(),
            3.0 * macs * train / 1e9,
            100.0 * 3.0 * macs * train / baseline,
            macs / 1e9,
        );
    }
}
