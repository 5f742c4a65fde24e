//! AVX2 + FMA + F16C kernels (Haswell and later, Zen and later).
//!
//! Integer dot products: 4-bit weights are unpacked to unsigned bytes and multiplied with the
//! signed int8 activations by `vpmaddubsw`; the Q4_0 offset of 8 is removed in the 16-bit
//! domain by subtracting `maddubs(8, x)`, computed once per token block, so no sign tricks are
//! needed per (row, token) pair. Prefill runs tiles of 4 weight rows x 2 tokens so each unpacked
//! weight block and each loaded activation block is used several times from registers.
//!
//! Every entry point is a safe wrapper around a `#[target_feature]` function; the wrappers are
//! reachable only through the table returned by [`avx2`], which exists only when the CPU has
//! the features (checked at runtime).

use crate::kernels::{check_gemm, Kernels};
use crate::quant::{BlockQ4K, BlockQ4_0, BlockQ8A, BlockQ8_0, QK};
use half::f16;
use std::arch::x86_64::*;

/// The AVX2 table, if this CPU has AVX2, FMA and F16C.
pub fn avx2() -> Option<&'static Kernels> {
    let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
    ok.then_some(&AVX2)
}

/// AVX2 plus AVX-VNNI (`vpdpbusd` on 256-bit registers: Alder Lake, Zen 4 and later).
pub fn avx_vnni() -> Option<&'static Kernels> {
    (avx2().is_some() && is_x86_feature_detected!("avxvnni")).then_some(&AVX_VNNI)
}

static AVX_VNNI: Kernels = Kernels {
    isa: "avx-vnni",
    gemm_q4_0: gemm_q4_0_vnni,
    gemm_q4k: gemm_q4k_vnni,
    gemm_q8_0: gemm_q8_0_vnni,
    gemv_q4_0r16: Some(gemv_q4_0r16_vnni),
    ..AVX2
};

/// AVX2 code paths compiled for AVX-512 VNNI + VL (Ice Lake, Zen 4 and later): 256-bit
/// `vpdpbusd` with 32 vector registers.
pub fn avx512_vnni() -> Option<&'static Kernels> {
    let ok = ["avx512f", "avx512vl", "avx512bw", "avx512vnni"].iter().all(|f| match *f {
        "avx512f" => is_x86_feature_detected!("avx512f"),
        "avx512vl" => is_x86_feature_detected!("avx512vl"),
        "avx512bw" => is_x86_feature_detected!("avx512bw"),
        _ => is_x86_feature_detected!("avx512vnni"),
    });
    (avx2().is_some() && ok).then_some(&AVX512_VNNI)
}

static AVX512_VNNI: Kernels = Kernels {
    isa: "avx512-vnni",
    gemm_q4_0: gemm_q4_0_avx512,
    gemm_q4k: gemm_q4k_avx512,
    gemm_q8_0: gemm_q8_0_avx512,
    prefill_tokens: usize::MAX,
    gemv_q4_0r16: Some(gemv_q4_0r16_zmm),
    dot_tiles_q4: super::kv_q4::dot_tiles_zmm,
    axpy_tiles_q4: super::kv_q4::axpy_tiles_zmm,
    ..AVX2
};

/// AVX-512 VNNI plus VBMI (Ice Lake, Zen 4 and later): single-token Q4_0, Q4_K and Q8_0
/// products on 512-bit registers, where byte permutes unpack 18- and 34-byte blocks cheaply (see
/// `q4_0_zmm`, `q4k_zmm`, `q8_0_zmm`).
pub fn avx512_vbmi() -> Option<&'static Kernels> {
    (avx512_vnni().is_some() && is_x86_feature_detected!("avx512vbmi")).then_some(&AVX512_VBMI)
}

static AVX512_VBMI: Kernels = Kernels {
    isa: "avx512-vbmi",
    gemm_q4_0: gemm_q4_0_zmm,
    gemm_q4k: gemm_q4k_zmm,
    gemm_q8_0: gemm_q8_0_zmm,
    ..AVX512_VNNI
};

static AVX2: Kernels = Kernels {
    isa: "avx2",
    quantize_q8a,
    gemm_q4_0: gemm_q4_0_avx2,
    gemm_q8_0,
    gemm_q4k,
    prefill_tokens: 64,
    gemv_q4_0r16: Some(gemv_q4_0r16_avx2),
    dot_f32,
    dot_f16,
    axpy_f32,
    axpy_f16,
    xcorr_f32,
    dot_i8,
    axpy_i8,
    dot_rows_f16,
    axpy_rows_f16,
    dot_rows_i8,
    axpy_rows_i8,
    dot_tiles_q4: super::kv_q4::dot_tiles_avx2,
    axpy_tiles_q4: super::kv_q4::axpy_tiles_avx2,
    exp_sum,
    qk_tile,
    pv_tile,
};

