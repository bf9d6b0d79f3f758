//! Elementary functions computed with plain IEEE arithmetic (no FMA, no lookup tables, no
//! platform math library), so their bits are the same on every CPU.
//!
//! The C library picks its `exp`, `log` and `cos` by instruction set at run time (glibc has FMA
//! variants), so results through `f64::exp` and friends may differ in the last bit between
//! machines. Every stage uses these instead. Accuracy is within a few units in the last place of
//! f64, far below what the stages' f32 outputs resolve.

use std::f64::consts::{FRAC_PI_2, LN_2, LOG2_E, SQRT_2};

/// ln 2 split so that `k * LN2_HI` is exact for |k| < 2^20 (fdlibm's constants).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// π/2 in three parts (Cody–Waite, fdlibm's constants), each product with a small integer exact.
const PIO2_1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
const PIO2_2: f64 = f64::from_bits(0x3dd0_b461_1a60_0000);
const PIO2_3: f64 = f64::from_bits(0x3ba3_198a_2e03_7073);

/// 2^k for an integer k in the normal range.
fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// 2^k for an integer-valued `k` in [-1022, 1023], read off the bits of `k + 2^52 + 1023` with
/// no float-to-integer conversion (which would not vectorise).
#[inline(always)]
fn pow2_of(k: f64) -> f64 {
    f64::from_bits((k + EXPONENT_SHIFT).to_bits() << 52)
}

/// 2^52 + 1023: an integer-valued float up to 2^11 in magnitude added to it lands in the low
/// bits of the sum, biased as an exponent field.
const EXPONENT_SHIFT: f64 = 4_503_599_627_370_496.0 + 1023.0;

/// The lowest argument for which [`exp_core`] equals [`exp`].
const EXP_CORE_MIN: f64 = -708.0;

/// [`exp`] for `EXP_CORE_MIN <= x <= 709`, without branches, so that a loop of it vectorises.
#[inline(always)]
pub fn exp_core(x: f64) -> f64 {
    let (p, k) = exp_reduced(x);
    p * pow2_of(k)
}

/// e^x as `p · 2^k`: k the integer nearest x / ln 2, p = e^(x − k ln 2).
#[inline(always)]
fn exp_reduced(x: f64) -> (f64, f64) {
    let k = (x * LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r for |r| <= ln2 / 2, to r^13 / 13! (next term < 2^-57).
    let mut p = 1.0 / 6_227_020_800.0;
    for d in [
        479_001_600.0,
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    (p, k)
}

/// e^x.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 709.782_712_893_384 {
        return f64::INFINITY;
    }
    if x < -745.133_219_101_941_1 {
        return 0.0;
    }
    if (EXP_CORE_MIN..=709.0).contains(&x) {
        return exp_core(x);
    }
    let (p, k) = exp_reduced(x);
    let k = k as i64;
    if k < -1021 {
        // Subnormal result: scale in two steps.
        p * pow2(k + 54) * pow2(-54)
    } else if k > 1023 {
        p * pow2(k - 1) * 2.0
    } else {
        p * pow2(k)
    }
}

/// The natural logarithm.
pub fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    if x < f64::MIN_POSITIVE {
        return ln_scaled(x * pow2(54), -54.0);
    }
    ln_core(x)
}

/// [`ln`] for a normal, finite, positive `x`, without branches, so that a loop of it vectorises.
#[inline(always)]
pub fn ln_core(x: f64) -> f64 {
    ln_scaled(x, 0.0)
}

/// ln(x · 2^shift) for a normal, finite, positive `x` and an integer-valued `shift`.
#[inline(always)]
fn ln_scaled(x: f64, shift: f64) -> f64 {
    let bits = x.to_bits();
    // The unbiased exponent, as the float 2^52 + its biased field minus 2^52 + 1023: exact.
    let e = f64::from_bits(0x4330_0000_0000_0000 | ((bits >> 52) & 0x7ff)) - EXPONENT_SHIFT + shift;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | (1023 << 52));
    let (m, e) = if m > SQRT_2 {
        (m * 0.5, e + 1.0)
    } else {
        (m, e)
    };
    // ln m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| <= 0.172: odd series to s^23.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut p = 1.0 / 23.0;
    for d in [21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0] {
        p = p * s2 + 1.0 / d;
    }
    e * LN2_HI + (e * LN2_LO + 2.0 * s * p)
}

