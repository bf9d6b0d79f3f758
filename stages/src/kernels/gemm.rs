//! The matrix product behind every dense layer, convolution and decoder: cache blocks of the
//! operands, register tiles written with explicit AVX-512 or AVX2 vectors (chosen at run time),
//! and a portable tile for every other CPU. Each output is the same chain of fused
//! multiply-adds in all three, so the bits do not depend on which one runs.

/// Rows of `a` (and of the output) per cache block.
const MB: usize = 96;
/// Steps of the reduction per cache block.
const KB: usize = 256;
/// Columns of `b` per cache block.
const NC: usize = 1024;
/// Reduction steps of a cache block beyond which a column panel of `b` read in place (each row
/// a piece of one or two cache lines) no longer stays in a 32 KiB L1 cache while the tiles of
/// a row block sweep it; deeper blocks are copied to consecutive memory first. A weight
/// gradient over a batch of 1024 (100 × 100 × 1024, `a` transposed): 63% → 75% of the AVX2
/// machine's peak.
const DEEP: usize = 128;

/// `c[i][j] = fma(a[i][k-1], b[k-1][j], ... fma(a[i][0], b[0][j], c[i][j]))`: the matrix product
/// `a · b` (m × k times k × n) added to `c` (m × n, row stride `ldc`), each output a chain of
/// fused multiply-adds in the order of the reduction index, so its bits depend neither on the
/// vector width nor on the blocking. `a[i][p]` is `a[i * rsa + p * csa]` (either layout, or a
/// transposed view), `b[p][j]` is `b[p * ldb + j]`.
///
/// Panics if a slice is too short for the shape and strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        a.len() > (m - 1) * rsa + (k - 1) * csa
            && b.len() >= (k - 1) * ldb + n
            && c.len() >= (m - 1) * ldc + n,
        "gemm: operands too short for {m}×{n}×{k}"
    );
    let shape = Shape {
        m,
        n,
        k,
        rsa,
        csa,
        ldb,
        ldc,
    };
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; the assertion above keeps every access in bounds.
            return unsafe { x86::gemm_avx512(&shape, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, with AVX2 and FMA.
            return unsafe { x86::gemm_avx2(&shape, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) };
        }
    }
    portable(&shape, a, b, c);
}

/// Lanes of [`gemm_nt`]'s partial sums: lane `l` of an output sums the reduction steps
/// `p ≡ l (mod 16)`, whatever the vector width.
pub const NT_LANES: usize = 16;

/// The product `a · bᵀ` with the reduction index contiguous in both (`a[i][p] = a[i * lda + p]`,
/// `b[j][p] = b[j * ldb + p]`, m × k and n × k), accumulated into `NT_LANES` partial sums per
/// output: `partial[(i * n + j) * 16 + l]` continues its chain of fused multiply-adds with the
/// steps `p ≡ l (mod 16)`, in order. A long reduction may be split into calls whose lengths are
/// multiples of 16 (the last may be shorter) with the same result; [`reduce_partials`] ends it.
pub fn gemm_nt_partial(
    (m, n, k): (usize, usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    partial: &mut [f32],
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(
        a.len() >= (m - 1) * lda + k
            && b.len() >= (n - 1) * ldb + k
            && partial.len() >= m * n * NT_LANES,
        "gemm_nt: operands too short for {m}×{n}×{k}"
    );
    #[cfg(target_arch = "x86_64")]
    {
        let shape = (m, n, k, lda, ldb);
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; the assertion above keeps every access in bounds.
            return unsafe { x86::nt_avx512(shape, a.as_ptr(), b.as_ptr(), partial.as_mut_ptr()) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above, with AVX2 and FMA.
            return unsafe { x86::nt_avx2(shape, a.as_ptr(), b.as_ptr(), partial.as_mut_ptr()) };
        }
    }
    portable_nt((m, n, k), (a, lda), (b, ldb), partial);
}

/// `c[i][j] += ` the sum of the output's `NT_LANES` partial sums, added in lane order.
pub fn reduce_partials(partial: &[f32], (m, n): (usize, usize), c: &mut [f32], ldc: usize) {
    for i in 0..m {
        for j in 0..n {
            let lanes = &partial[(i * n + j) * NT_LANES..][..NT_LANES];
            c[i * ldc + j] += lanes.iter().fold(0.0, |s, &v| s + v);
        }
    }
}

/// [`gemm_nt_partial`] over the whole reduction from zero, then [`reduce_partials`] into `c`;
/// `scratch` holds the partial sums.
#[allow(clippy::too_many_arguments)]
pub fn gemm_nt(
    (m, n, k): (usize, usize, usize),
    a: (&[f32], usize),
    b: (&[f32], usize),
    c: &mut [f32],
    ldc: usize,
    scratch: &mut Vec<f32>,
) {
    scratch.clear();
    scratch.resize(m * n * NT_LANES, 0.0);
    gemm_nt_partial((m, n, k), a, b, scratch);
    reduce_partials(scratch, (m, n), c, ldc);
}

/// [`gemm_nt_partial`] for CPUs without AVX2 and FMA.
fn portable_nt(
    (m, n, k): (usize, usize, usize),
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    partial: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let acc = &mut partial[(i * n + j) * NT_LANES..][..NT_LANES];
            let (ar, br) = (&a[i * lda..][..k], &b[j * ldb..][..k]);
            for (ac, bc) in ar.chunks(NT_LANES).zip(br.chunks(NT_LANES)) {
                for ((v, &x), &y) in acc.iter_mut().zip(ac).zip(bc) {
                    *v = x.mul_add(y, *v);
                }
            }
        }
    }
}