// SAFETY (all wrappers below): only reachable through `AVX2`, handed out by `avx2()` after the
// runtime feature check. Slice bounds are checked in the wrappers or the callees.

fn dot_rows_f16(q: &[f32], rows: &[f16], out: &mut [f32]) {
    unsafe { dot_rows_f16_impl(q, rows, out) }
}

/// The one-row kernels inlined into one loop: no call, no bounds checks per key.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_rows_f16_impl(q: &[f32], rows: &[f16], out: &mut [f32]) {
    crate::kernels::generic::dot_rows_with(|r, q| unsafe { dot_f16_impl(r, q) }, q, rows, out)
}

fn axpy_rows_f16(p: &[f32], rows: &[f16], o: &mut [f32]) {
    unsafe { axpy_rows_f16_impl(p, rows, o) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn axpy_rows_f16_impl(p: &[f32], rows: &[f16], o: &mut [f32]) {
    crate::kernels::generic::axpy_rows_with(|w, r, o| unsafe { axpy_f16_impl(w, r, o) }, p, rows, o)
}

fn dot_rows_i8(q: &[f32], rows: &[i8], out: &mut [f32]) {
    unsafe { dot_rows_i8_impl(q, rows, out) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_rows_i8_impl(q: &[f32], rows: &[i8], out: &mut [f32]) {
    crate::kernels::generic::dot_rows_with(|r, q| unsafe { dot_i8_impl(r, q) }, q, rows, out)
}

fn axpy_rows_i8(p: &[f32], rows: &[i8], o: &mut [f32]) {
    unsafe { axpy_rows_i8_impl(p, rows, o) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn axpy_rows_i8_impl(p: &[f32], rows: &[i8], o: &mut [f32]) {
    crate::kernels::generic::axpy_rows_with(|w, r, o| unsafe { axpy_i8_impl(w, r, o) }, p, rows, o)
}

fn exp_sum(s: &mut [f32], m: f32) -> f32 {
    unsafe { exp_sum_impl(s, m) }
}

/// 8 exponentials at a time: Cephes' `expf` (range reduction by ln 2 in two parts, degree-6
/// polynomial, exponent built in the float bits), within 2 ulp of libm over the softmax's
/// range; inputs below −87.3 (including −∞, masked keys) give exactly 0.
#[target_feature(enable = "avx2,fma,f16c")]
fn exp_sum_impl(s: &mut [f32], m: f32) -> f32 {
    let mv = _mm256_set1_ps(m);
    let mut acc = _mm256_setzero_ps();
    let mut chunks = s.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: c is 8 floats.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            acc = _mm256_add_ps(acc, e);
        }
    }
    let mut sum = hsum_ps(acc);
    for v in chunks.into_remainder() {
        *v = (*v - m).exp();
        sum += *v;
    }
    sum
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> __m256 {
    let lo = _mm256_set1_ps(-87.336_54);
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
    let x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.722_83));
    let n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), _mm256_set1_ps(0.5)));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
    }
    let y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
    let pow2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(pow2)))
}

fn qk_tile(q: &[f32], kt: &[f32], d: usize, nk: usize, s: &mut [f32]) {
    unsafe { qk_tile_impl(q, kt, d, nk, s) }
}

/// The register-tiled loops compiled for AVX2 + FMA (16 ymm registers hold the 4 x 16 tile).
#[target_feature(enable = "avx2,fma")]
fn qk_tile_impl(q: &[f32], kt: &[f32], d: usize, nk: usize, s: &mut [f32]) {
    crate::kernels::generic::qk_tile_blocked(q, kt, d, nk, s)
}

fn pv_tile(p: &[f32], v: &[f32], d: usize, nk: usize, o: &mut [f32]) {
    unsafe { pv_tile_impl(p, v, d, nk, o) }
}

#[target_feature(enable = "avx2,fma")]
fn pv_tile_impl(p: &[f32], v: &[f32], d: usize, nk: usize, o: &mut [f32]) {
    crate::kernels::generic::pv_tile_blocked(p, v, d, nk, o)
}

fn quantize_q8a(x: &[f32], out: &mut [BlockQ8A]) {
    assert!(out.len() * QK >= x.len() / QK * QK);
    unsafe { quantize_q8a_impl(x, out) }
}

