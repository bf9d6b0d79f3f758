//! A run split into segments gives bit-identical weights, optimiser state, batch-norm statistics
//! and step counter to the same run trained without interruption (SPEC §2.1), for every network.

use stages::checkpoint::Checkpoint;
use stages::data::{Dataset, Inputs, Split};
use stages::model::{self, Arch, Cpu, ModelParams, Shape};
use stages::task::checkerboard::{generate, DatasetParams};
use stages::task::cifar::CifarParams;
use stages::task::TaskParams;
use stages::tensors::TensorFile;
use stages::train::{run_segment, Optimiser, Schedule, SegmentParams};

fn params(to_epoch: usize, batch: usize, target: &str) -> SegmentParams {
    SegmentParams {
        optimiser: Optimiser {
            lr: 0.05,
            batch,
            momentum: 0.9,
            weight_decay: 5e-3,
            schedule: Schedule::Step {
                every: 2,
                gamma: 0.5,
            },
        },
        phase_start: 0,
        to_epoch,
        target: target.into(),
    }
}

/// Trains 0 → 5 in one segment and in three (1, 3, 5), each resuming from the previous
/// checkpoint's bytes as the pipeline does, and checks both give the same bytes.
fn chain_equals_whole(
    start: &Checkpoint,
    data: &Dataset,
    batch: usize,
    target: &str,
) -> Checkpoint {
    let (whole, whole_log) = run_segment(start, data, &params(5, batch, target), &Cpu).unwrap();
    let mut ckpt = start.clone();
    let mut logs = Vec::new();
    for to in [1, 3, 5] {
        let bytes = ckpt.to_file("train", "test").to_bytes();
        let resumed = Checkpoint::from_file(&TensorFile::from_bytes(&bytes).unwrap()).unwrap();
        let (next, log) = run_segment(&resumed, data, &params(to, batch, target), &Cpu).unwrap();
        logs.extend(log);
        ckpt = next;
    }
    assert_eq!(ckpt, whole);
    assert_eq!(
        ckpt.to_file("train", "test").to_bytes(),
        whole.to_file("train", "test").to_bytes()
    );
    assert_eq!(logs, whole_log);
    assert_ne!(whole.weights, start.weights);
    whole
}

fn fc_shape() -> Shape {
    Shape {
        model: ModelParams::default(),
        input: vec![4],
        classes: 2,
    }
}

#[test]
fn chained_segments_equal_one_uninterrupted_run() {
    let data = generate(&DatasetParams {
        n: 1000,
        ..Default::default()
    });
    let shape = fc_shape();
    let start = Checkpoint::initial(shape.clone(), model::init(&shape, 3), 3).unwrap();
    let whole = chain_equals_whole(&start, &data, 32, "direction");
    assert_eq!(whole.step, 5 * 29);
}

/// Random 32 × 32 images whose coarse class shows in their brightness.
fn images(n: usize, seed: u64) -> Split {
    let mut rng = stages::rng::Rng::new(seed);
    let mut pixels = Vec::new();
    let (mut coarse, mut fine) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let f = rng.below(10) as i64;
        let c = i64::from([0, 1, 8, 9].contains(&f));
        pixels.extend((0..3072).map(|_| (rng.below(128) + 100 * c as u64) as u8));
        coarse.push(c);
        fine.push(f);
    }
    Split {
        inputs: Inputs::Images {
            shape: [3, 32, 32],
            pixels,
        },
        labels: [("coarse".to_string(), coarse), ("fine".to_string(), fine)].into(),
    }
}

fn image_data() -> Dataset {
    Dataset::new(
        images(24, 1),
        images(8, 2),
        TaskParams::Cifar10(CifarParams::default()),
    )
}

fn conv_shape(arch: Arch, width_mult: f64) -> Shape {
    Shape {
        model: ModelParams {
            arch,
            width_mult,
            ..Default::default()
        },
        input: vec![32, 32, 3],
        classes: 2,
    }
}

#[test]
fn convolutional_networks_resume_exactly_with_batch_norm_statistics() {
    let data = image_data();
    for (arch, w) in [(Arch::Allcnn, 1.0 / 24.0), (Arch::Resnet18, 1.0 / 32.0)] {
        let shape = conv_shape(arch, w);
        let start = Checkpoint::initial(shape.clone(), model::init(&shape, 5), 5).unwrap();
        let whole = chain_equals_whole(&start, &data, 8, "coarse");
        let stats = |c: &Checkpoint| {
            c.weights
                .iter()
                .filter(|(k, _)| k.ends_with("running_mean"))
                .map(|(_, v)| v.1.clone())
                .collect::<Vec<_>>()
        };
        assert!(!stats(&whole).is_empty());
        assert_ne!(
            stats(&whole),
            stats(&start),
            "{arch:?}: running statistics move"
        );
        assert!(whole.momentum.keys().all(|k| !k.contains("running")));
    }
}

#[test]
fn another_seed_gives_other_weights() {
    let data = generate(&DatasetParams {
        n: 500,
        ..Default::default()
    });
    let shape = fc_shape();
    let a = Checkpoint::initial(shape.clone(), model::init(&shape, 0), 0).unwrap();
    let b = Checkpoint::initial(shape.clone(), model::init(&shape, 1), 1).unwrap();
    let (a1, _) = run_segment(&a, &data, &params(1, 32, "direction"), &Cpu).unwrap();
    let (b1, _) = run_segment(&b, &data, &params(1, 32, "direction"), &Cpu).unwrap();
    assert_ne!(a1.weights, b1.weights);
}

#[test]
fn full_width_networks_have_the_parameters_spec_lists() {
    let mut resnet = conv_shape(Arch::Resnet18, 1.0);
    resnet.classes = 10;
    assert_eq!(model::parameter_count(&resnet), 11_173_962);
    // All-CNN-C from SPEC §1.4's layer list: 3×3 convolutions 3→96, 96→96, 96→96,
    // 96→192, 192→192, 192→192, 192→192 (valid), 1×1 192→192 without bias, each with batch
    // norm (γ and β per channel); a 1×1 192→10 with bias.
    let convs = [
        (3, 96, 3),
        (96, 96, 3),
        (96, 96, 3),
        (96, 192, 3),
        (192, 192, 3),
        (192, 192, 3),
        (192, 192, 3),
        (192, 192, 1),
    ];
    let weights: usize = convs.iter().map(|(i, o, k)| i * o * k * k).sum();
    let batch_norm: usize = convs.iter().map(|(_, o, _)| 2 * o).sum();
    let head = 192 * 10 + 10;
    let mut shape = conv_shape(Arch::Allcnn, 1.0);
    shape.classes = 10;
    assert_eq!(model::parameter_count(&shape), weights + batch_norm + head);
    assert_eq!(weights + batch_norm + head, 1_370_986);
}
