//! uinfo's side of `bench/vs-pytorch.sh`, on the default experiment's network and data:
//! training milliseconds per step at batch 32 and 1024 (a validation pass after every epoch, as
//! in a run), seconds per probe node (extraction of the three hidden layers, then 3 layers × 2
//! labels decoded) for the linear and the MLP decoder, and one core's f32 peak measured by a
//! plain loop of fused multiply-adds, with the fraction of it each part reaches.
//!
//! `cargo bench -p stages --bench checkerboard -- DATASET CHECKPOINT` with the dataset and the
//! initial checkpoint (safetensors files, e.g. blobs of a uinfo store), optionally followed by the
//! parts to time (`b32 b1024 linear mlp`; the others print as null). Prints one JSON object.

use std::time::Instant;

#[path = "support/mod.rs"]
mod support;
use support::peak_rss_mib;

use stages::checkpoint::Checkpoint;
use stages::data::Dataset;
use stages::decoder::{DecoderKind, DecoderParams};
use stages::extract::{extract, ExtractParams};
use stages::model::Cpu;
use stages::probe::{probe, ProbeParams};
use stages::tensors::TensorFile;
use stages::train::{run_segment, Optimiser, Schedule, SegmentParams};

fn read(path: &str) -> TensorFile {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    TensorFile::from_bytes(&bytes).unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

fn segment(batch: usize, to_epoch: usize) -> SegmentParams {
    SegmentParams {
        optimiser: Optimiser {
            lr: 0.05,
            batch,
            momentum: 0.0,
            weight_decay: 5e-3,
            schedule: Schedule::Constant,
        },
        phase_start: 0,
        to_epoch,
        target: "direction".into(),
    }
}

/// Milliseconds per training step over `epochs` epochs after one warm-up epoch, the best of
/// three.
fn train_ms_per_step(init: &Checkpoint, data: &Dataset, batch: usize, epochs: usize) -> f64 {
    let (warm, _) = run_segment(init, data, &segment(batch, 1), &Cpu).unwrap();
    let once = || {
        let start = Instant::now();
        let (end, _) = run_segment(&warm, data, &segment(batch, 1 + epochs), &Cpu).unwrap();
        start.elapsed().as_secs_f64() * 1e3 / (end.step - warm.step) as f64
    };
    best_of_three(once)
}

/// Seconds of one probe node (extraction, then every hidden layer × both labels, and their
/// shuffled-label nulls if `null`), the best of three.
fn probe_node_s(ckpt: &Checkpoint, data: &Dataset, kind: DecoderKind, null: bool) -> f64 {
    let once = || {
        let start = Instant::now();
        let reps = extract(ckpt, data, &ExtractParams::default(), &Cpu).unwrap();
        let params = ProbeParams {
            layers: Vec::new(),
            labels: vec!["color".into(), "direction".into()],
            decoder: DecoderParams {
                null,
                ..DecoderParams::new(kind)
            },
            extract: None,
        };
        std::hint::black_box(probe(&reps, data, &params).unwrap());
        start.elapsed().as_secs_f64()
    };
    best_of_three(once)
}

/// The smallest of three measurements: this VM's speed varies by a fifth from one moment to the
/// next, and the PyTorch side takes the best of three as well.
fn best_of_three(measure: impl Fn() -> f64) -> f64 {
    (0..3).map(|_| measure()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [dataset, checkpoint, parts @ ..] = &args[..] else {
        eprintln!(
            "usage: cargo bench -p stages --bench checkerboard -- DATASET CHECKPOINT [PART...]\n\
             parts: b32 b1024 linear linear-null mlp (default: all)"
        );
        std::process::exit(2);
    };
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let data = Dataset::from_file(&read(dataset)).unwrap();
    let init = Checkpoint::from_file(&read(checkpoint)).unwrap();
    let timed = |part: &str, f: &dyn Fn() -> f64| wanted(part).then(f).unwrap_or(f64::NAN);
    let b32 = timed("b32", &|| train_ms_per_step(&init, &data, 32, 5));
    let b1024 = timed("b1024", &|| train_ms_per_step(&init, &data, 1024, 40));
    let linear = timed("linear", &|| {
        probe_node_s(&init, &data, DecoderKind::Linear, false)
    });
    let linear_null = timed("linear-null", &|| {
        probe_node_s(&init, &data, DecoderKind::Linear, true)
    });
    let mlp = timed("mlp", &|| {
        probe_node_s(&init, &data, DecoderKind::Mlp, false)
    });
    let peak = stages::kernels::peak_flops();
    // Floating-point operations of the work timed above (multiply-adds count two).
    let sizes = [(4usize, 100usize), (100, 100), (100, 100), (100, 2)];
    let macs: usize = sizes.iter().map(|(i, o)| i * o).sum();
    let input_grad_macs: usize = sizes[1..].iter().map(|(i, o)| i * o).sum();
    let step_flops = |rows: usize| (2 * rows * (2 * macs + input_grad_macs)) as f64;
    let (fit, es, test) = (8100.0, 900.0, 1000.0);
    let evals = 31.0;
    let decoder_flops = |dim: f64, hidden: Option<f64>| {
        // A binary label's linear decoder keeps one row of weights (see `decoder`'s `linear`),
        // its MLP decoder two output units.
        let macs = match hidden {
            None => dim,
            Some(h) => dim * h + h * 2.0,
        };
        // Forward and weight gradient per fitting step; forward per evaluation. Every feature
        // counts, the dead ones the decoders leave out included: a fraction of the dense work.
        2.0 * macs * (300.0 * 2.0 * fit + evals * (es + test))
    };
    let linear_flops = 6.0 * decoder_flops(100.0, None);
    let mlp_flops = 6.0 * decoder_flops(100.0, Some(64.0));
    println!(
        "{}",
        serde_json::json!({
            "train_ms_per_step_b32": b32,
            "train_ms_per_step_b1024": b1024,
            "probe_node_s_linear": linear,
            "probe_node_s_linear_null": linear_null,
            "probe_node_s_mlp": mlp,
            "peak_gflops": peak / 1e9,
            "peak_fraction": {
                "train_b32": step_flops(32) / (b32 / 1e3) / peak,
                "train_b1024": step_flops(1024) / (b1024 / 1e3) / peak,
                "probe_linear": linear_flops / linear / peak,
                "probe_linear_null": 2.0 * linear_flops / linear_null / peak,
                "probe_mlp": mlp_flops / mlp / peak,
            },
            "peak_rss_mib": peak_rss_mib(),
        })
    );
}