/// A safe gemm entry point: checks the shapes (and that `x` has `$per` activation blocks per
/// weight block), then runs the `#[target_feature]` kernels. Only reachable through the tables
/// above, after their runtime feature checks. With AVX-512, a single token goes through the
/// 512-bit gemv if given, calls of at least `packed_zmm::MIN_TOKS` tokens through the packed
/// prefill gemm if given, and the few-token calls in between (short prompts, chat turns)
/// through the row-major tiles `$tiles`.
macro_rules! gemm_entry {
    ($name:ident, $block:ty, $per:expr, $tiles:path $(, packed: $packed:path)? $(, gemv: $gemv:path)?) => {
        #[allow(clippy::too_many_arguments)]
        fn $name(
            w: &[$block],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            check_gemm(w.len(), nbw, x.len(), nbx, rows, toks, out.len(), ldo);
            assert!(nbx >= nbw * $per);
            $(if toks == 1 {
                return unsafe { $gemv(w, nbw, x, rows, out, ldo) };
            })?
            $(if toks >= super::packed_zmm::MIN_TOKS {
                return unsafe { $packed(w, nbw, x, nbx, rows, toks, out, ldo) };
            })?
            unsafe { $tiles(w, nbw, x, nbx, rows, toks, out, ldo) }
        }
    };
}

use super::packed_zmm;
gemm_entry!(gemm_q4_0_avx2, BlockQ4_0, 1, super::q4_0::gemm_avx2);
gemm_entry!(gemm_q4_0_vnni, BlockQ4_0, 1, super::q4_0::gemm_vnni);
gemm_entry!(gemm_q8_0, BlockQ8_0, 1, super::q8_0::gemm_avx2);
gemm_entry!(gemm_q8_0_vnni, BlockQ8_0, 1, super::q8_0::gemm_vnni);
gemm_entry!(gemm_q4k, BlockQ4K, 8, super::q4k::gemm_avx2);
gemm_entry!(gemm_q4k_vnni, BlockQ4K, 8, super::q4k::gemm_vnni);
gemm_entry!(gemm_q4_0_avx512, BlockQ4_0, 1, super::q4_0::gemm_avx512, packed: packed_zmm::gemm_q4_0);
gemm_entry!(gemm_q8_0_avx512, BlockQ8_0, 1, super::q8_0::gemm_avx512, packed: packed_zmm::gemm_q8_0);
gemm_entry!(gemm_q4k_avx512, BlockQ4K, 8, super::q4k::gemm_avx512, packed: packed_zmm::gemm_q4k);
gemm_entry!(gemm_q4_0_zmm, BlockQ4_0, 1, super::q4_0::gemm_avx512, packed: packed_zmm::gemm_q4_0, gemv: super::q4_0_zmm::gemv);
gemm_entry!(gemm_q8_0_zmm, BlockQ8_0, 1, super::q8_0::gemm_avx512, packed: packed_zmm::gemm_q8_0, gemv: super::q8_0_zmm::gemv);
gemm_entry!(gemm_q4k_zmm, BlockQ4K, 8, super::q4k::gemm_avx512, packed: packed_zmm::gemm_q4k, gemv: super::q4k_zmm::gemv);

// SAFETY (the three): each is only reachable through the table whose constructor checked its
// CPU features; the kernels check their bounds themselves.
fn gemv_q4_0r16_avx2(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
    unsafe { super::q4_0r16_avx2::gemv_avx2(w, nbw, x, out, ldo) }
}
fn gemv_q4_0r16_vnni(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
    unsafe { super::q4_0r16_avx2::gemv_vnni(w, nbw, x, out, ldo) }
}
fn gemv_q4_0r16_zmm(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
    unsafe { super::q4_0r16_zmm::gemv(w, nbw, x, out, ldo) }
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    unsafe { dot_f32_impl(&a[..n], &b[..n]) }
}

fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    unsafe { dot_f16_impl(&a[..n], &b[..n]) }
}

fn dot_i8(a: &[i8], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    unsafe { dot_i8_impl(&a[..n], &b[..n]) }
}

fn axpy_i8(a: f32, x: &[i8], y: &mut [f32]) {
    let n = x.len().min(y.len());
    unsafe { axpy_i8_impl(a, &x[..n], &mut y[..n]) }
}

fn axpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    unsafe { axpy_f32_impl(a, &x[..n], &mut y[..n]) }
}

fn xcorr_f32(a: &[f32], x: &[f32], out: &mut [f32]) {
    if out.len() < 32 {
        return crate::kernels::generic::xcorr_with(dot_f32, a, x, out);
    }
    assert!(x.len() + 1 >= out.len() + a.len(), "xcorr: x too short");
    // SAFETY: the assert keeps every load x[l + i], l < out.len(), i < a.len(), in bounds.
    unsafe { xcorr_f32_impl(a, x, out) }
}

