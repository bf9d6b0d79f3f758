//! `uinfo check-device`: a device against the portable CPU backend (a forward pass and one
//! training step per network), its determinism (the same segment twice; a chain of segments
//! against an uninterrupted run, by checkpoint digest) and its ResNet-18 training speed. The
//! GPU check script (`scripts/gpu-check.sh`) runs it on a GPU machine.

use anyhow::{ensure, Result};
use serde::Serialize;
use stages::checkpoint::Checkpoint;
use stages::data::{Dataset, Inputs, Split};
use stages::model::{self, Arch, Backend, ModelParams, Shape};
use stages::rng::Rng;
use stages::task::checkerboard::{generate, DatasetParams};
use stages::task::cifar::CifarParams;
use stages::task::TaskParams;
use stages::train::{run_segment, Optimiser, Schedule, SegmentParams};

use crate::device::Device;
use crate::runner::Context;

/// Largest relative error of a forward pass the check accepts.
pub const FORWARD_TOLERANCE: f64 = 1e-4;
/// Largest relative error of the parameters after one training step the check accepts.
pub const STEP_TOLERANCE: f64 = 1e-3;

/// What `check-device` found.
#[derive(Debug, Serialize)]
pub struct DeviceCheck {
    /// The device checked.
    pub device: String,
    /// Its numerics domain.
    pub domain: String,
    /// Agreement with the CPU backend, per network.
    pub agreement: Vec<AgreementRow>,
    /// Determinism checks.
    pub determinism: Vec<DeterminismRow>,
    /// ResNet-18 training speed, when asked for.
    pub speed: Option<Speed>,
}

impl DeviceCheck {
    /// Whether every agreement and determinism check passed.
    pub fn passed(&self) -> bool {
        self.agreement.iter().all(|a| a.ok) && self.determinism.iter().all(|d| d.identical)
    }
}

/// One network's forward pass and training step on the device against the CPU.
#[derive(Debug, Serialize)]
pub struct AgreementRow {
    /// Network.
    pub arch: String,
    /// Max relative error of the probed features and logits.
    pub forward: f64,
    /// The tensor where it is reached.
    pub forward_tensor: String,
    /// Max relative error of the parameters and buffers after one step.
    pub step: f64,
    /// The tensor where it is reached.
    pub step_tensor: String,
    /// Both within tolerance.
    pub ok: bool,
}

/// Two computations that must give the same bits.
#[derive(Debug, Serialize)]
pub struct DeterminismRow {
    /// What was compared.
    pub what: String,
    /// The two digests.
    pub digests: [String; 2],
    /// Whether they are equal.
    pub identical: bool,
}

