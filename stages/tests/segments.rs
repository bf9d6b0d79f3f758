//! A run split into segments gives bit-identical weights, optimiser state and step counter to the
//! same run trained without interruption (SPEC §2.1).

use stages::checkerboard::{generate, DatasetParams};
use stages::checkpoint::Checkpoint;
use stages::network::{init_weights, ModelParams, Shape};
use stages::tensors::TensorFile;
use stages::train::{run_segment, Optimiser, Schedule, SegmentParams};

fn params(to_epoch: usize) -> SegmentParams {
    SegmentParams {
        optimiser: Optimiser {
            lr: 0.05,
            batch: 32,
            momentum: 0.9,
            weight_decay: 5e-3,
            schedule: Schedule::Step {
                every: 2,
                gamma: 0.5,
            },
        },
        phase_start: 0,
        to_epoch,
        target: "direction".into(),
    }
}

#[test]
fn chained_segments_equal_one_uninterrupted_run() {
    let data = generate(&DatasetParams {
        n: 1000,
        ..Default::default()
    });
    let shape = Shape {
        model: ModelParams::default(),
        inputs: 4,
        classes: 2,
    };
    let start = Checkpoint::initial(shape.clone(), init_weights(&shape, 3), 3);
    let (whole, whole_log) = run_segment(&start, &data, &params(5)).unwrap();
    let mut ckpt = start.clone();
    let mut logs = Vec::new();
    for to in [1, 3, 5] {
        // Each segment resumes from the bytes of the previous checkpoint, as the pipeline does.
        let bytes = ckpt.to_file("train", "test").to_bytes();
        let resumed = Checkpoint::from_file(&TensorFile::from_bytes(&bytes).unwrap()).unwrap();
        let (next, log) = run_segment(&resumed, &data, &params(to)).unwrap();
        logs.extend(log);
        ckpt = next;
    }
    assert_eq!(ckpt, whole);
    assert_eq!(
        ckpt.to_file("train", "test").to_bytes(),
        whole.to_file("train", "test").to_bytes()
    );
    assert_eq!(logs, whole_log);
    assert_eq!(whole.step, 5 * 29);
    assert_ne!(whole.weights, start.weights);
}

#[test]
fn another_seed_gives_other_weights() {
    let data = generate(&DatasetParams {
        n: 500,
        ..Default::default()
    });
    let shape = Shape {
        model: ModelParams::default(),
        inputs: 4,
        classes: 2,
    };
    let a = Checkpoint::initial(shape.clone(), init_weights(&shape, 0), 0);
    let b = Checkpoint::initial(shape.clone(), init_weights(&shape, 1), 1);
    let (a1, _) = run_segment(&a, &data, &params(1)).unwrap();
    let (b1, _) = run_segment(&b, &data, &params(1)).unwrap();
    assert_ne!(a1.weights, b1.weights);
}
