//! Q4_0_R16 x int8 matrix-vector product on 512-bit registers (AVX-512 VNNI), for
//! single-token decode over the interleaved layout the converter writes (`quant::interleave`).
//!
//! Lane r of each 64-byte quant vector holds 4 bytes of row r's block, so one `vpdpbusd` per
//! nibble half, with the token's 4 matching activation bytes broadcast, advances 16 rows' dot
//! products at once: per 16 rows x 32 weights (288 bytes) that is 4 loads, 8 masks and shifts,
//! 8 `vpdpbusd`, and one scale conversion and FMA, with no permutes and no horizontal sums
//! (the plain-layout kernel, `q4_0_zmm`, needs about 2.4x more instructions per weight byte).
//! The Q4_0 offset of 8 is exact in the integer accumulator: it starts at −8·Σx, the
//! activation block's integer sum.

use super::{decode_plan, prefetch_lines};
use crate::quant::interleave::{group_bytes, quants_offset, ROWS};
use crate::quant::BlockQ8A;
use std::arch::x86_64::*;

/// `out[r * ldo] = row r · x` over the whole groups of `w`; see [`crate::kernels::GemvR16Fn`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn gemv(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
    let gb = group_bytes(nbw);
    let groups = w.len().checked_div(gb).unwrap_or(0);
    assert!(x.len() >= nbw, "activations shorter than a row");
    assert!(groups == 0 || out.len() > (groups * ROWS - 1) * ldo, "output out of range");
    let plan = decode_plan();
    let m4 = _mm512_set1_epi8(0x0F);
    for g in 0..groups {
        // SAFETY: group g's `gb` bytes are inside `w` (groups = w.len() / gb); block b's scales
        // are bytes 32b..32b+32 and its quants 256 bytes at quants_offset + 256b, both inside.
        let acc = unsafe {
            let scales = w.as_ptr().add(g * gb);
            let quants = scales.add(quants_offset(nbw));
            let mut acc = _mm512_setzero_ps();
            for (b, xb) in x[..nbw].iter().enumerate() {
                let q = quants.add(256 * b);
                prefetch_lines(q, 4, plan);
                if b % 2 == 0 {
                    prefetch_lines(scales.add(32 * b), 1, plan);
                }
                let xq = xb.qs.as_ptr().cast::<i32>();
                // Low nibbles pair with activations 0-15, high ones with 16-31; two chains
                // so the dependent `vpdpbusd`s overlap.
                let (mut lo, mut hi) = (_mm512_set1_epi32(-8 * xb.sum), _mm512_setzero_si512());
                for k in 0..4 {
                    let v = _mm512_loadu_si512(q.add(64 * k).cast());
                    let (xl, xh) = (xq.add(k).read_unaligned(), xq.add(4 + k).read_unaligned());
                    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, m4), _mm512_set1_epi32(xl));
                    hi =
                        _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4), _mm512_set1_epi32(xh));
                }
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(scales.add(32 * b).cast()));
                let s = _mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi));
                acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(xb.d)), s, acc);
            }
            acc
        };
        let mut ys = [0f32; ROWS];
        // SAFETY: 16 floats into a 16-float array.
        unsafe { _mm512_storeu_ps(ys.as_mut_ptr(), acc) };
        for (i, y) in ys.into_iter().enumerate() {
            out[(g * ROWS + i) * ldo] = y;
        }
    }
}
