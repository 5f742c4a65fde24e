//! Q8_0 x int8 gemm for AVX2, with and without VNNI: the prefill path.
//!
//! Same plan as the Q4_K kernel: blocks in groups of 8, the 8 per-block i32x8 products reduced
//! in registers as they come (two rounds of horizontal adds, then [`super::block_sums8`]), and
//! one float epilogue per group: acc += dw ⊙ (dx ⊙ Σw·x) with the 8 weight and 8 activation
//! scales from tables made once per call. Signed x signed bytes go through the unsigned x
//! signed multiply as |w| · (x with w's sign). (Flipping the weights to unsigned once per row
//! and taking 128·Σx back out in the epilogue saves the per-(row, token) signs on VNNI, but
//! measured no faster.) Blocks past the last whole group take the per-block epilogue.

use crate::quant::{BlockQ8A, BlockQ8_0};
use std::arch::x86_64::*;

macro_rules! q8_0_kernel {
    ($gemm:ident, $tile:ident, $feat:literal, $dot:expr) => {
        /// Requires `w.len() >= rows * nbw`, `x` to hold `toks` rows of `nbx >= nbw` blocks
        /// and `out` `(rows - 1) * ldo + toks` values (checked by the safe wrapper).
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemm(
            w: &[BlockQ8_0],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            let dw: Vec<f32> = w[..rows * nbw].iter().map(|b| b.delta.to_f32()).collect();
            let dx: Vec<f32> = x.chunks(nbx).take(toks).flat_map(|row| row[..nbw].iter().map(|b| b.d)).collect();
            drive_4x2!($tile, w, nbw, x, nbx, rows, toks, out, ldo; &dw, &dx);
        }

        /// `dw`: [rows][nbw] weight scales; `dx`: [toks][nbw] activation scales.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $tile<const R: usize, const T: usize>(
            w: &[BlockQ8_0],
            nbw: usize,
            r0: usize,
            x: &[BlockQ8A],
            nbx: usize,
            t0: usize,
            out: &mut [f32],
            ldo: usize,
            dw: &[f32],
            dx: &[f32],
        ) {
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let prod = |b: usize, r: usize, t: usize| {
                let (wb, xb) = unsafe { (&*w.as_ptr().add((r0 + r) * nbw + b), &*x.as_ptr().add((t0 + t) * nbx + b)) };
                let (wq, xq) = unsafe {
                    (_mm256_loadu_si256(wb.quants.as_ptr().cast()), _mm256_loadu_si256(xb.qs.as_ptr().cast()))
                };
                $dot(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq))
            };
            for g in 0..nbw / 8 {
                let b0 = 8 * g;
                let mut gs = [[[_mm256_setzero_si256(); 2]; T]; R];
                let mut h = [[_mm256_setzero_si256(); T]; R];
                for c in 0..4 {
                    for r in 0..R {
                        for t in 0..T {
                            let pair = _mm256_hadd_epi32(prod(b0 + 2 * c, r, t), prod(b0 + 2 * c + 1, r, t));
                            if c % 2 == 0 {
                                h[r][t] = pair;
                            } else {
                                gs[r][t][c / 2] = _mm256_hadd_epi32(h[r][t], pair);
                            }
                        }
                    }
                }
                for r in 0..R {
                    let dwv = unsafe { _mm256_loadu_ps(dw.as_ptr().add((r0 + r) * nbw + b0)) };
                    for t in 0..T {
                        let dxv = unsafe { _mm256_loadu_ps(dx.as_ptr().add((t0 + t) * nbw + b0)) };
                        let sums = super::block_sums8(gs[r][t][0], gs[r][t][1]);
                        acc[r][t] = _mm256_fmadd_ps(dwv, _mm256_mul_ps(_mm256_cvtepi32_ps(sums), dxv), acc[r][t]);
                    }
                }
            }
            for b in nbw / 8 * 8..nbw {
                for r in 0..R {
                    for t in 0..T {
                        let s = unsafe { dw.get_unchecked((r0 + r) * nbw + b) * dx.get_unchecked((t0 + t) * nbw + b) };
                        let p = _mm256_cvtepi32_ps(prod(b, r, t));
                        acc[r][t] = _mm256_fmadd_ps(p, _mm256_set1_ps(s), acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    let v = super::avx2::hsum_ps(acc[r][t]);
                    unsafe { *out.get_unchecked_mut((r0 + r) * ldo + t0 + t) = v };
                }
            }
        }
    };
}

/// 32 byte products summed in fours into i32x8 (`vpmaddubsw`: |w| ≤ 128 and |x| ≤ 127, so each
/// i16 pair sum is at most 32512, no saturation).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_avx2(aw: __m256i, sx: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn dot_vnni(aw: __m256i, sx: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx)
}

#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512vnni")]
fn dot_avx512(aw: __m256i, sx: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx)
}

q8_0_kernel!(gemm_avx2, tile_avx2, "avx2,fma,f16c", dot_avx2);
q8_0_kernel!(gemm_vnni, tile_vnni, "avx2,fma,f16c,avxvnni", dot_vnni);
q8_0_kernel!(gemm_avx512, tile_avx512, "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni", dot_avx512);
