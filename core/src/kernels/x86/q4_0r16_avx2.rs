//! Q4_0_R16 decode on 256-bit registers (AVX2, AVX-VNNI): the interleaved layout of
//! `quant::interleave`, 8 rows per register (each 64-byte quant vector is two halves of 8
//! rows x 4 bytes). As in the 512-bit kernel (`q4_0r16_zmm`), the token's 4 activation bytes
//! for a lane are broadcast and each row's dot product stays in its own lane: no shuffles and no
//! horizontal sums.

use super::q4_0::{pair_dot_avx2, pair_dot_vnni};
use crate::quant::interleave::{group_bytes, quants_offset, ROWS};
use crate::quant::BlockQ8A;
use std::arch::x86_64::*;

macro_rules! r16_gemv {
    ($name:ident, $feat:literal, $pair_dot:ident) => {
        /// `out[r * ldo] = row r · x` over the whole groups of `w` (see
        /// [`crate::kernels::GemvR16Fn`]).
        #[target_feature(enable = $feat)]
        pub(super) fn $name(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
            let gb = group_bytes(nbw);
            let groups = w.len().checked_div(gb).unwrap_or(0);
            assert!(x.len() >= nbw, "activations shorter than a row");
            assert!(groups == 0 || out.len() > (groups * ROWS - 1) * ldo, "output out of range");
            let m4 = _mm256_set1_epi8(0x0F);
            for g in 0..groups {
                let mut acc = [_mm256_setzero_ps(); 2];
                // SAFETY: group g's `gb` bytes are inside `w`; block b's scales are bytes
                // 32b..32b+32 and its quants 256 bytes at quants_offset + 256b, both inside.
                unsafe {
                    let scales = w.as_ptr().add(g * gb);
                    let quants = scales.add(quants_offset(nbw));
                    for (b, xb) in x[..nbw].iter().enumerate() {
                        let xq = xb.qs.as_ptr().cast::<i32>();
                        let q = quants.add(256 * b);
                        for (h, acc) in acc.iter_mut().enumerate() {
                            let mut s = _mm256_set1_epi32(-8 * xb.sum);
                            for k in 0..4 {
                                let v = _mm256_loadu_si256(q.add(64 * k + 32 * h).cast());
                                let lo = _mm256_and_si256(v, m4);
                                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
                                let (xl, xh) = (xq.add(k).read_unaligned(), xq.add(4 + k).read_unaligned());
                                s = _mm256_add_epi32(
                                    s,
                                    $pair_dot(lo, _mm256_set1_epi32(xl), hi, _mm256_set1_epi32(xh)),
                                );
                            }
                            let dw = _mm256_cvtph_ps(_mm_loadu_si128(scales.add(32 * b + 16 * h).cast()));
                            *acc =
                                _mm256_fmadd_ps(_mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), _mm256_cvtepi32_ps(s), *acc);
                        }
                    }
                }
                let mut ys = [0f32; ROWS];
                // SAFETY: 2 x 8 floats into a 16-float array.
                unsafe {
                    _mm256_storeu_ps(ys.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(ys.as_mut_ptr().add(8), acc[1]);
                }
                for (i, y) in ys.into_iter().enumerate() {
                    out[(g * ROWS + i) * ldo] = y;
                }
            }
        }
    };
}

r16_gemv!(gemv_avx2, "avx2,fma,f16c", pair_dot_avx2);
r16_gemv!(gemv_vnni, "avx2,fma,f16c,avxvnni", pair_dot_vnni);
