//! Dense-layer arithmetic whose bits do not depend on the CPU: every output is a sum taken in a
//! fixed order, as a chain of fused multiply-adds ([`gemm`]; IEEE's fma, exact on every CPU, in
//! software where it has none) or of separate IEEE operations ([`dot`], [`axpy`]: Rust never
//! fuses them itself), and the vector width only decides how many independent outputs are
//! computed at once.
//! [`simd!`] compiles a function for AVX-512 and AVX2 (each with FMA) beside the baseline and
//! picks one at run time; each gives the same bits.

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function with the same signature)
/// compiled for AVX-512 or AVX2 when the CPU has them, and for the baseline otherwise.
macro_rules! simd {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the enabled feature.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the enabled feature.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use simd;

mod gemm;
pub use gemm::{gemm, gemm_nt, gemm_nt_partial, reduce_partials, NT_LANES};

/// Dot product in 16 fixed partial sums (lane i takes elements i, i + 16, ...), added in lane
/// order, then the tail: the same bits whatever the vector width.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `acc += alpha * x`, element by element.
#[inline(always)]
pub fn axpy(acc: &mut [f32], alpha: f32, x: &[f32]) {
    for (a, v) in acc.iter_mut().zip(x) {
        *a += alpha * v;
    }
}

/// `out` = `b[j]` followed by the fused chain over the input: a dense layer on `rows` inputs
/// `x` (rows × fan_in), with `w` out × in as in PyTorch's `nn.Linear` and `wt` a scratch buffer
/// that receives its transpose.
#[inline(always)]
pub fn dense(x: &[f32], w: &[f32], b: &[f32], out: &mut [f32], wt: &mut Vec<f32>) {
    let (fan_out, fan_in) = (b.len(), w.len() / b.len().max(1));
    let rows = x.len() / fan_in.max(1);
    transpose(w, fan_out, fan_in, wt);
    for o in out.chunks_exact_mut(fan_out) {
        o.copy_from_slice(b);
    }
    gemm(
        (rows, fan_out, fan_in),
        x,
        (fan_in, 1),
        wt,
        fan_out,
        out,
        fan_out,
    );
}

/// `t` = the transpose of `m` (rows × cols), resized to fit: in 8 × 8 tiles transposed in AVX2
/// registers where the CPU has them (a 100 × 100 weight matrix, transposed at every training
/// step: 0.64 → 0.15 ns per element), else in tiles of 16 × 16 element by element.
#[inline(always)]
pub fn transpose(m: &[f32], rows: usize, cols: usize, t: &mut Vec<f32>) {
    assert!(
        m.len() >= rows * cols,
        "transpose of {rows} × {cols} from {}",
        m.len()
    );
    t.resize(rows * cols, 0.0);
    #[cfg(target_arch = "x86_64")]
    if rows >= 8 && cols >= 8 && std::arch::is_x86_feature_detected!("avx2") {
        let (whole_rows, whole_cols) = (rows / 8 * 8, cols / 8 * 8);
        for r0 in (0..whole_rows).step_by(8) {
            for c0 in (0..whole_cols).step_by(8) {
                // SAFETY: the CPU has AVX2; rows r0..r0 + 8 and columns c0..c0 + 8 lie inside
                // both `m` (asserted above) and `t` (resized to rows × cols).
                unsafe {
                    transpose_tile_avx2(
                        m.as_ptr().add(r0 * cols + c0),
                        cols,
                        t.as_mut_ptr().add(c0 * rows + r0),
                        rows,
                    )
                };
            }
        }
        transpose_part(m, (rows, cols), (0..rows, whole_cols..cols), t);
        transpose_part(m, (rows, cols), (whole_rows..rows, 0..whole_cols), t);
        return;
    }
    transpose_part(m, (rows, cols), (0..rows, 0..cols), t);
}

/// The rows and columns of `m` (rows × cols) in the given ranges into `t` (the transpose), in
/// tiles of 16 × 16, so the rows read and written stay in the L1 cache while a tile is copied.
#[inline(always)]
fn transpose_part(
    m: &[f32],
    (rows, cols): (usize, usize),
    (row_range, col_range): (std::ops::Range<usize>, std::ops::Range<usize>),
    t: &mut [f32],
) {
    const TILE: usize = 16;
    for r0 in row_range.clone().step_by(TILE) {
        let r1 = (r0 + TILE).min(row_range.end);
        for c0 in col_range.clone().step_by(TILE) {
            for c in c0..(c0 + TILE).min(col_range.end) {
                let out = &mut t[c * rows + r0..c * rows + r1];
                for (o, r) in out.iter_mut().zip(r0..r1) {
                    // SAFETY: r < rows and c < cols, and m holds rows × cols (asserted by the
                    // caller); the bounds check per element was half the time of a training
                    // step's transposes.
                    *o = unsafe { *m.get_unchecked(r * cols + c) };
                }
            }
        }
    }
}

/// Transposes the 8 × 8 tile at `src` (row stride `lds`) to `dst` (row stride `ldd`): unpacks,
/// shuffles and 128-bit lane permutes, 24 instructions for 64 elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_tile_avx2(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * lds)));
    let pairs: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    let quads: [__m256; 8] = std::array::from_fn(|i| {
        // Elements 0-1 of each pair for even i, 2-3 for odd: the pairs of rows 4k, 4k + 1
        // and 4k + 2, 4k + 3 (k = i / 4).
        let (a, b) = (
            pairs[i / 4 * 4 + i % 4 / 2],
            pairs[i / 4 * 4 + i % 4 / 2 + 2],
        );
        if i % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    for j in 0..4 {
        let (low, high) = (quads[j], quads[j + 4]);
        _mm256_storeu_ps(dst.add(j * ldd), _mm256_permute2f128_ps::<0x20>(low, high));
        _mm256_storeu_ps(
            dst.add((j + 4) * ldd),
            _mm256_permute2f128_ps::<0x31>(low, high),
        );
    }
}

/// `+0.0` where `zero`, else `v` (`+0.0` for `-0.0`). For "zero some elements in place", the
/// compiler turns a branch or a select of `v` itself into a masked store, many times slower
/// than a store on AMD CPUs (a third of the MLP decoder's elementwise time); `v + 0.0` is not
/// `v` to it (it differs for `-0.0`), so every element is stored.
#[inline(always)]
pub fn zero_where(zero: bool, v: f32) -> f32 {
    if zero {
        0.0
    } else {
        v + 0.0
    }
}

/// `v = max(v, 0)` in place; NaN stays NaN (as in PyTorch), so it cannot vanish silently.
#[inline(always)]
pub fn relu(v: &mut [f32]) {
    for x in v {
        *x = zero_where(*x < 0.0, *x);
    }
}

/// The gradients of a dense layer from the gradient `delta` (rows × fan_out) of its outputs and
/// its inputs `x` (rows × fan_in): `gw[j] = Σ_r delta[r][j] x[r]` (fused, in row order) and
/// `gb[j] = Σ_r delta[r][j]` (in row order), overwriting `gw` and `gb`.
#[inline(always)]
pub fn dense_grads(x: &[f32], delta: &[f32], gw: &mut [f32], gb: &mut [f32]) {
    let (fan_out, fan_in) = (gb.len(), gw.len() / gb.len().max(1));
    let rows = delta.len() / fan_out.max(1);
    gw.iter_mut().for_each(|v| *v = 0.0);
    gb.iter_mut().for_each(|v| *v = 0.0);
    for d in delta.chunks_exact(fan_out) {
        for (g, &dj) in gb.iter_mut().zip(d) {
            *g += dj;
        }
    }
    gemm(
        (fan_out, fan_in, rows),
        delta,
        (1, fan_out),
        x,
        fan_in,
        gw,
        fan_in,
    );
}

/// The gradient of a dense layer's inputs: `dx[r] = Σ_j delta[r][j] w[j]`, fused, in output
/// order.
#[inline(always)]
pub fn dense_input_grad(w: &[f32], delta: &[f32], fan_out: usize, dx: &mut [f32]) {
    let fan_in = w.len() / fan_out.max(1);
    let rows = delta.len() / fan_out.max(1);
    dx.iter_mut().for_each(|v| *v = 0.0);
    gemm(
        (rows, fan_in, fan_out),
        delta,
        (fan_out, 1),
        w,
        fan_in,
        dx,
        fan_in,
    );
}

/// [`dense_input_grad`], then zeroed where the input `x` (a ReLU's output) is not positive.
#[inline(always)]
pub fn dense_input_grad_relu(x: &[f32], w: &[f32], delta: &[f32], fan_out: usize, dx: &mut [f32]) {
    dense_input_grad(w, delta, fan_out, dx);
    for (v, &a) in dx.iter_mut().zip(x) {
        *v = zero_where(a <= 0.0, *v);
    }
}

/// e^x in f32 for gradients: Cody–Waite reduction and a degree-7 polynomial, fused
/// multiply-adds only, no branches (so it vectorises); within 2 ulp, 0 below −87.3, and
/// saturating at 2^127·e^0.4 above 88.7. The same bits on every CPU.
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer, ties to even.
    let x = x.clamp(-87.0, 88.0);
    let shifted = x.mul_add(LOG2E, ROUND);
    let k = shifted - ROUND;
    let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, x));
    let mut p: f32 = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p.mul_add(r, c);
    }
    // The integer k sits in the low bits of `shifted`: read there, with no float-to-integer
    // conversion (which would not vectorise).
    let k = shifted
        .to_bits()
        .wrapping_sub(ROUND.to_bits())
        .wrapping_add(127);
    p * f32::from_bits(k << 23)
}