/// Training throughput.
#[derive(Debug, Serialize)]
pub struct Speed {
    /// Network.
    pub arch: String,
    /// Mini-batch size.
    pub batch: usize,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Checks `device` against the CPU; `speed_batch` also times ResNet-18 training at that batch.
pub fn check_device(
    device: Device,
    ctx: &Context,
    speed_batch: Option<usize>,
) -> Result<DeviceCheck> {
    let backend = ctx.gpus.backend(device)?;
    let backend = backend.as_ref();
    let cpu = model::Cpu;
    let mut agreement = Vec::new();
    for (shape, batch) in [
        (shape(Arch::Fc, vec![4], 2), 64),
        (shape(Arch::Allcnn, vec![32, 32, 3], 10), 16),
        (shape(Arch::Resnet18, vec![32, 32, 3], 10), 16),
    ] {
        let a = gpu::check::agreement(&cpu, backend, &shape, batch, 7)?;
        agreement.push(AgreementRow {
            arch: shape.model.arch.name().into(),
            forward: a.forward.value,
            forward_tensor: a.forward.tensor.clone(),
            step: a.step.value,
            step_tensor: a.step.tensor.clone(),
            ok: a.forward.value <= FORWARD_TOLERANCE && a.step.value <= STEP_TOLERANCE,
        });
    }
    let mut determinism = Vec::new();
    let checkerboard = generate(&DatasetParams {
        n: 2000,
        ..Default::default()
    });
    let small_resnet = Shape {
        model: ModelParams {
            width_mult: 0.25,
            ..shape(Arch::Resnet18, vec![32, 32, 3], 2).model
        },
        ..shape(Arch::Resnet18, vec![32, 32, 3], 2)
    };
    for (shape, data, target) in [
        (shape(Arch::Fc, vec![4], 2), checkerboard, "direction"),
        (small_resnet, images(), "coarse"),
    ] {
        let name = shape.model.arch.name();
        determinism.extend(segments(backend, &shape, &data, target, name)?);
    }
    let resnet = shape(Arch::Resnet18, vec![32, 32, 3], 10);
    let d = gpu::check::determinism(backend, &resnet, 32, 5, 11)?;
    determinism.push(DeterminismRow {
        what: "resnet18: 5 steps at batch 32, twice".into(),
        identical: d.identical(),
        digests: d.digests,
    });
    let speed = match speed_batch {
        Some(batch) => Some(Speed {
            arch: "resnet18".into(),
            batch,
            images_per_second: gpu::check::images_per_second(backend, &resnet, batch, 20)?,
        }),
        None => None,
    };
    Ok(DeviceCheck {
        device: device.to_string(),
        domain: backend.domain().into(),
        agreement,
        determinism,
        speed,
    })
}

fn shape(arch: Arch, input: Vec<usize>, classes: usize) -> Shape {
    Shape {
        model: ModelParams {
            arch,
            ..Default::default()
        },
        input,
        classes,
    }
}

/// Epochs 0 → 2 twice, and 0 → 1 → 2 resuming from the checkpoint's bytes, by digest.
fn segments(
    backend: &dyn Backend,
    shape: &Shape,
    data: &Dataset,
    target: &str,
    name: &str,
) -> Result<Vec<DeterminismRow>> {
    let params = |to_epoch| SegmentParams {
        optimiser: Optimiser {
            lr: 0.05,
            batch: 32,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: Schedule::Constant,
        },
        phase_start: 0,
        to_epoch,
        target: target.into(),
    };
    let start = Checkpoint::initial(shape.clone(), model::init(shape, 3), 3)?;
    let digest = |c: &Checkpoint| {
        blake3::hash(&c.to_file("train", "check").to_bytes())
            .to_hex()
            .to_string()
    };
    let whole = run_segment(&start, data, &params(2), backend)?.0;
    let again = run_segment(&start, data, &params(2), backend)?.0;
    let first = run_segment(&start, data, &params(1), backend)?.0;
    let resumed = Checkpoint::from_file(&stages::tensors::TensorFile::from_bytes(
        &first.to_file("train", "check").to_bytes(),
    )?)?;
    let chain = run_segment(&resumed, data, &params(2), backend)?.0;
    ensure!(whole.diverged.is_none(), "{name}: training diverged");
    Ok(vec![
        DeterminismRow {
            what: format!("{name}: segment e0-2, twice"),
            identical: digest(&whole) == digest(&again),
            digests: [digest(&whole), digest(&again)],
        },
        DeterminismRow {
            what: format!("{name}: e0-1 then e1-2 against e0-2"),
            identical: digest(&whole) == digest(&chain),
            digests: [digest(&whole), digest(&chain)],
        },
    ])
}

/// 128 training and 32 validation images of 32 × 32 whose coarse class shows in brightness.
fn images() -> Dataset {
    let split = |n: usize, seed| {
        let mut rng = Rng::new(seed);
        let (mut pixels, mut coarse) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let c = rng.below(2) as i64;
            pixels.extend((0..3072).map(|_| (rng.below(128) + 100 * c as u64) as u8));
            coarse.push(c);
        }
        Split {
            inputs: Inputs::Images {
                shape: [3, 32, 32],
                pixels,
            },
            labels: [
                ("coarse".to_string(), coarse.clone()),
                ("fine".to_string(), coarse),
            ]
            .into(),
        }
    };
    Dataset::new(
        split(128, 1),
        split(32, 2),
        TaskParams::Cifar10(CifarParams::default()),
    )
}
