//! The candle backend on candle's CPU device against the portable CPU backend
//! (`stages::model::Cpu`): forward passes, one SGD step, state round trips and checkpoints
//! moving between the two. The same code runs on CUDA in the GPU build.
#![cfg(feature = "candle")]

use gpu::check::{agreement, batch, determinism, relative_error, SGD};
use stages::model::{init, Arch, Backend, Cpu, ModelParams, Shape, Weights};
use stages::rng::Rng;

/// `fc` as the checkerboard uses it: 3 hidden layers of 100 on 4 features, 2 classes.
fn fc() -> Shape {
    Shape {
        model: ModelParams::default(),
        input: vec![4],
        classes: 2,
    }
}

/// A convolutional network at width 1/8 on 32 × 32 × 3 images, 10 classes.
fn conv(arch: Arch) -> Shape {
    Shape {
        model: ModelParams {
            arch,
            width_mult: 0.125,
            ..Default::default()
        },
        input: vec![32, 32, 3],
        classes: 10,
    }
}

/// The forward pass agrees within 1e-4, the parameters after one step within 1e-3, and the
/// loss and the correct predictions of the step too.
fn agrees(shape: &Shape, rows: usize) {
    let a = agreement(&Cpu, &gpu::candle_cpu(), shape, rows, 7).unwrap();
    eprintln!(
        "{}: forward {}, step {}, update {}, loss {:?}, correct {:?}",
        shape.model.arch.name(),
        a.forward,
        a.step,
        a.update,
        a.loss,
        a.correct
    );
    assert!(a.forward.value < 1e-4, "forward: {}", a.forward);
    assert!(a.step.value < 1e-3, "step: {}", a.step);
    assert!(a.update.value < 1e-3, "update: {}", a.update);
    assert!(
        relative_error(&[a.loss.0], &[a.loss.1]) < 1e-5,
        "{:?}",
        a.loss
    );
    assert_eq!(a.correct.0, a.correct.1);
}

#[test]
fn fc_agrees_with_the_cpu_backend() {
    agrees(&fc(), 64);
}

#[test]
fn allcnn_agrees_with_the_cpu_backend() {
    agrees(&conv(Arch::Allcnn), 8);
}

#[test]
fn resnet18_agrees_with_the_cpu_backend() {
    agrees(&conv(Arch::Resnet18), 8);
}

/// Momentum buffers with random values, by the parameters' names.
fn random_momentum(shape: &Shape) -> Weights {
    let (_, names) = Cpu
        .load(shape, &init(shape, 1), &Weights::new())
        .unwrap()
        .state()
        .unwrap();
    let mut rng = Rng::new(11);
    names
        .into_iter()
        .map(|(name, (s, v))| {
            let m = v.iter().map(|_| rng.normal() as f32).collect();
            (name, (s, m))
        })
        .collect()
}

#[test]
fn state_round_trips_with_the_cpu_backends_names_shapes_and_values() {
    for shape in [fc(), conv(Arch::Allcnn), conv(Arch::Resnet18)] {
        let weights = init(&shape, 3);
        let momentum = random_momentum(&shape);
        let model = gpu::candle_cpu().load(&shape, &weights, &momentum).unwrap();
        let (w, m) = model.state().unwrap();
        assert_eq!(w, weights, "{}", shape.model.arch.name());
        assert_eq!(m, momentum, "{}", shape.model.arch.name());
        let cpu = Cpu
            .load(&shape, &weights, &momentum)
            .unwrap()
            .state()
            .unwrap();
        assert!(cpu.0.keys().eq(w.keys()) && cpu.1.keys().eq(m.keys()));
    }
}

#[test]
fn a_missing_or_misshapen_tensor_is_named() {
    let shape = conv(Arch::Resnet18);
    let mut weights = init(&shape, 3);
    weights.remove("layer2.0.shortcut.1.running_var");
    let e = gpu::candle_cpu()
        .load(&shape, &weights, &Weights::new())
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("layer2.0.shortcut.1.running_var"),
        "{e}"
    );
    let mut weights = init(&fc(), 3);
    weights.get_mut("layers.1.weight").unwrap().0 = vec![10, 100];
    let e = gpu::candle_cpu()
        .load(&fc(), &weights, &Weights::new())
        .err()
        .unwrap();
    assert!(e.to_string().contains("layers.1.weight"), "{e}");
}