fn axpy_f16(a: f32, x: &[f16], y: &mut [f32]) {
    let n = x.len().min(y.len());
    unsafe { axpy_f16_impl(a, &x[..n], &mut y[..n]) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8a_impl(x: &[f32], out: &mut [BlockQ8A]) {
    let sign = _mm256_set1_ps(-0.0);
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let p = xs.as_ptr();
        let v = unsafe {
            [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))]
        };
        let a01 = _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1]));
        let a23 = _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3]));
        let amax = hmax_ps(_mm256_max_ps(a01, a23));
        // Same scalar arithmetic as the reference, so the codes are bit-identical.
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let i = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, id)));
        let sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
        let packed = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        let q = _mm256_permutevar8x32_epi32(packed, perm);
        unsafe { _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), q) };
        b.d = d;
        b.s = d * sum as f32;
        b.sum = sum;
    }
}

/// Lags in blocks of 32 (four accumulators of 8, so the FMAs do not wait on each other); each
/// sample of `a` is broadcast once per block and multiplied into every lag of it. A last
/// partial block is moved back to end at the last lag (recomputing a few), so pitch frames'
/// ~60 lags take two full blocks instead of a latency-bound tail.
/// Requires `out.len() >= 32` (the safe wrapper takes shorter ones one lag at a time).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn xcorr_f32_impl(a: &[f32], x: &[f32], out: &mut [f32]) {
    let n = out.len();
    let mut l = 0;
    loop {
        let mut acc = [_mm256_setzero_ps(); 4];
        for (i, &ai) in a.iter().enumerate() {
            let h = _mm256_set1_ps(ai);
            for (k, acc) in acc.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(h, unsafe { _mm256_loadu_ps(x.as_ptr().add(l + i + 8 * k)) }, *acc);
            }
        }
        for (k, acc) in acc.iter().enumerate() {
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(l + 8 * k), *acc) };
        }
        if l + 32 == n {
            return;
        }
        l = (l + 32).min(n - 32);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let (pa, pb) =
                unsafe { (_mm256_loadu_ps(a.as_ptr().add(i + 8 * k)), _mm256_loadu_ps(b.as_ptr().add(i + 8 * k))) };
            *acc = _mm256_fmadd_ps(pa, pb, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        let (pa, pb) = unsafe { (_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i))) };
        acc[0] = _mm256_fmadd_ps(pa, pb, acc[0]);
        i += 8;
    }
    let mut s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for j in i..n {
        s += a[j] * b[j];
    }
    s
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_impl(a: &[f16], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let (pa, pb) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i + 8 * k).cast())),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8 * k)),
                )
            };
            *acc = _mm256_fmadd_ps(pa, pb, *acc);
        }
        i += 16;
    }
    let mut s = hsum_ps(_mm256_add_ps(acc[0], acc[1]));
    for j in i..n {
        s += f16_to_f32(a[j]) * b[j];
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f32_impl(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len();
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        unsafe {
            let py = y.as_mut_ptr().add(i);
            _mm256_storeu_ps(py, _mm256_fmadd_ps(av, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(py)));
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * x[j];
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16_impl(a: f32, x: &[f16], y: &mut [f32]) {
    let n = x.len();
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        unsafe {
            let py = y.as_mut_ptr().add(i);
            let xv = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i).cast()));
            _mm256_storeu_ps(py, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(py)));
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * f16_to_f32(x[j]);
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_i8_impl(a: &[i8], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let (pa, pb) = unsafe {
                let bytes = _mm_loadl_epi64(a.as_ptr().add(i + 8 * k).cast());
                (_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), _mm256_loadu_ps(b.as_ptr().add(i + 8 * k)))
            };
            *acc = _mm256_fmadd_ps(pa, pb, *acc);
        }
        i += 16;
    }
    let mut s = hsum_ps(_mm256_add_ps(acc[0], acc[1]));
    for j in i..n {
        s += a[j] as f32 * b[j];
    }
    s
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_i8_impl(a: f32, x: &[i8], y: &mut [f32]) {
    let n = x.len();
    let av = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        unsafe {
            let py = y.as_mut_ptr().add(i);
            let xv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(x.as_ptr().add(i).cast())));
            _mm256_storeu_ps(py, _mm256_fmadd_ps(av, xv, _mm256_loadu_ps(py)));
        }
        i += 8;
    }
    for j in i..n {
        y[j] += a * x[j] as f32;
    }
}