/// The dimensions and strides of one product.
struct Shape {
    m: usize,
    n: usize,
    k: usize,
    rsa: usize,
    csa: usize,
    ldb: usize,
    ldc: usize,
}

/// Each cache block as `(rows, depth, a offset, b offset, c offset)`, in the order that keeps a
/// block of `b` in cache while the rows of `a` stream past it.
fn blocks(s: &Shape) -> impl Iterator<Item = (usize, usize, usize, usize, usize)> + '_ {
    (0..s.m).step_by(MB).flat_map(move |i0| {
        (0..s.k).step_by(KB).map(move |p0| {
            (
                MB.min(s.m - i0),
                KB.min(s.k - p0),
                i0 * s.rsa + p0 * s.csa,
                p0 * s.ldb,
                i0 * s.ldc,
            )
        })
    })
}

/// The tile for CPUs without AVX2 and FMA: `R` rows × 8 columns in plain arrays, `f32::mul_add`
/// (the correctly rounded `fmaf`) for each step.
fn portable(s: &Shape, a: &[f32], b: &[f32], c: &mut [f32]) {
    const NR: usize = 8;
    for (rows, depth, ao, bo, co) in blocks(s) {
        for j in (0..s.n).step_by(NR) {
            let cols = NR.min(s.n - j);
            for i in 0..rows {
                let mut acc = [0f32; NR];
                let crow = &mut c[co + i * s.ldc + j..][..cols];
                acc[..cols].copy_from_slice(crow);
                for p in 0..depth {
                    let av = a[ao + i * s.rsa + p * s.csa];
                    let brow = &b[bo + p * s.ldb + j..][..cols];
                    for (v, &bv) in acc.iter_mut().zip(brow) {
                        *v = av.mul_add(bv, *v);
                    }
                }
                crow.copy_from_slice(&acc[..cols]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Register tiles on x86-64 vectors: `R` rows × `NV` vectors of `c` live in registers
    //! while the reduction runs; the last vector of a tile is masked to the columns left.

    use super::{Shape, DEEP, KB, MB, NC};

    use std::arch::x86_64::*;

    /// One vector instruction set: its register type, lane count and the handful of operations
    /// a tile needs. Every method is inlined into a function compiled for the set.
    trait Vector {
        type V: Copy;
        type Mask: Copy;
        const LANES: usize;
        /// Rows per full tile (accumulators: `ROWS × 2` vectors, within the register file).
        const ROWS: usize;
        /// Row stride of `b` (floats) from which its rows are copied together before use: this
        /// far apart and more, a panel's rows fall into too few sets of a 32 KiB L1 cache.
        const FAR_ROWS: usize;
        /// Vectors per tile row for products of at most [`Vector::FEW_ROWS`] rows (tiles of
        /// four rows and fewer): wide enough to make up for few rows, narrow enough that the
        /// accumulators stay in registers.
        const FEW_ROWS_WIDTH: usize;
        /// The most rows of `a` that [`Vector::FEW_ROWS_WIDTH`] serves better than full tiles.
        const FEW_ROWS: usize;
        fn mask(active: usize) -> Self::Mask;
        fn full() -> Self::Mask;
        unsafe fn load(p: *const f32, m: Self::Mask) -> Self::V;
        unsafe fn store(p: *mut f32, m: Self::Mask, v: Self::V);
        unsafe fn splat(x: f32) -> Self::V;
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    }

    struct Avx512;
    impl Vector for Avx512 {
        type V = __m512;
        type Mask = __mmask16;
        const LANES: usize = 16;
        const ROWS: usize = 12;
        const FAR_ROWS: usize = 256;
        const FEW_ROWS_WIDTH: usize = 4;
        const FEW_ROWS: usize = 4;
        #[inline(always)]
        fn mask(active: usize) -> __mmask16 {
            ((1u32 << active) - 1) as __mmask16
        }
        #[inline(always)]
        fn full() -> __mmask16 {
            0xffff
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, m: __mmask16) -> __m512 {
            _mm512_maskz_loadu_ps(m, p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, m: __mmask16, v: __m512) {
            _mm512_mask_storeu_ps(p, m, v)
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
    }

    struct Avx2;

    /// An AVX2 lane mask and whether it takes every lane: a full vector moves with a plain load
    /// or store (`vmaskmovps` costs more on AMD CPUs, its stores many times more).
    #[derive(Clone, Copy)]
    struct Avx2Mask {
        lanes: __m256i,
        all: bool,
    }

    impl Vector for Avx2 {
        type V = __m256;
        type Mask = Avx2Mask;
        const LANES: usize = 8;
        const ROWS: usize = 6;
        const FAR_ROWS: usize = 128;
        const FEW_ROWS_WIDTH: usize = 2;
        // Eight rows as 6 + 2 read each vector of `b` twice, the second time for two rows only.
        const FEW_ROWS: usize = 8;
        #[inline(always)]
        fn mask(active: usize) -> Avx2Mask {
            const LANES: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
            // SAFETY: eight lanes of a 16-lane table, starting at most 8 in.
            let lanes = unsafe { _mm256_loadu_si256(LANES[8 - active..].as_ptr().cast()) };
            Avx2Mask {
                lanes,
                all: active == 8,
            }
        }
        #[inline(always)]
        fn full() -> Avx2Mask {
            Self::mask(8)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32, m: Avx2Mask) -> __m256 {
            match m.all {
                true => _mm256_loadu_ps(p),
                false => _mm256_maskload_ps(p, m.lanes),
            }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, m: Avx2Mask, v: __m256) {
            match m.all {
                true => _mm256_storeu_ps(p, v),
                false => _mm256_maskstore_ps(p, m.lanes, v),
            }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
    }

    /// The product with AVX-512 tiles.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm_avx512(s: &Shape, a: *const f32, b: *const f32, c: *mut f32) {
        driver::<Avx512>(s, a, b, c)
    }

    /// The product with AVX2 tiles.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm_avx2(s: &Shape, a: *const f32, b: *const f32, c: *mut f32) {
        driver::<Avx2>(s, a, b, c)
    }

    /// Blocks of `NC` columns × `KB` reduction steps of `b` (copied to consecutive memory when
    /// several tiles read them and either its rows lie [`Vector::FAR_ROWS`] or more apart, where
    /// they would collide in the cache, or the block is deeper than [`super::DEEP`]), each
    /// swept by blocks of `MB` rows of `a`, in column panels of two vectors (one, masked, for a
    /// narrow rest), each panel by full tiles of `ROWS` rows and one shorter tile for the rows
    /// left.
    #[inline(always)]
    unsafe fn driver<X: Vector>(s: &Shape, a: *const f32, b: *const f32, c: *mut f32) {
        // No closures here: a closure is compiled without the caller's target features, and the
        // intrinsics inside it would become calls.
        // Few rows give few accumulators per tile: wider panels make up for it.
        let few = s.m <= X::FEW_ROWS;
        let width = if few { X::FEW_ROWS_WIDTH } else { 2 } * X::LANES;
        let packing = !few && s.m > X::ROWS && (s.ldb >= X::FAR_ROWS || s.k.min(KB) > DEEP);
        let mut packed = Vec::new();
        for jc in (0..s.n).step_by(NC) {
            let nc = NC.min(s.n - jc);
            for pc in (0..s.k).step_by(KB) {
                let depth = KB.min(s.k - pc);
                let b = b.add(pc * s.ldb + jc);
                if packing {
                    pack::<X>(b, s.ldb, (depth, nc, width), &mut packed);
                }
                for ic in (0..s.m).step_by(MB) {
                    let rows = MB.min(s.m - ic);
                    let a = a.add(ic * s.rsa + pc * s.csa);
                    let c = c.add(ic * s.ldc + jc);
                    for jp in (0..nc).step_by(width) {
                        let cols = width.min(nc - jp);
                        let (bp, ldb) = if packing {
                            (packed.as_ptr().add(jp * depth), width)
                        } else {
                            (b.add(jp), s.ldb)
                        };
                        let at = (a, bp, c.add(jp));
                        let last = X::mask(cols - (cols - 1) / X::LANES * X::LANES);
                        match ((cols - 1) / X::LANES, few) {
                            (0, _) => panel::<X, 1>(rows, depth, at, (s, ldb), last),
                            (1, false) => panel::<X, 2>(rows, depth, at, (s, ldb), last),
                            (1, true) => few_rows::<X, 2>(rows, depth, at, (s, ldb), last),
                            (2, _) => few_rows::<X, 3>(rows, depth, at, (s, ldb), last),
                            _ => few_rows::<X, 4>(rows, depth, at, (s, ldb), last),
                        }
                    }
                }
            }
        }
    }

    /// Copies `depth` rows of `cols` columns of `b` (row stride `ldb`) to `packed` as panels
    /// of `width` columns, each `depth` rows of `width` floats (zero beyond `cols`), a vector at
    /// a time (a call to `memcpy` and `memset` per panel row cost a tenth of a decoder's time).
    #[inline(always)]
    unsafe fn pack<X: Vector>(
        b: *const f32,
        ldb: usize,
        (depth, cols, width): (usize, usize, usize),
        packed: &mut Vec<f32>,
    ) {
        let len = cols.div_ceil(width) * width * depth;
        if packed.len() < len {
            packed.resize(len, 0.0);
        }
        let out = packed.as_mut_ptr();
        for p in 0..depth {
            let row = b.add(p * ldb);
            for jp in (0..cols).step_by(width) {
                let dst = out.add(jp * depth + p * width);
                for v in (0..width).step_by(X::LANES) {
                    let active = cols.saturating_sub(jp + v).min(X::LANES);
                    let x = X::load(row.add(jp + v), X::mask(active));
                    X::store(dst.add(v), X::full(), x);
                }
            }
        }
    }

    /// [`panel`] for a short `a` (at most [`Vector::FEW_ROWS`] rows) and wide panels: tiles of
    /// four rows and one of the rows left.
    #[inline(always)]
    unsafe fn few_rows<X: Vector, const NV: usize>(
        rows: usize,
        depth: usize,
        (a, b, c): (*const f32, *const f32, *mut f32),
        (s, ldb): (&Shape, usize),
        last: X::Mask,
    ) {
        for i in (0..rows).step_by(4) {
            let at = (a.add(i * s.rsa), b, c.add(i * s.ldc));
            match rows - i {
                1 => tile::<X, 1, NV>(depth, at, (s, ldb), last),
                2 => tile::<X, 2, NV>(depth, at, (s, ldb), last),
                3 => tile::<X, 3, NV>(depth, at, (s, ldb), last),
                _ => tile::<X, 4, NV>(depth, at, (s, ldb), last),
            }
        }
    }

    /// `rows` rows of one column panel of `NV` vectors, the last masked by `last`.
    #[inline(always)]
    unsafe fn panel<X: Vector, const NV: usize>(
        rows: usize,
        depth: usize,
        (a, b, c): (*const f32, *const f32, *mut f32),
        (s, ldb): (&Shape, usize),
        last: X::Mask,
    ) {
        let mut i = 0;
        while i + X::ROWS <= rows {
            let at = (a.add(i * s.rsa), b, c.add(i * s.ldc));
            match X::ROWS {
                12 => tile::<X, 12, NV>(depth, at, (s, ldb), last),
                8 => tile::<X, 8, NV>(depth, at, (s, ldb), last),
                _ => tile::<X, 6, NV>(depth, at, (s, ldb), last),
            }
            i += X::ROWS;
        }
        let at = (a.add(i * s.rsa), b, c.add(i * s.ldc));
        match rows - i {
            0 => {}
            1 => tile::<X, 1, NV>(depth, at, (s, ldb), last),
            2 => tile::<X, 2, NV>(depth, at, (s, ldb), last),
            3 => tile::<X, 3, NV>(depth, at, (s, ldb), last),
            4 => tile::<X, 4, NV>(depth, at, (s, ldb), last),
            5 => tile::<X, 5, NV>(depth, at, (s, ldb), last),
            6 => tile::<X, 6, NV>(depth, at, (s, ldb), last),
            7 => tile::<X, 7, NV>(depth, at, (s, ldb), last),
            8 => tile::<X, 8, NV>(depth, at, (s, ldb), last),
            9 => tile::<X, 9, NV>(depth, at, (s, ldb), last),
            10 => tile::<X, 10, NV>(depth, at, (s, ldb), last),
            _ => tile::<X, 11, NV>(depth, at, (s, ldb), last),
        }
    }

    /// `R` rows × `NV` vectors of `c`, accumulated in registers over `depth` reduction steps.
    #[inline(always)]
    unsafe fn tile<X: Vector, const R: usize, const NV: usize>(
        depth: usize,
        (a, b, c): (*const f32, *const f32, *mut f32),
        (s, ldb): (&Shape, usize),
        last: X::Mask,
    ) {
        let mut masks = [X::full(); NV];
        masks[NV - 1] = last;
        let mut acc = [[X::splat(0.0); NV]; R];
        for (i, row) in acc.iter_mut().enumerate() {
            for (v, x) in row.iter_mut().enumerate() {
                *x = X::load(c.add(i * s.ldc + v * X::LANES), masks[v]);
            }
        }
        // One pointer per row of `a`: a broadcast is then one address, not a chain of additions.
        let mut a_rows = [a; R];
        for (i, r) in a_rows.iter_mut().enumerate() {
            *r = a.add(i * s.rsa);
        }
        let mut bv = [X::splat(0.0); NV];
        for p in 0..depth {
            let bp = b.add(p * ldb);
            for (v, x) in bv.iter_mut().enumerate() {
                *x = X::load(bp.add(v * X::LANES), masks[v]);
            }
            let at = p * s.csa;
            for (row, &ar) in acc.iter_mut().zip(&a_rows) {
                let av = X::splat(*ar.add(at));
                for (x, &bv) in row.iter_mut().zip(&bv) {
                    *x = X::fma(av, bv, *x);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                X::store(c.add(i * s.ldc + v * X::LANES), masks[v], x);
            }
        }
    }

    /// [`super::gemm_nt_partial`] with AVX-512 vectors (one per 16 lanes), 4 × 4 tiles.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn nt_avx512(
        shape: (usize, usize, usize, usize, usize),
        a: *const f32,
        b: *const f32,
        partial: *mut f32,
    ) {
        nt_driver::<Avx512, 4, 4>(shape, a, b, partial)
    }

    /// [`super::gemm_nt_partial`] with AVX2 vectors (two per 16 lanes), 2 × 2 tiles.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn nt_avx2(
        shape: (usize, usize, usize, usize, usize),
        a: *const f32,
        b: *const f32,
        partial: *mut f32,
    ) {
        nt_driver::<Avx2, 2, 2>(shape, a, b, partial)
    }

    /// Tiles of `RA` rows of `a` × `RB` rows of `b`, and shorter ones at the edges.
    #[inline(always)]
    unsafe fn nt_driver<X: Vector, const RA: usize, const RB: usize>(
        (m, n, k, lda, ldb): (usize, usize, usize, usize, usize),
        a: *const f32,
        b: *const f32,
        partial: *mut f32,
    ) {
        let mut i = 0;
        while i < m {
            let ra = RA.min(m - i);
            let mut j = 0;
            while j < n {
                let rb = RB.min(n - j);
                let at = (
                    a.add(i * lda),
                    b.add(j * ldb),
                    partial.add((i * n + j) * 16),
                );
                let s = (k, lda, ldb, n);
                match (ra, rb) {
                    (4, 4) => nt_tile::<X, 4, 4>(s, at),
                    (4, 3) => nt_tile::<X, 4, 3>(s, at),
                    (4, 2) => nt_tile::<X, 4, 2>(s, at),
                    (4, _) => nt_tile::<X, 4, 1>(s, at),
                    (3, 4) => nt_tile::<X, 3, 4>(s, at),
                    (3, 3) => nt_tile::<X, 3, 3>(s, at),
                    (3, 2) => nt_tile::<X, 3, 2>(s, at),
                    (3, _) => nt_tile::<X, 3, 1>(s, at),
                    (2, 4) => nt_tile::<X, 2, 4>(s, at),
                    (2, 3) => nt_tile::<X, 2, 3>(s, at),
                    (2, 2) => nt_tile::<X, 2, 2>(s, at),
                    (2, _) => nt_tile::<X, 2, 1>(s, at),
                    (_, 4) => nt_tile::<X, 1, 4>(s, at),
                    (_, 3) => nt_tile::<X, 1, 3>(s, at),
                    (_, 2) => nt_tile::<X, 1, 2>(s, at),
                    _ => nt_tile::<X, 1, 1>(s, at),
                }
                j += rb;
            }
            i += ra;
        }
    }

    /// `RA × RB` outputs' 16 partial sums (`16 / LANES` vectors each) in registers while the
    /// reduction runs, 16 steps at a time, the last group masked (its own step, so that the
    /// others load without masks).
    #[inline(always)]
    unsafe fn nt_tile<X: Vector, const RA: usize, const RB: usize>(
        (k, lda, ldb, n): (usize, usize, usize, usize),
        (a, b, partial): (*const f32, *const f32, *mut f32),
    ) {
        let groups = 16 / X::LANES;
        let mut acc = [[[X::splat(0.0); 2]; RB]; RA];
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, out) in row.iter_mut().enumerate() {
                for (g, x) in out.iter_mut().enumerate().take(groups) {
                    *x = X::load(partial.add((i * n + j) * 16 + g * X::LANES), X::full());
                }
            }
        }
        let full = k / 16 * 16;
        for p in (0..full).step_by(16) {
            nt_step::<X, RA, RB>(&mut acc, (a, b), (p, lda, ldb), [X::full(); 2]);
        }
        if full < k {
            let mut masks = [X::full(); 2];
            for (g, m) in masks.iter_mut().enumerate().take(groups) {
                *m = X::mask((k - full).saturating_sub(g * X::LANES).min(X::LANES));
            }
            nt_step::<X, RA, RB>(&mut acc, (a, b), (full, lda, ldb), masks);
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, out) in row.iter().enumerate() {
                for (g, &x) in out.iter().enumerate().take(groups) {
                    X::store(partial.add((i * n + j) * 16 + g * X::LANES), X::full(), x);
                }
            }
        }
    }

    /// Reduction steps `p..p + 16` of an [`nt_tile`], one group of lanes at a time (a group's
    /// vectors of `a` and `b`, then its fused multiply-adds: few registers live at once).
    #[inline(always)]
    unsafe fn nt_step<X: Vector, const RA: usize, const RB: usize>(
        acc: &mut [[[X::V; 2]; RB]; RA],
        (a, b): (*const f32, *const f32),
        (p, lda, ldb): (usize, usize, usize),
        masks: [X::Mask; 2],
    ) {
        for (g, &mask) in masks.iter().enumerate().take(16 / X::LANES) {
            let (mut av, mut bv) = ([X::splat(0.0); RA], [X::splat(0.0); RB]);
            for (i, x) in av.iter_mut().enumerate() {
                *x = X::load(a.add(i * lda + p + g * X::LANES), mask);
            }
            for (j, x) in bv.iter_mut().enumerate() {
                *x = X::load(b.add(j * ldb + p + g * X::LANES), mask);
            }
            for (row, &x) in acc.iter_mut().zip(&av) {
                for (out, &y) in row.iter_mut().zip(&bv) {
                    out[g] = X::fma(x, y, out[g]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A product on one kind of tile.
    type Product = fn(&Shape, &[f32], &[f32], &mut [f32]);

    /// Every tile this CPU can run, by name.
    fn variants() -> Vec<(&'static str, Product)> {
        let mut v: Vec<(&'static str, Product)> = vec![("portable", portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(("avx512", |s, a, b, c| unsafe {
                    x86::gemm_avx512(s, a.as_ptr(), b.as_ptr(), c.as_mut_ptr())
                }));
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(("avx2", |s, a, b, c| unsafe {
                    x86::gemm_avx2(s, a.as_ptr(), b.as_ptr(), c.as_mut_ptr())
                }));
            }
        }
        v
    }

    #[test]
    fn outputs_are_fused_chains_in_reduction_order_on_every_tile_and_shape() {
        for (m, n, k) in [
            (1, 1, 1),
            (3, 100, 37),
            (70, 33, 300),
            (9, 2, 513),
            (64, 128, 100),
            (13, 17, 5),
            (8, 48, 260),
            // Five to eight rows: on AVX2, a tile of four rows and one of the rest.
            (6, 20, 30),
            // Rows of `b` 1 KiB apart and more, and more rows than a tile: `b` is packed.
            (20, 300, 40),
            // Rows 520 bytes apart: packed for AVX2 only.
            (9, 130, 20),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 19) as f32 * 0.13 - 1.1)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 23) as f32 * 0.07 - 0.8)
                .collect();
            let init: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.01).collect();
            // `a` read transposed (a[i][p] at p * m + i), `c` with a wider row stride than `n`
            // whose extra columns must stay untouched.
            let ldc = n + 3;
            let mut want = vec![-7f32; m * ldc];
            for i in 0..m {
                for j in 0..n {
                    let mut acc = init[i * n + j];
                    for p in 0..k {
                        acc = a[p * m + i].mul_add(b[p * n + j], acc);
                    }
                    want[i * ldc + j] = acc;
                }
            }
            let shape = Shape {
                m,
                n,
                k,
                rsa: 1,
                csa: m,
                ldb: n,
                ldc,
            };
            for (name, run) in variants() {
                let mut c = vec![-7f32; m * ldc];
                for i in 0..m {
                    c[i * ldc..i * ldc + n].copy_from_slice(&init[i * n..(i + 1) * n]);
                }
                run(&shape, &a, &b, &mut c);
                let same = c.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{name} differs on {m}×{n}×{k}");
            }
            let mut c = init.clone();
            gemm((m, n, k), &a, (1, m), &b, n, &mut c, n);
            assert_eq!(
                c[(m - 1) * n + n - 1].to_bits(),
                want[(m - 1) * ldc + n - 1].to_bits()
            );
        }
    }

    #[test]
    fn nt_partials_are_lane_chains_on_every_tile_shape_and_split() {
        for (m, n, k) in [
            (1, 1, 1),
            (2, 64, 8100),
            (5, 7, 37),
            (4, 100, 33),
            (9, 6, 160),
            // Three rows of `a` (a tile's height on AVX-512); reductions ending in one AVX2
            // vector and a lane, or half a vector.
            (3, 5, 25),
            (3, 5, 20),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 19) as f32 * 0.13 - 1.1)
                .collect();
            let b: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5) % 23) as f32 * 0.07 - 0.8)
                .collect();
            let mut want = vec![0f32; m * n * NT_LANES];
            for i in 0..m {
                for j in 0..n {
                    for p in 0..k {
                        let v = &mut want[(i * n + j) * NT_LANES + p % NT_LANES];
                        *v = a[i * k + p].mul_add(b[j * k + p], *v);
                    }
                }
            }
            let mut variants: Vec<(&str, Vec<f32>)> = Vec::new();
            let mut portable = vec![0f32; m * n * NT_LANES];
            portable_nt((m, n, k), (&a, k), (&b, k), &mut portable);
            variants.push(("portable", portable));
            let mut dispatched = vec![0f32; m * n * NT_LANES];
            gemm_nt_partial((m, n, k), (&a, k), (&b, k), &mut dispatched);
            variants.push(("dispatched", dispatched));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let mut avx2 = vec![0f32; m * n * NT_LANES];
                // SAFETY: the CPU has AVX2 and FMA; the buffers fit the shape.
                unsafe { x86::nt_avx2((m, n, k, k, k), a.as_ptr(), b.as_ptr(), avx2.as_mut_ptr()) };
                variants.push(("avx2", avx2));
            }
            // The reduction in two calls, split at a multiple of 16.
            let cut = (k / 2) / NT_LANES * NT_LANES;
            let mut split = vec![0f32; m * n * NT_LANES];
            gemm_nt_partial((m, n, cut), (&a, k), (&b, k), &mut split);
            gemm_nt_partial((m, n, k - cut), (&a[cut..], k), (&b[cut..], k), &mut split);
            variants.push(("split", split));
            for (name, got) in variants {
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{name} differs on {m}×{n}×{k}");
            }
            let mut c = vec![1f32; m * n];
            gemm_nt((m, n, k), (&a, k), (&b, k), &mut c, n, &mut Vec::new());
            let last = &want[(m * n - 1) * NT_LANES..];
            assert_eq!(c[m * n - 1], 1.0 + last.iter().fold(0.0, |s, &v| s + v));
        }
    }
}
