//! 4-bit KV cache attention kernels (layout in `kernels::kv_q4`): 256-bit with
//! `vpmaddubsw` + `vpmaddwd` (AVX2), and 512-bit with `vpdpbusd` (AVX-512 VNNI).
//!
//! Keys: a 64-byte vector is one 4-byte word (8 dimensions) of 16 rows, so masking out the low
//! and high nibbles gives unsigned codes whose products with a broadcast word of the int8 query
//! land in one i32 lane per row: 16 scores without a horizontal sum. The −8 offset is the
//! accumulator's starting value, −8·Σq over the group, once per call.
//!
//! Values: a 64-byte vector is one group (16 dimensions) x 4 bytes of 8 rows, so with the
//! tile's int8 weights broadcast 4 at a time the lanes are output dimensions.
//!
//! Both round exactly as the scalar reference does, so they agree with it to float rounding.

use crate::kernels::kv_q4::{check_tiles, offsets, tile_bytes, word, words, GROUP, TILE_ROWS};
use half::f16;
use std::arch::x86_64::*;

/// Weights `p·s` of one (tile, group), rounded to int8 as in `kv_q4::quantize_weights`: the
/// 16 codes as bytes, their sum, and the scale; `None` when all are 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn weights(p: *const f32, s: *const f16) -> Option<([i8; 16], i32, f32)> {
    unsafe {
        let (p0, p1) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
        let s0 = _mm256_cvtph_ps(_mm_loadu_si128(s as *const __m128i));
        let s1 = _mm256_cvtph_ps(_mm_loadu_si128(s.add(8) as *const __m128i));
        let (w0, w1) = (_mm256_mul_ps(p0, s0), _mm256_mul_ps(p1, s1));
        let sign = _mm256_set1_ps(-0.0);
        let m = _mm256_max_ps(_mm256_andnot_ps(sign, w0), _mm256_andnot_ps(sign, w1));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let wmax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
        if wmax == 0.0 {
            return None;
        }
        let inv = _mm256_set1_ps(127.0 / wmax);
        let i0 = _mm256_cvtps_epi32(_mm256_mul_ps(w0, inv));
        let i1 = _mm256_cvtps_epi32(_mm256_mul_ps(w1, inv));
        let h = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0b11_01_10_00);
        let b = _mm_packs_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        let mut w8 = [0i8; 16];
        _mm_storeu_si128(w8.as_mut_ptr() as *mut __m128i, b);
        let sum = w8.iter().map(|&v| v as i32).sum();
        Some((w8, sum, wmax / 127.0))
    }
}

pub(super) fn dot_tiles_avx2(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32]) {
    let nt = check_tiles(q8.len(), out.len(), codes.len(), scales.len());
    // SAFETY: reachable only through kernel tables built after the AVX2 feature check; sizes
    // checked above.
    unsafe { dot_tiles_avx2_impl(q8, codes, scales, out, nt) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_tiles_avx2_impl(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32], nt: usize) {
    let d = q8.len();
    let (qw, off) = (words(q8), offsets(q8));
    let m4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for t in 0..nt {
        let tile = codes.as_ptr().add(t * tile_bytes(d));
        let sc = scales.as_ptr().add(t * d);
        for h in 0..2 {
            let mut res = _mm256_setzero_ps();
            for g in 0..d / GROUP {
                let mut sum16 = _mm256_setzero_si256();
                for w in 2 * g..2 * g + 2 {
                    let v = _mm256_loadu_si256(tile.add(w * 64 + h * 32) as *const __m256i);
                    let lo = _mm256_and_si256(v, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(lo, _mm256_set1_epi32(qw[2 * w])));
                    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(hi, _mm256_set1_epi32(qw[2 * w + 1])));
                }
                let acc = _mm256_add_epi32(_mm256_madd_epi16(sum16, ones), _mm256_set1_epi32(off[g]));
                let s = _mm256_cvtph_ps(_mm_loadu_si128(sc.add(g * TILE_ROWS + 8 * h) as *const __m128i));
                res = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), s, res);
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(t * TILE_ROWS + 8 * h), res);
        }
    }
}