/// Two steps in one model equal a step, a save, a load and a step, bit for bit; and a
/// checkpoint moves between the backends mid-run (momentum included) within the tolerance.
#[test]
fn momentum_continues_across_a_save_and_load_on_either_backend() {
    for shape in [fc(), conv(Arch::Allcnn), conv(Arch::Resnet18)] {
        let rows = if shape.model.arch == Arch::Fc { 32 } else { 4 };
        let (x1, y1) = batch(&shape, rows, 1);
        let (x2, y2) = batch(&shape, rows, 2);
        let candle = gpu::candle_cpu();
        let weights = init(&shape, 5);

        let mut straight = candle.load(&shape, &weights, &Weights::new()).unwrap();
        straight.step(&x1, &y1, &SGD).unwrap();
        straight.step(&x2, &y2, &SGD).unwrap();
        let straight = straight.state().unwrap();

        let mut first = candle.load(&shape, &weights, &Weights::new()).unwrap();
        first.step(&x1, &y1, &SGD).unwrap();
        let (w, m) = first.state().unwrap();
        assert!(m.values().any(|(_, v)| v.iter().any(|&b| b != 0.0)));
        let mut resumed = candle.load(&shape, &w, &m).unwrap();
        resumed.step(&x2, &y2, &SGD).unwrap();
        assert!(
            resumed.state().unwrap() == straight,
            "{}",
            shape.model.arch.name()
        );

        // CPU, then candle from the CPU's checkpoint, against two steps on the CPU.
        let mut cpu = Cpu.load(&shape, &weights, &Weights::new()).unwrap();
        cpu.step(&x1, &y1, &SGD).unwrap();
        let (w, m) = cpu.state().unwrap();
        let mut moved = candle.load(&shape, &w, &m).unwrap();
        moved.step(&x2, &y2, &SGD).unwrap();
        cpu.step(&x2, &y2, &SGD).unwrap();
        let (cw, cm) = cpu.state().unwrap();
        let (mw, mm) = moved.state().unwrap();
        for (name, (_, v)) in &cw {
            let e = relative_error(v, &mw[name].1);
            assert!(e < 1e-3, "{}: {name} {e:e}", shape.model.arch.name());
        }
        for (name, (_, v)) in &cm {
            let e = relative_error(v, &mm[name].1);
            assert!(
                e < 1e-3,
                "{}: momentum {name} {e:e}",
                shape.model.arch.name()
            );
        }
    }
}

#[test]
fn candle_on_the_cpu_is_deterministic() {
    for shape in [fc(), conv(Arch::Allcnn)] {
        let d = determinism(&gpu::candle_cpu(), &shape, 4, 2, 9).unwrap();
        assert!(d.identical(), "{d:?}");
    }
}

#[test]
fn the_candle_backend_names_its_domain() {
    assert_eq!(gpu::candle_cpu().domain(), gpu::CANDLE_CPU_DOMAIN);
    assert_ne!(gpu::CANDLE_CPU_DOMAIN, stages::DOMAIN);
}

/// A NaN input stays NaN through the ReLUs (it must reach the loss so that divergence is
/// seen), on both backends.
#[test]
fn nan_survives_the_relus_as_on_the_cpu() {
    for shape in [fc(), conv(Arch::Allcnn), conv(Arch::Resnet18)] {
        let (mut x, y) = batch(&shape, 2, 4);
        x[0] = f32::NAN;
        let weights = init(&shape, 2);
        for backend in [&Cpu as &dyn Backend, &gpu::candle_cpu()] {
            let mut model = backend.load(&shape, &weights, &Weights::new()).unwrap();
            let f = model.forward(&x).unwrap();
            assert!(f.logits[0].is_nan(), "{}", shape.model.arch.name());
            let (loss, _) = model.step(&x, &y, &SGD).unwrap();
            assert!(!loss.is_finite(), "{}", shape.model.arch.name());
        }
    }
}