/// Softmax cross-entropy of one row of logits against class `y`: turns `z` into the gradient
/// `(softmax(z) - onehot(y)) * scale` and returns (cross-entropy in nats, whether the arg-max is
/// `y`). The arg-max is the first largest logit.
#[inline(always)]
pub fn softmax_xent(z: &mut [f32], y: usize, scale: f32) -> (f32, bool) {
    let (arg, m) = arg_max(z);
    let shifted = z[y] - m;
    let mut sum = 0f32;
    for v in z.iter_mut() {
        *v = exp_below(*v, m);
        sum += *v;
    }
    let ce = crate::math::lnf(sum) - shifted;
    for (i, v) in z.iter_mut().enumerate() {
        *v = (*v / sum - f32::from(i == y)) * scale;
    }
    (ce, arg == y)
}

/// The cross-entropy (nats) of one row of logits against class `y`, and whether the arg-max
/// (the first largest logit) is `y`: the same bits as [`softmax_xent`], without the gradient.
#[inline(always)]
pub fn xent(z: &[f32], y: usize) -> (f32, bool) {
    let (arg, m) = arg_max(z);
    let sum = z.iter().fold(0f32, |s, &v| s + exp_below(v, m));
    (crate::math::lnf(sum) - (z[y] - m), arg == y)
}

