//! `kernels::gemm` on the shapes the checkerboard run and its decoders use, and
//! `kernels::gemm_nt_partial` on the decoders' weight-gradient blocks, each as a fraction of one
//! core's f32 peak (a loop of fused multiply-adds measured in the same process).
//!
//! `cargo bench -p stages --bench gemm [-- WORDS]` (only the shapes whose names contain every
//! word); run it pinned (`taskset -c 0`) on an idle machine.

use std::time::Instant;

use stages::kernels::{gemm, gemm_nt_partial, peak_flops, NT_LANES};

/// uinfo's allocator: its buffers start on a cache line, as in `uinfo`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One product: a name, (m, n, k), and how its operands lie.
struct Case {
    name: &'static str,
    shape: (usize, usize, usize),
    op: Op,
}

/// The kernel and layout of a [`Case`].
#[derive(Clone, Copy, PartialEq)]
enum Op {
    /// `gemm` with `a` row-major (m × k).
    Gemm,
    /// `gemm` with `a` stored transposed (k × m).
    GemmTransposedA,
    /// `gemm_nt_partial`: `a` (m × k) times `b` (n × k) transposed, into lane partial sums.
    Nt,
}

fn gflops(case: &Case) -> f64 {
    let (m, n, k) = case.shape;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.01).collect();
    let mut c = vec![0f32; m * n * if case.op == Op::Nt { NT_LANES } else { 1 }];
    let strides = if case.op == Op::GemmTransposedA {
        (1, m)
    } else {
        (k, 1)
    };
    let flops = 2.0 * (m * n * k) as f64;
    let reps = (2e10 / flops).ceil() as usize;
    let mut product = || match case.op {
        Op::Nt => gemm_nt_partial(case.shape, (&a, k), (&b, k), &mut c),
        _ => gemm(case.shape, &a, strides, &b, n, &mut c, n),
    };
    product();
    let start = Instant::now();
    for _ in 0..reps {
        product();
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
            op: Op::Gemm,
        },
        Case {
            name: "mlp w1 gradient (δᵀ · x)",
            shape: (128, 100, 8100),
            op: Op::GemmTransposedA,
        },
        Case {
            name: "mlp w1ᵀ gradient (xᵀ · δ)",
            shape: (100, 128, 8100),
            op: Op::GemmTransposedA,
        },
        Case {
            name: "mlp head (h · w2ᵀ)",
            shape: (8100, 2, 64),
            op: Op::Gemm,
        },
        Case {
            name: "mlp fm forward (w1 · xᵀ)",
            shape: (128, 8100, 100),
            op: Op::Gemm,
        },
        Case {
            name: "mlp fm w1 gradient (δᵀ · x)",
            shape: (128, 101, 8100),
            op: Op::Gemm,
        },
        Case {
            name: "mlp block forward, 4 targets (w1 · xᵀ)",
            shape: (256, 512, 100),
            op: Op::Gemm,
        },
        Case {
            name: "mlp block w1 gradient, 4 targets (δ · x1)",
            shape: (256, 101, 512),
            op: Op::Gemm,
        },
        Case {
            name: "mlp block forward, 2 targets (w1 · xᵀ)",
            shape: (128, 128, 100),
            op: Op::Gemm,
        },
        Case {
            name: "mlp block w1 gradient, 2 targets (δ · x1)",
            shape: (128, 101, 128),
            op: Op::Gemm,
        },
        Case {
            name: "mlp fm head (w2 · hᵀ)",
            shape: (2, 8100, 64),
            op: Op::Gemm,
        },
        Case {
            name: "mlp fm delta (w2ᵀ · dzᵀ)",
            shape: (64, 8100, 2),
            op: Op::GemmTransposedA,
        },
        Case {
            name: "linear logits (w · xᵀ)",
            shape: (4, 8100, 100),
            op: Op::Gemm,
        },
        Case {
            name: "linear block logits, 2 rows (w · xᵀ)",
            shape: (2, 512, 100),
            op: Op::Gemm,
        },
        Case {
            name: "linear block logits, 4 classes (w · xᵀ)",
            shape: (4, 512, 100),
            op: Op::Gemm,
        },
        Case {
            name: "linear block logits, 8 classes (w · xᵀ)",
            shape: (8, 512, 100),
            op: Op::Gemm,
        },
        Case {
            name: "linear block gradient, 2 rows (δ · x, nt)",
            shape: (2, 100, 512),
            op: Op::Nt,
        },
        Case {
            name: "linear block gradient, 4 classes (δ · x, nt)",
            shape: (4, 100, 512),
            op: Op::Nt,
        },
        Case {
            name: "linear block gradient, 8 classes (δ · x, nt)",
            shape: (8, 100, 512),
            op: Op::Nt,
        },
        Case {
            name: "mlp block head gradient (δ · h, nt)",
            shape: (2, 64, 128),
            op: Op::Nt,
        },
        Case {
            name: "linear gradient (δ · x)",
            shape: (4, 100, 8100),
            op: Op::Gemm,
        },
        Case {
            name: "train b1024 hidden (x · wᵀ)",
            shape: (1024, 100, 100),
            op: Op::Gemm,
        },
        Case {
            name: "train b1024 weight gradient (δᵀ · x)",
            shape: (100, 100, 1024),
            op: Op::GemmTransposedA,
        },
        Case {
            name: "train b1024 input gradient (δ · w)",
            shape: (1024, 100, 100),
            op: Op::Gemm,
        },
        Case {
            name: "train b32 hidden (x · wᵀ)",
            shape: (32, 100, 100),
            op: Op::Gemm,
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
