//! Q4_0 x int8 matrix-vector product on 512-bit registers (AVX-512 VNNI + VBMI), for
//! single-token decode.
//!
//! Decode reads every weight once per token, so it is a race between DRAM and the unpacking
//! work per byte. The 256-bit kernel spends most of its instructions rearranging: Q4_0 blocks
//! are 18 bytes (an f16 scale, then 16 bytes of nibbles), so four blocks' quants never sit in
//! one aligned vector. Here a group of 8 blocks (144 contiguous bytes) is loaded with three
//! plain loads, and `vpermt2b` picks out blocks 0-3's quants, blocks 4-7's quants and the
//! eight scales, one instruction each. Each 128-bit lane of a quant vector then holds one
//! block, so `vpdpbusd` leaves 4 partial sums per block in place; instead of reducing them,
//! the block scales are spread to the same lanes and the lanes accumulate in float. The Q4_0
//! offset of 8 is folded into the integer accumulator's starting value (−8·Σx per lane,
//! prepared once per call with the activations in matching lane order).

use super::{byte_mask, gemv_rows, prefetch3, quant_index, scale_index, DecodePlan, TILE};
use crate::quant::{BlockQ4_0, BlockQ8A};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Activations of 4 consecutive blocks in the lane order of the weight vectors.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct XChunk {
    /// Bytes 0-15 of each block's quants (pairs with the low nibbles).
    lo: [i8; 64],
    /// Bytes 16-31 (pairs with the high nibbles).
    hi: [i8; 64],
    /// −8 · (sum of the 8 activations each i32 lane multiplies): the Q4_0 offset.
    neg8: [i32; 16],
    /// Each block's scale, repeated over its 4 lanes.
    d: [f32; 16],
}

const ZERO_CHUNK: XChunk = XChunk { lo: [0; 64], hi: [0; 64], neg8: [0; 16], d: [0.0; 16] };

/// Blocks 0-3's quants from (bytes 0-63, bytes 64-127) of a group of 8.
const Q_LO: [u8; 64] = quant_index(18, 16, 0, 0);
/// Blocks 4-7 from (bytes 64-127, bytes 128-191).
const Q_HI: [u8; 64] = quant_index(18, 16, 4, 64);
/// Word indices of the 8 scales (bytes 18·i) in (bytes 0-63, bytes 64-127).
const D_IDX: [u16; 32] = scale_index(18, 8);
/// Lane spreads of 8 block scales: lanes 4i..4i+3 take scale i (blocks 0-3), then 4-7.
const SPREAD_LO: [i32; 16] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
const SPREAD_HI: [i32; 16] = [4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7];

/// `out[r * ldo] = W[r] · x` for one token. Requires `w.len() >= rows * nbw`, `x.len() >= nbw`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,f16c")]
pub(super) unsafe fn gemv(w: &[BlockQ4_0], nbw: usize, x: &[BlockQ8A], rows: usize, out: &mut [f32], ldo: usize) {
    thread_local! {
        static CHUNKS: RefCell<Vec<XChunk>> = const { RefCell::new(Vec::new()) };
    }
    let prep = |xs: &mut Vec<XChunk>| xs.extend(x[..nbw].chunks(4).map(|c| prepare(c)));
    let tile = |w: &[_], xs: &[_], plan| row_tile::<TILE>(w, nbw, xs, plan);
    gemv_rows(&CHUNKS, prep, w, nbw, rows, out, ldo, Some(&tile), |w, xs, plan| row_tile::<1>(w, nbw, xs, plan)[0])
}

/// Up to 4 activation blocks in the weights' lane order (missing blocks are zero).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn prepare(blocks: &[BlockQ8A]) -> XChunk {
    let half = |i: usize, off: usize| match blocks.get(i) {
        // SAFETY: 16 bytes at offset 0 or 16 of a 32-byte array.
        Some(b) => unsafe { _mm_loadu_si128(b.qs.as_ptr().add(off).cast()) },
        None => _mm_setzero_si128(),
    };
    let join = |off: usize| {
        let a = _mm256_set_m128i(half(1, off), half(0, off));
        let b = _mm256_set_m128i(half(3, off), half(2, off));
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b)
    };
    let (lo, hi) = (join(0), join(16));
    let eights = _mm512_set1_epi8(8);
    let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, lo), eights, hi);
    let d = |i: usize| blocks.get(i).map_or(0.0, |b| b.d);
    let mut c = ZERO_CHUNK;
    // SAFETY: XChunk is 64-byte aligned and its arrays are 64 bytes each.
    unsafe {
        _mm512_store_si512(c.lo.as_mut_ptr().cast(), lo);
        _mm512_store_si512(c.hi.as_mut_ptr().cast(), hi);
        _mm512_store_si512(c.neg8.as_mut_ptr().cast(), _mm512_sub_epi32(_mm512_setzero_si512(), s));
        let spread = _mm512_loadu_si512(SPREAD_LO.as_ptr().cast());
        let d4 = _mm512_castps128_ps512(_mm_setr_ps(d(0), d(1), d(2), d(3)));
        _mm512_store_ps(c.d.as_mut_ptr(), _mm512_permutexvar_ps(spread, d4));
    }
    c
}