pub(super) fn axpy_tiles_avx2(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32]) {
    let nt = check_tiles(o.len(), p.len(), codes.len(), scales.len());
    // SAFETY: as for `dot_tiles_avx2`.
    unsafe { axpy_tiles_avx2_impl(p, codes, scales, o, nt) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_tiles_avx2_impl(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32], nt: usize) {
    let d = o.len();
    let m4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for t in 0..nt {
        let tile = codes.as_ptr().add(t * tile_bytes(d));
        let sc = scales.as_ptr().add(t * d);
        for g in 0..d / GROUP {
            let Some((w8, wsum, ws)) = weights(p.as_ptr().add(t * TILE_ROWS), sc.add(g * TILE_ROWS)) else {
                continue;
            };
            let bw: [__m256i; 4] = std::array::from_fn(|j| _mm256_set1_epi32(word(&w8, j)));
            for h in 0..2 {
                let mut sum16 = _mm256_setzero_si256();
                for c in 0..2 {
                    let v = _mm256_loadu_si256(tile.add(c * 4 * d + g * 64 + h * 32) as *const __m256i);
                    let lo = _mm256_and_si256(v, m4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(lo, bw[2 * c]));
                    sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(hi, bw[2 * c + 1]));
                }
                let acc = _mm256_sub_epi32(_mm256_madd_epi16(sum16, ones), _mm256_set1_epi32(8 * wsum));
                let op = o.as_mut_ptr().add(g * GROUP + 8 * h);
                _mm256_storeu_ps(op, _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(ws), _mm256_loadu_ps(op)));
            }
        }
    }
}

pub(super) fn dot_tiles_zmm(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32]) {
    let nt = check_tiles(q8.len(), out.len(), codes.len(), scales.len());
    // SAFETY: reachable only through kernel tables built after the AVX-512 VNNI feature check;
    // sizes checked above.
    unsafe { dot_tiles_zmm_impl(q8, codes, scales, out, nt) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_tiles_zmm_impl(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32], nt: usize) {
    let d = q8.len();
    let (qw, off) = (words(q8), offsets(q8));
    let m4 = _mm512_set1_epi8(0x0F);
    for t in 0..nt {
        let tile = codes.as_ptr().add(t * tile_bytes(d));
        let sc = scales.as_ptr().add(t * d);
        let mut res = _mm512_setzero_ps();
        for g in 0..d / GROUP {
            let mut acc = _mm512_set1_epi32(off[g]);
            for w in 2 * g..2 * g + 2 {
                let v = _mm512_loadu_si512(tile.add(w * 64) as *const __m512i);
                let lo = _mm512_and_si512(v, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                acc = _mm512_dpbusd_epi32(acc, lo, _mm512_set1_epi32(qw[2 * w]));
                acc = _mm512_dpbusd_epi32(acc, hi, _mm512_set1_epi32(qw[2 * w + 1]));
            }
            let s = _mm512_cvtph_ps(_mm256_loadu_si256(sc.add(g * TILE_ROWS) as *const __m256i));
            res = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), s, res);
        }
        _mm512_storeu_ps(out.as_mut_ptr().add(t * TILE_ROWS), res);
    }
}

pub(super) fn axpy_tiles_zmm(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32]) {
    let nt = check_tiles(o.len(), p.len(), codes.len(), scales.len());
    // SAFETY: as for `dot_tiles_zmm`.
    unsafe { axpy_tiles_zmm_impl(p, codes, scales, o, nt) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn axpy_tiles_zmm_impl(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32], nt: usize) {
    let d = o.len();
    let m4 = _mm512_set1_epi8(0x0F);
    for t in 0..nt {
        let tile = codes.as_ptr().add(t * tile_bytes(d));
        let sc = scales.as_ptr().add(t * d);
        for g in 0..d / GROUP {
            let Some((w8, wsum, ws)) = weights(p.as_ptr().add(t * TILE_ROWS), sc.add(g * TILE_ROWS)) else {
                continue;
            };
            let mut acc = _mm512_set1_epi32(-8 * wsum);
            for c in 0..2 {
                let v = _mm512_loadu_si512(tile.add(c * 4 * d + g * 64) as *const __m512i);
                let lo = _mm512_and_si512(v, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                acc = _mm512_dpbusd_epi32(acc, lo, _mm512_set1_epi32(word(&w8, 2 * c)));
                acc = _mm512_dpbusd_epi32(acc, hi, _mm512_set1_epi32(word(&w8, 2 * c + 1)));
            }
            let op = o.as_mut_ptr().add(g * GROUP);
            _mm512_storeu_ps(op, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(ws), _mm512_loadu_ps(op)));
        }
    }
}