/// The first largest logit of a row: its index and value.
#[inline(always)]
fn arg_max(z: &[f32]) -> (usize, f32) {
    let (mut arg, mut m) = (0, f32::NEG_INFINITY);
    for (i, &v) in z.iter().enumerate() {
        if v > m {
            (arg, m) = (i, v);
        }
    }
    (arg, m)
}

/// `e^(v - m)` for a logit `v` and the row's largest `m`: 1 for the largest itself (what
/// [`crate::math::expf`] gives for ±0, without its polynomial).
#[inline(always)]
fn exp_below(v: f32, m: f32) -> f32 {
    if v == m {
        1.0
    } else {
        crate::math::expf(v - m)
    }
}

/// Accumulators of [`multiply_add_loop`]: 12 AVX2 registers (with the two operands, within the
/// 16 there are; 192 spilled to memory and measured half the peak) or 6 AVX-512 ones, enough
/// independent chains to cover the latency of a multiply-add on either.
const PEAK_LANES: usize = 96;

/// One core's f32 operations per second (two per multiply-add) in [`multiply_add_loop`]: the
/// reference for benchmarks' "fraction of peak".
pub fn peak_flops() -> f64 {
    let iters = 20_000_000;
    multiply_add_loop(1000);
    let start = std::time::Instant::now();
    std::hint::black_box(multiply_add_loop(iters));
    (iters * PEAK_LANES * 2) as f64 / start.elapsed().as_secs_f64()
}