/// `N` consecutive weight rows (`N * nbw` blocks) against the prepared activations. Rows
/// advance together so each activation chunk is loaded once for all `N`, and each row has its
/// own accumulator (no shared dependency chain).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,f16c")]
fn row_tile<const N: usize>(w: &[BlockQ4_0], nbw: usize, xs: &[XChunk], plan: DecodePlan) -> [f32; N] {
    assert!(w.len() >= N * nbw && xs.len() >= nbw.div_ceil(4));
    let m4 = _mm512_set1_epi8(0x0F);
    // SAFETY: the index tables are 64 bytes each.
    let (q_lo, q_hi, d_idx, spread_lo, spread_hi) = unsafe {
        (
            _mm512_loadu_si512(Q_LO.as_ptr().cast()),
            _mm512_loadu_si512(Q_HI.as_ptr().cast()),
            _mm512_loadu_si512(D_IDX.as_ptr().cast()),
            _mm512_loadu_si512(SPREAD_LO.as_ptr().cast()),
            _mm512_loadu_si512(SPREAD_HI.as_ptr().cast()),
        )
    };
    let mut acc = [_mm512_setzero_ps(); N];
    let groups = nbw / 8;
    for g in 0..groups {
        let (c0, c1) = (&xs[2 * g], &xs[2 * g + 1]);
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the group's 144 bytes are inside row i.
            unsafe {
                let p = w.as_ptr().add(i * nbw + g * 8).cast::<u8>();
                prefetch3(p, plan);
                let a = _mm512_loadu_si512(p.cast());
                let b = _mm512_loadu_si512(p.add(64).cast());
                let c = _mm512_zextsi128_si512(_mm_loadu_si128(p.add(128).cast()));
                let d8 = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(a, d_idx, b)));
                let d8 = _mm512_castps256_ps512(d8);
                let q0 = _mm512_permutex2var_epi8(a, q_lo, b);
                let q1 = _mm512_permutex2var_epi8(b, q_hi, c);
                *acc = chunk(*acc, q0, m4, _mm512_permutexvar_ps(spread_lo, d8), c0);
                *acc = chunk(*acc, q1, m4, _mm512_permutexvar_ps(spread_hi, d8), c1);
            }
        }
    }
    // The last 1-7 blocks in at most two chunks, with masked loads that stop at the row end;
    // missing blocks read as zero bytes (scale 0) against zero activations.
    let mut b = groups * 8;
    while b < nbw {
        let n = (nbw - b).min(4);
        let bytes = 18 * n;
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: masked loads touch only the `bytes` bytes of blocks b..b+n of row i.
            unsafe {
                let p = w.as_ptr().add(i * nbw + b).cast::<u8>();
                let a = _mm512_maskz_loadu_epi8(byte_mask(bytes.min(64)), p.cast());
                let hi = _mm512_maskz_loadu_epi8(byte_mask(bytes.saturating_sub(64)), p.add(64).cast());
                let d8 = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(a, d_idx, hi)));
                let q = _mm512_permutex2var_epi8(a, q_lo, hi);
                let dw = _mm512_permutexvar_ps(spread_lo, _mm512_castps256_ps512(d8));
                *acc = chunk(*acc, q, m4, dw, &xs[b / 4]);
            }
        }
        b += n;
    }
    acc.map(|a| _mm512_reduce_add_ps(a))
}

/// One 4-block chunk of one row: integer dot with the offset folded in, then scaled per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn chunk(acc: __m512, q: __m512i, m4: __m512i, dw: __m512, c: &XChunk) -> __m512 {
    let lo = _mm512_and_si512(q, m4);
    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4);
    // SAFETY: XChunk's arrays are 64 bytes and 64-byte aligned.
    let (s, xlo, xhi, dx) = unsafe {
        (
            _mm512_load_si512(c.neg8.as_ptr().cast()),
            _mm512_load_si512(c.lo.as_ptr().cast()),
            _mm512_load_si512(c.hi.as_ptr().cast()),
            _mm512_load_ps(c.d.as_ptr()),
        )
    };
    let s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(s, lo, xlo), hi, xhi);
    _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(s), acc)
}