/// sin and cos of r for |r| <= π/4, by their Taylor series to r^17 / r^18.
fn sin_cos_small(r: f64) -> (f64, f64) {
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    // Odd factorials 17!, 15!, ..., 3!, 1! and even ones 18!, 16!, ..., 2!, 0!.
    for n in (0..9).rev() {
        let odd = factorial(2 * n + 1);
        let even = factorial(2 * n + 2);
        let sign = if n % 2 == 0 { 1.0 } else { -1.0 };
        s = s * r2 + sign / odd;
        c = c * r2 - sign / even;
    }
    (s * r, 1.0 + c * r2)
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

/// The cosine, for the arguments uinfo uses (|x| up to about 10^6; exact reduction beyond that
/// is not attempted).
pub fn cos(x: f64) -> f64 {
    if !x.is_finite() {
        return f64::NAN;
    }
    let k = (x / FRAC_PI_2).round();
    let r = ((x - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let (s, c) = sin_cos_small(r);
    match (k as i64).rem_euclid(4) {
        0 => c,
        1 => -s,
        2 => -c,
        _ => s,
    }
}

/// e^x in f32 (computed in f64, then rounded).
pub fn expf(x: f32) -> f32 {
    exp(x as f64) as f32
}

/// The natural logarithm in f32 (computed in f64, then rounded).
pub fn lnf(x: f32) -> f32 {
    ln(x as f64) as f32
}

/// ln 2, for converting nats and bits.
pub const LN2: f64 = LN_2;

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn exp_and_ln_keep_their_bits() {
        // Digests of a sweep through every path (overflow, the vectorised cores, subnormal
        // results and arguments), pinned from the implementation before the cores were split
        // out: results, and so stored blobs, must not change.
        let (mut a, mut b) = (0u64, 0u64);
        let mut x = -750.0f64;
        while x < 750.0 {
            a = a.rotate_left(7) ^ exp(x).to_bits();
            b = b.rotate_left(7) ^ ln(x.abs() * 1e-3 + 1e-310).to_bits();
            x += 0.0123;
        }
        assert_eq!((a, b), (0x6839_9f6e_6168_47c9, 0x5538_e126_1ac1_6c3b));
    }

    #[test]
    fn agree_with_the_platform_library_to_a_few_ulps() {
        let mut x = -700.0f64;
        while x < 700.0 {
            assert!(
                ulps(exp(x), x.exp()) <= 2,
                "exp({x}) = {} vs {}",
                exp(x),
                x.exp()
            );
            x += 0.37;
        }
        let mut x = 1e-300f64;
        while x < 1e300 {
            assert!(
                ulps(ln(x), x.ln()) <= 2,
                "ln({x}) = {} vs {}",
                ln(x),
                x.ln()
            );
            x *= 1.7;
        }
        for i in 0..10_000 {
            let x = i as f64 * 0.001_3 - 3.0;
            assert!(
                (cos(x) - x.cos()).abs() < 4e-16,
                "cos({x}) = {} vs {}",
                cos(x),
                x.cos()
            );
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(1000.0), f64::INFINITY);
        assert_eq!(exp(-1000.0), 0.0);
        assert!(exp(-740.0) > 0.0 && ulps(exp(-740.0), (-740.0f64).exp()) <= 2);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(-1.0).is_nan() && exp(f64::NAN).is_nan());
        assert!(ulps(ln(5e-324), (5e-324f64).ln()) <= 2);
        assert_eq!(cos(0.0), 1.0);
        assert!(expf(f32::NAN).is_nan() && lnf(0.0) == f32::NEG_INFINITY);
    }
}