/// `iters` rounds of fused multiply-adds on [`PEAK_LANES`] independent accumulators. Returns a
/// value that depends on every operation, so none is optimised away.
#[inline(always)]
fn multiply_add_loop_body(iters: usize) -> f32 {
    let mut acc = [[1f32; 32]; PEAK_LANES / 32];
    let (m, c) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for row in acc.iter_mut() {
            for v in row.iter_mut() {
                *v = v.mul_add(m, c);
            }
        }
    }
    acc.iter().flatten().sum()
}

simd! {
    /// [`multiply_add_loop_body`] for the widest vectors the CPU has.
    fn multiply_add_loop(iters: usize) -> f32 = multiply_add_loop_body;
}

/// Summed cross-entropy (nats) and correct predictions of logits (rows × classes) against labels.
pub fn xent_sums(logits: &[f32], y: &[i64], classes: usize) -> (f64, usize) {
    let (mut ce, mut correct) = (0f64, 0usize);
    for (row, &label) in logits.chunks_exact(classes).zip(y) {
        let (c, hit) = xent(row, label as usize);
        ce += c as f64;
        correct += usize::from(hit);
    }
    (ce, correct)
}

/// Examples whose cross-entropies [`xent_sums_columns`] computes side by side.
const XENT_LANES: usize = 8;

/// [`xent_sums`] of logits stored class by class (`z[c * rows + r]`, `rows = y.len()`): the
/// same bits, with eight examples' exponentials and logarithms computed at once.
#[inline(always)]
fn xent_sums_columns_body(z: &[f32], y: &[i64]) -> (f64, usize) {
    const L: usize = XENT_LANES;
    let rows = y.len();
    let (mut ce, mut correct) = (0f64, 0usize);
    if rows == 0 {
        return (ce, correct);
    }
    let classes = z.len() / rows;
    let mut add = |c: f32, hit: bool| {
        ce += c as f64;
        correct += usize::from(hit);
    };
    let mut row = vec![0f32; classes];
    let mut scalar = |r: usize| {
        for (c, v) in row.iter_mut().enumerate() {
            *v = z[c * rows + r];
        }
        xent(&row, y[r] as usize)
    };
    for r0 in (0..rows - rows % L).step_by(L) {
        let (mut m, mut arg) = ([f32::NEG_INFINITY; L], [0u32; L]);
        for c in 0..classes {
            let zc: &[f32; L] = z[c * rows + r0..][..L].try_into().expect("L lanes");
            for i in 0..L {
                if zc[i] > m[i] {
                    (m[i], arg[i]) = (zc[i], c as u32);
                }
            }
        }
        let (mut sum, mut below) = ([0f32; L], true);
        for c in 0..classes {
            let zc: &[f32; L] = z[c * rows + r0..][..L].try_into().expect("L lanes");
            for i in 0..L {
                let d = zc[i] - m[i];
                below &= d <= 0.0;
                // Below −104 both e^d and e^max(d, −700) round to 0 in f32.
                let e = crate::math::exp_core((d as f64).max(-700.0)) as f32;
                sum[i] += if zc[i] == m[i] { 1.0 } else { e };
            }
        }
        if !below {
            // A NaN or infinite logit: the scalar path, which handles them.
            for r in r0..r0 + L {
                let (c, hit) = scalar(r);
                add(c, hit);
            }
            continue;
        }
        let mut ln = [0f32; L];
        for i in 0..L {
            // `sum` lies in [1, classes]: normal, finite, positive.
            ln[i] = crate::math::ln_core(sum[i] as f64) as f32;
        }
        for i in 0..L {
            let (r, label) = (r0 + i, y[r0 + i] as usize);
            add(
                ln[i] - (z[label * rows + r] - m[i]),
                arg[i] as usize == label,
            );
        }
    }
    for r in rows - rows % L..rows {
        let (c, hit) = scalar(r);
        add(c, hit);
    }
    (ce, correct)
}

