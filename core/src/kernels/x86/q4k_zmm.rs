//! Q4_K x int8 matrix-vector product on 512-bit registers (AVX-512 VNNI), for single-token
//! decode.
//!
//! A Q4_K super-block is 144 bytes: f16 `d` and `dmin`, twelve bytes of packed 6-bit sub-block
//! scales and mins, and 128 bytes of nibbles in which each 32-byte chunk holds sub-block 2k in
//! its low nibbles and 2k+1 in its high ones. Two 64-byte loads therefore give four vectors of
//! two sub-blocks each (0|2, 1|3, 4|6, 5|7) once masked and shifted; the activations are
//! prepared once per call in that order, so `vpdpbusd` leaves 8 partial sums per sub-block in
//! place. The scales are unpacked with 32-bit integer ops (as in GGML), multiplied by the
//! activation scales as one 8-wide vector, and spread over the lanes with `vpermps`; the mins
//! meet the activation sums in one more 8-wide FMA. As for Q4_0, rows are read once in memory
//! order with a software prefetch ahead of them.

use super::{gemv_rows, prefetch3, DecodePlan};
use crate::quant::{BlockQ4K, BlockQ8A};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// The 8 activation blocks under one weight super-block, in the weights' lane order.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct XSuper {
    /// Sub-block pairs (0|2), (1|3), (4|6), (5|7).
    q: [[i8; 64]; 4],
    /// Scale of each 32-wide activation block.
    d: [f32; 8],
    /// Scaled sum of each block (d · Σq): meets the sub-block mins.
    s: [f32; 8],
}

/// Lane spreads of the 8 per-sub-block factors onto the four pair vectors.
const SPREAD: [[i32; 16]; 4] = {
    let pairs = [(0, 2), (1, 3), (4, 6), (5, 7)];
    let mut out = [[0i32; 16]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 16 {
            out[k][i] = if i < 8 { pairs[k].0 } else { pairs[k].1 };
            i += 1;
        }
        k += 1;
    }
    out
};

/// `out[r * ldo] = W[r] · x` for one token; `w` holds `rows` rows of `nbw` super-blocks and
/// `x` at least `8 * nbw` activation blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
pub(super) unsafe fn gemv(w: &[BlockQ4K], nbw: usize, x: &[BlockQ8A], rows: usize, out: &mut [f32], ldo: usize) {
    thread_local! {
        static SUPERS: RefCell<Vec<XSuper>> = const { RefCell::new(Vec::new()) };
    }
    let prep = |xs: &mut Vec<XSuper>| xs.extend(x[..8 * nbw].chunks_exact(8).map(prepare));
    // One row at a time: a 4-row Q4_K kernel (activations loaded once per super-block)
    // measured slower on Zen 4, tg64 14.5-16.0 against 16.4 tok/s, as 4 interleaved streams
    // defeat the prefetcher and one 144-byte super-block already amortizes its loads.
    gemv_rows(&SUPERS, prep, w, nbw, rows, out, ldo, None, |w, xs, plan| row(w, xs, plan))
}

fn prepare(b: &[BlockQ8A]) -> XSuper {
    let mut xs = XSuper { q: [[0; 64]; 4], d: [0.0; 8], s: [0.0; 8] };
    for (k, (a, c)) in [(0, 2), (1, 3), (4, 6), (5, 7)].into_iter().enumerate() {
        xs.q[k][..32].copy_from_slice(&b[a].qs);
        xs.q[k][32..].copy_from_slice(&b[c].qs);
    }
    for (i, blk) in b.iter().enumerate() {
        xs.d[i] = blk.d;
        xs.s[i] = blk.s;
    }
    xs
}

/// The 8 six-bit scales and the 8 mins of a super-block as bytes (GGML's unpacking).
#[inline]
fn unpack_scales(s: &[u8; 12]) -> (u64, u64) {
    const M1: u32 = 0x3f3f_3f3f;
    const M2: u32 = 0x0f0f_0f0f;
    const M3: u32 = 0x0303_0303;
    let u = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let sc = (u0 & M1) as u64 | (((u2 & M2) | (((u0 >> 6) & M3) << 4)) as u64) << 32;
    let mn = (u1 & M1) as u64 | ((((u2 >> 4) & M2) | (((u1 >> 6) & M3) << 4)) as u64) << 32;
    (sc, mn)
}

/// 8 unsigned bytes as 8 floats.
#[inline]
#[target_feature(enable = "avx2")]
fn bytes_to_f32x8(v: u64) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)))
}

/// One weight row (`w.len()` super-blocks) against the prepared activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
fn row(w: &[BlockQ4K], xs: &[XSuper], plan: DecodePlan) -> f32 {
    assert!(xs.len() >= w.len());
    let m4 = _mm512_set1_epi8(0x0F);
    // SAFETY: each spread table is 64 bytes.
    let spread: [__m512i; 4] = std::array::from_fn(|k| unsafe { _mm512_loadu_si512(SPREAD[k].as_ptr().cast()) });
    let mut acc = _mm512_setzero_ps();
    let mut acc_min = _mm256_setzero_ps();
    for (b, x) in w.iter().zip(xs) {
        // SAFETY: loads stay inside the block and the prepared activations; prefetches never
        // fault.
        unsafe {
            prefetch3((b as *const BlockQ4K).cast(), plan);
            let q0 = _mm512_loadu_si512(b.qs.as_ptr().cast());
            let q1 = _mm512_loadu_si512(b.qs.as_ptr().add(64).cast());
            let parts = [
                _mm512_and_si512(q0, m4),
                _mm512_and_si512(_mm512_srli_epi16::<4>(q0), m4),
                _mm512_and_si512(q1, m4),
                _mm512_and_si512(_mm512_srli_epi16::<4>(q1), m4),
            ];
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128((b.d.to_bits() as u32 | (b.dmin.to_bits() as u32) << 16) as i32));
            let (d, dmin) = (_mm256_broadcastss_ps(dd), _mm256_broadcastss_ps(_mm_movehdup_ps(dd)));
            let (sc, mn) = unpack_scales(&b.scales);
            let factors = _mm256_mul_ps(_mm256_mul_ps(bytes_to_f32x8(sc), d), _mm256_load_ps(x.d.as_ptr()));
            acc_min = _mm256_fmadd_ps(_mm256_mul_ps(bytes_to_f32x8(mn), dmin), _mm256_load_ps(x.s.as_ptr()), acc_min);
            let factors = _mm512_castps256_ps512(factors);
            for k in 0..4 {
                let xq = _mm512_load_si512(x.q[k].as_ptr().cast());
                let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), parts[k], xq);
                let f = _mm512_permutexvar_ps(spread[k], factors);
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), f, acc);
            }
        }
    }
    let m = _mm_add_ps(_mm256_castps256_ps128(acc_min), _mm256_extractf128_ps::<1>(acc_min));
    let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    _mm512_reduce_add_ps(acc) - _mm_cvtss_f32(m)
}
