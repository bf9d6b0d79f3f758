//! `kernels::gemm` on the shapes the checkerboard run and its decoders use, each as a fraction
//! of one core's f32 peak (a loop of fused multiply-adds measured in the same process).
//!
//! `cargo bench -p stages --bench gemm [-- WORDS]` (only the shapes whose names contain every
//! word); run it pinned (`taskset -c 0`) on an idle machine.

use std::time::Instant;

use stages::kernels::{gemm, peak_flops};

/// uinfo's allocator: its buffers start on a cache line, as in `uinfo`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One product: a name, (m, n, k), and the strides of `a` as `(rsa, csa)`.
struct Case {
    name: &'static str,
    shape: (usize, usize, usize),
    transposed_a: bool,
}

fn gflops(case: &Case) -> f64 {
    let (m, n, k) = case.shape;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0f32; m * n];
    let strides = if case.transposed_a { (1, m) } else { (k, 1) };
    let flops = 2.0 * (m * n * k) as f64;
    let reps = (2e10 / flops).ceil() as usize;
    gemm(case.shape, &a, strides, &b, n, &mut c, n);
    let start = Instant::now();
    for _ in 0..reps {
        gemm(case.shape, &a, strides, &b, n, &mut c, n);
    }
    std::hint::black_box(&c);
    flops * reps as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let peak = peak_flops() / 1e9;
    let cases = [
        Case {
            name: "mlp forward (x · w1ᵀ)",
            shape: (8100, 128, 100),
            transposed_a: false,
        },
        Case {
            name: "mlp w1 gradient (δᵀ · x)",
            shape: (128, 100, 8100),
            transposed_a: true,
        },
        Case {
            name: "mlp w1ᵀ gradient (xᵀ · δ)",
            shape: (100, 128, 8100),
            transposed_a: true,
        },
        Case {
            name: "mlp head (h · w2ᵀ)",
            shape: (8100, 2, 64),
            transposed_a: false,
        },
        Case {
            name: "mlp fm forward (w1 · xᵀ)",
            shape: (128, 8100, 100),
            transposed_a: false,
        },
        Case {
            name: "mlp fm w1 gradient (δᵀ · x)",
            shape: (128, 101, 8100),
            transposed_a: false,
        },
        Case {
            name: "mlp block forward, 4 targets (w1 · xᵀ)",
            shape: (256, 512, 100),
            transposed_a: false,
        },
        Case {
            name: "mlp block w1 gradient, 4 targets (δ · x1)",
            shape: (256, 101, 512),
            transposed_a: false,
        },
        Case {
            name: "mlp fm head (w2 · hᵀ)",
            shape: (2, 8100, 64),
            transposed_a: false,
        },
        Case {
            name: "mlp fm delta (w2ᵀ · dzᵀ)",
            shape: (64, 8100, 2),
            transposed_a: true,
        },
        Case {
            name: "linear logits (w · xᵀ)",
            shape: (4, 8100, 100),
            transposed_a: false,
        },
        Case {
            name: "linear block logits, 4 classes (w · xᵀ)",
            shape: (4, 512, 100),
            transposed_a: false,
        },
        Case {
            name: "linear block logits, 8 classes (w · xᵀ)",
            shape: (8, 512, 100),
            transposed_a: false,
        },
        Case {
            name: "linear gradient (δ · x)",
            shape: (4, 100, 8100),
            transposed_a: false,
        },
        Case {
            name: "train b1024 hidden (x · wᵀ)",
            shape: (1024, 100, 100),
            transposed_a: false,
        },
        Case {
            name: "train b32 hidden (x · wᵀ)",
            shape: (32, 100, 100),
            transposed_a: false,
        },
    ];
    println!("peak {peak:.1} GFLOP/s");
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    for case in cases
        .iter()
        .filter(|c| only.iter().all(|o| c.name.contains(o.as_str())))
    {
        let g = gflops(case);
        println!(
            "{:32} {:>8.1} GFLOP/s {:>5.0}% of peak",
            case.name,
            g,
            100.0 * g / peak
        );
    }
}