simd! {
    /// [`xent_sums_columns_body`] for the widest vectors the CPU has (the same bits on each).
    pub fn xent_sums_columns(z: &[f32], y: &[i64]) -> (f64, usize) = xent_sums_columns_body;
}

/// Mean cross-entropy (nats) and accuracy of logits (rows × classes) against labels.
pub fn mean_xent(logits: &[f32], y: &[i64], classes: usize) -> (f64, f64) {
    let (ce, correct) = xent_sums(logits, y, classes);
    let n = y.len().max(1) as f64;
    (ce / n, correct as f64 / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_keeps_nan_and_writes_positive_zeros() {
        // Long enough for the vectorised loop, with its scalar rest.
        let mut v: Vec<f32> = [-3.0, -0.0, 0.0, 2.5, f32::NAN, f32::NEG_INFINITY, 1e-30].repeat(5);
        let want: Vec<u32> = v
            .iter()
            .map(|&x| {
                if x.is_nan() || x > 0.0 {
                    x.to_bits()
                } else {
                    0
                }
            })
            .collect();
        relu(&mut v);
        assert_eq!(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want);
        assert_eq!(zero_where(false, -0.0).to_bits(), 0);
    }

    #[test]
    fn dense_layer_and_its_gradients_match_a_naive_computation() {
        let (rows, fan_in, fan_out) = (3, 37, 5);
        let x: Vec<f32> = (0..rows * fan_in)
            .map(|i| ((i * 7) % 11) as f32 * 0.1 - 0.4)
            .collect();
        let w: Vec<f32> = (0..fan_out * fan_in)
            .map(|i| ((i * 5) % 13) as f32 * 0.05 - 0.3)
            .collect();
        let b: Vec<f32> = (0..fan_out).map(|j| j as f32 * 0.1).collect();
        let mut out = vec![0f32; rows * fan_out];
        dense(&x, &w, &b, &mut out, &mut Vec::new());
        for r in 0..rows {
            for j in 0..fan_out {
                let naive: f64 = b[j] as f64
                    + (0..fan_in)
                        .map(|k| x[r * fan_in + k] as f64 * w[j * fan_in + k] as f64)
                        .sum::<f64>();
                assert!((out[r * fan_out + j] as f64 - naive).abs() < 1e-5);
            }
        }
        let delta: Vec<f32> = (0..rows * fan_out)
            .map(|i| (i as f32 - 7.0) * 0.01)
            .collect();
        let (mut gw, mut gb) = (vec![1f32; fan_out * fan_in], vec![1f32; fan_out]);
        dense_grads(&x, &delta, &mut gw, &mut gb);
        let naive_gw: f32 = (0..rows)
            .map(|r| delta[r * fan_out + 2] * x[r * fan_in + 3])
            .sum();
        assert!((gw[2 * fan_in + 3] - naive_gw).abs() < 1e-6);
        assert!((gb[4] - (0..rows).map(|r| delta[r * fan_out + 4]).sum::<f32>()).abs() < 1e-6);
        let mut dx = vec![0f32; rows * fan_in];
        let positive: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
        dense_input_grad_relu(&positive, &w, &delta, fan_out, &mut dx);
        let naive_dx: f32 = (0..fan_out)
            .map(|j| delta[fan_out + j] * w[j * fan_in + 9])
            .sum();
        assert!((dx[fan_in + 9] - naive_dx).abs() < 1e-6);
    }

    #[test]
    fn transpose_moves_every_element() {
        for (rows, cols) in [
            (1, 1),
            (3, 100),
            (512, 100),
            (37, 17),
            (16, 33),
            (8, 8),
            (100, 4),
        ] {
            let m: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut t = vec![f32::NAN; 5];
            transpose(&m, rows, cols, &mut t);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], m[r * cols + c], "{rows}×{cols} at {r},{c}");
                }
            }
        }
    }

    #[test]
    fn cross_entropy_alone_has_the_bits_of_the_softmax_gradients() {
        for m in [0.0f32, -0.0, 3.5, -700.0] {
            assert_eq!(
                exp_below(m, m).to_bits(),
                crate::math::expf(m - m).to_bits()
            );
        }
        let rows: [&[f32]; 5] = [
            &[0.3, -1.2],
            &[2.0, 2.0, -0.5],
            &[-0.0, 0.0],
            &[-50.0, 40.0, 39.9, 0.1],
            &[1e-7, -1e-7],
        ];
        for row in rows {
            for y in 0..row.len() {
                let mut z = row.to_vec();
                let (want, hit) = softmax_xent(&mut z, y, 1.0);
                let plain = |v: &[f32]| {
                    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                    let sum = v.iter().fold(0f32, |s, &x| s + crate::math::expf(x - m));
                    crate::math::lnf(sum) - (v[y] - m)
                };
                assert_eq!(xent(row, y), (want, hit), "{row:?} {y}");
                assert_eq!(want.to_bits(), plain(row).to_bits(), "{row:?} {y}");
            }
        }
    }

    #[test]
    fn column_cross_entropies_have_the_bits_of_the_row_ones() {
        let mut rng = crate::rng::Rng::new(9);
        for (rows, classes) in [(1, 2), (8, 2), (37, 2), (64, 3), (29, 10), (200, 4)] {
            let mut z: Vec<f32> = (0..rows * classes)
                .map(|_| (rng.normal() * 8.0) as f32)
                .collect();
            // Ties, far-below logits, and (in the last rows) infinities and NaN.
            z[0] = z[rows.min(z.len() - 1)];
            if rows > 20 {
                z[3] = -900.0;
                z[5] = 150.0;
                z[rows - 2] = f32::NEG_INFINITY;
                z[rows - 1] = f32::NAN;
                z[9] = f32::INFINITY;
            }
            let y: Vec<i64> = (0..rows)
                .map(|_| rng.below(classes as u64) as i64)
                .collect();
            let mut by_row = vec![0f32; rows * classes];
            for r in 0..rows {
                for c in 0..classes {
                    by_row[r * classes + c] = z[c * rows + r];
                }
            }
            let (want, hits) = xent_sums(&by_row, &y, classes);
            let (got, got_hits) = xent_sums_columns(&z, &y);
            assert_eq!(
                (got.to_bits(), got_hits),
                (want.to_bits(), hits),
                "{rows} × {classes}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn fast_exp_is_within_two_ulp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp_fast(x), (x as f64).exp());
            let ulp = (want as f32).to_bits().abs_diff(got.to_bits());
            assert!(ulp <= 2, "exp({x}) = {got}, want {want}");
            x += 0.0137;
        }
        assert_eq!(exp_fast(-200.0), exp_fast(-87.0));
        assert!(exp_fast(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_cross_entropy_and_its_gradient() {
        let mut z = [1.0f32, 2.0, 0.5];
        let (ce, hit) = softmax_xent(&mut z, 1, 1.0);
        let lse = (1f64.exp() + 2f64.exp() + 0.5f64.exp()).ln();
        assert!((ce as f64 - (lse - 2.0)).abs() < 1e-6 && hit);
        assert!(
            z.iter().sum::<f32>().abs() < 1e-6,
            "gradient sums to 0: {z:?}"
        );
        assert!(z[1] < 0.0 && z[0] > 0.0);
    }
}
