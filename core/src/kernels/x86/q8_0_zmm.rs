//! Q8_0 x int8 matrix-vector product on 512-bit registers (AVX-512 VNNI + VBMI), for
//! single-token decode.
//!
//! Q8_0 blocks are 34 bytes (f16 scale, 32 signed quants), so a group of 4 blocks (136 bytes)
//! comes in with two 64-byte loads and one 8-byte load, and `vpermt2b` picks out blocks 0-1's
//! and 2-3's quants (one block per 256-bit half) and `vpermt2w` the four scales. `vpdpbusd`
//! multiplies unsigned by signed bytes, so the weights are flipped to unsigned (w + 128, an
//! xor) and the accumulator starts at −128·Σx per lane, prepared once per call with the
//! activations in matching order. As for Q4_0, the block scales are spread over the lanes
//! instead of reducing sums, and rows are read once in memory order with a software prefetch.

use super::{byte_mask, gemv_rows, prefetch3, quant_index, scale_index, DecodePlan};
use crate::quant::{BlockQ8A, BlockQ8_0};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Activations of 2 consecutive blocks in the lane order of the weight vectors.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct XPair {
    q: [i8; 64],
    /// −128 · (sum of the 4 activations each i32 lane multiplies): undoes the weights' flip.
    neg: [i32; 16],
    /// Each block's scale, repeated over its 8 lanes.
    d: [f32; 16],
}

/// Blocks 0-1's quants from (bytes 0-63, bytes 64-127) of a group of 4.
const Q01: [u8; 64] = quant_index(34, 32, 0, 0);
/// Blocks 2-3's quants from (bytes 64-127, bytes 128-191).
const Q23: [u8; 64] = quant_index(34, 32, 2, 64);
/// Word indices of the 4 scales (bytes 34·i) in (bytes 0-63, bytes 64-127).
const D_IDX: [u16; 32] = scale_index(34, 4);
const SPREAD01: [i32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
const SPREAD23: [i32; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];

/// `out[r * ldo] = W[r] · x` for one token. Requires `w.len() >= rows * nbw`, `x.len() >= nbw`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,f16c")]
pub(super) unsafe fn gemv(w: &[BlockQ8_0], nbw: usize, x: &[BlockQ8A], rows: usize, out: &mut [f32], ldo: usize) {
    thread_local! {
        static PAIRS: RefCell<Vec<XPair>> = const { RefCell::new(Vec::new()) };
    }
    let prep = |xs: &mut Vec<XPair>| xs.extend(x[..nbw].chunks(2).map(|c| prepare(c)));
    gemv_rows(&PAIRS, prep, w, nbw, rows, out, ldo, None, |w, xs, plan| row(w, xs, plan))
}

/// Up to 2 activation blocks (a missing second block is zero).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn prepare(blocks: &[BlockQ8A]) -> XPair {
    let mut p = XPair { q: [0; 64], neg: [0; 16], d: [0.0; 16] };
    for (i, b) in blocks.iter().enumerate() {
        p.q[32 * i..32 * i + 32].copy_from_slice(&b.qs);
        p.d[8 * i..8 * i + 8].fill(b.d);
    }
    // SAFETY: XPair's arrays are 64 bytes and 64-byte aligned.
    unsafe {
        let q = _mm512_load_si512(p.q.as_ptr().cast());
        let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), q);
        _mm512_store_si512(p.neg.as_mut_ptr().cast(), _mm512_mullo_epi32(s, _mm512_set1_epi32(-128)));
    }
    p
}

/// One weight row (`w.len()` blocks) against the prepared activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,f16c")]
fn row(w: &[BlockQ8_0], xs: &[XPair], plan: DecodePlan) -> f32 {
    let nbw = w.len();
    assert!(xs.len() >= nbw.div_ceil(2));
    let flip = _mm512_set1_epi8(-128);
    // SAFETY: the index tables are 64 bytes each.
    let (q01, q23, d_idx, s01, s23) = unsafe {
        (
            _mm512_loadu_si512(Q01.as_ptr().cast()),
            _mm512_loadu_si512(Q23.as_ptr().cast()),
            _mm512_loadu_si512(D_IDX.as_ptr().cast()),
            _mm512_loadu_si512(SPREAD01.as_ptr().cast()),
            _mm512_loadu_si512(SPREAD23.as_ptr().cast()),
        )
    };
    let mut acc = _mm512_setzero_ps();
    let mut b = 0;
    while b < nbw {
        let n = (nbw - b).min(4);
        // SAFETY: full groups read their 136 bytes; the last group uses masked loads that stop
        // at the row end (missing blocks read as zero: scale 0 against zero activations).
        // Prefetches never fault.
        unsafe {
            let p = w.as_ptr().add(b).cast::<u8>();
            prefetch3(p.cast(), plan);
            let (a, hi, c) = if n == 4 {
                (
                    _mm512_loadu_si512(p.cast()),
                    _mm512_loadu_si512(p.add(64).cast()),
                    _mm512_zextsi128_si512(_mm_loadl_epi64(p.add(128).cast())),
                )
            } else {
                let bytes = 34 * n;
                (
                    _mm512_maskz_loadu_epi8(byte_mask(bytes.min(64)), p.cast()),
                    _mm512_maskz_loadu_epi8(byte_mask(bytes.saturating_sub(64)), p.add(64).cast()),
                    _mm512_setzero_si512(),
                )
            };
            let d4 = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(a, d_idx, hi)));
            let d4 = _mm512_castps128_ps512(d4);
            let w01 = _mm512_xor_si512(_mm512_permutex2var_epi8(a, q01, hi), flip);
            acc = pair(acc, w01, _mm512_permutexvar_ps(s01, d4), &xs[b / 2]);
            if n > 2 {
                let w23 = _mm512_xor_si512(_mm512_permutex2var_epi8(hi, q23, c), flip);
                acc = pair(acc, w23, _mm512_permutexvar_ps(s23, d4), &xs[b / 2 + 1]);
            }
        }
        b += n;
    }
    _mm512_reduce_add_ps(acc)
}

/// Two blocks of one row: integer dot with the flip undone, then scaled per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair(acc: __m512, wq: __m512i, dw: __m512, x: &XPair) -> __m512 {
    // SAFETY: XPair's arrays are 64 bytes and 64-byte aligned.
    let (s, xq, dx) = unsafe {
        (_mm512_load_si512(x.neg.as_ptr().cast()), _mm512_load_si512(x.q.as_ptr().cast()), _mm512_load_ps(x.d.as_ptr()))
    };
    let s = _mm512_dpbusd_epi32(s, wq, xq);
    _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(s), acc)
}
