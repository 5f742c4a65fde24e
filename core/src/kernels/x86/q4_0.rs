//! Q4_0 x int8 gemm for AVX2, with and without AVX-VNNI.
//!
//! Blocks are processed in groups of 8 so the float work is done once per group instead of
//! once per block: two blocks' 16-byte quant arrays are loaded into one register, so `& 0xF`
//! gives both blocks' first halves and `>> 4` both second halves (the activations are loaded
//! as matching halves). Each block pair yields an i32x8 whose lanes 0-3 belong to the first
//! block and 4-7 to the second; three horizontal adds turn four such vectors into the 8 block
//! sums, in lane order [0,2,4,6,1,3,5,7]. The weight scales (f16, 18 bytes apart) and the
//! activation scales and sums (40 bytes apart) are gathered in that order, and the whole group
//! costs one convert and two FMAs: acc += dw ⊙ (dx ⊙ Σq·x − 8·s), which also removes Q4_0's
//! offset of 8 (s = dx·Σx).

use crate::quant::{BlockQ4_0, BlockQ8A};
use std::arch::x86_64::*;

/// Byte offsets of blocks [0,2,4,6,1,3,5,7] of a group: weights (18-byte blocks).
const W_OFFS: [i32; 8] = [0, 36, 72, 108, 18, 54, 90, 126];
/// Same for activation blocks (40 bytes).
const X_OFFS: [i32; 8] = [0, 80, 160, 240, 40, 120, 200, 280];

macro_rules! q4_0_kernel {
    ($gemm:ident, $tile:ident, $feat:literal, $pair_dot:expr) => {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemm(
            w: &[BlockQ4_0],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            let mut r = 0;
            while r + 4 <= rows {
                let mut t = 0;
                while t + 2 <= toks {
                    unsafe { $tile::<4, 2>(w, nbw, r, x, nbx, t, out, ldo) };
                    t += 2;
                }
                if t < toks {
                    unsafe { $tile::<4, 1>(w, nbw, r, x, nbx, t, out, ldo) };
                }
                r += 4;
            }
            while r < rows {
                let mut t = 0;
                while t + 2 <= toks {
                    unsafe { $tile::<1, 2>(w, nbw, r, x, nbx, t, out, ldo) };
                    t += 2;
                }
                if t < toks {
                    unsafe { $tile::<1, 1>(w, nbw, r, x, nbx, t, out, ldo) };
                }
                r += 1;
            }
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $tile<const R: usize, const T: usize>(
            w: &[BlockQ4_0],
            nbw: usize,
            r0: usize,
            x: &[BlockQ8A],
            nbx: usize,
            t0: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let eight = _mm256_set1_ps(8.0);
            let woffs = unsafe { _mm256_loadu_si256(W_OFFS.as_ptr().cast()) };
            let xoffs = unsafe { _mm256_loadu_si256(X_OFFS.as_ptr().cast()) };
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let groups = nbw / 8;
            for g in 0..groups {
                let b0 = g * 8;
                let mut dw = [_mm256_setzero_ps(); R];
                for r in 0..R {
                    let base = unsafe { w.as_ptr().add((r0 + r) * nbw + b0) }.cast::<i32>();
                    // 4 bytes at each block start: the low half is the f16 scale.
                    let raw = unsafe { _mm256_i32gather_epi32::<1>(base, woffs) };
                    let raw = _mm256_and_si256(raw, _mm256_set1_epi32(0xFFFF));
                    let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packus_epi32(raw, raw));
                    dw[r] = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
                }
                let mut dx = [_mm256_setzero_ps(); T];
                let mut s8 = [_mm256_setzero_ps(); T];
                for t in 0..T {
                    let base = unsafe { x.as_ptr().add((t0 + t) * nbx + b0) }.cast::<f32>();
                    dx[t] = unsafe { _mm256_i32gather_ps::<1>(base, xoffs) };
                    s8[t] = _mm256_mul_ps(eight, unsafe { _mm256_i32gather_ps::<1>(base.add(1), xoffs) });
                }
                let mut sums = [[[_mm256_setzero_si256(); 4]; T]; R];
                for k in 0..4 {
                    let b = b0 + 2 * k;
                    let mut lo = [_mm256_setzero_si256(); R];
                    let mut hi = [_mm256_setzero_si256(); R];
                    for r in 0..R {
                        let blk = unsafe { w.as_ptr().add((r0 + r) * nbw + b) };
                        let q = unsafe {
                            _mm256_set_m128i(
                                _mm_loadu_si128((*blk.add(1)).quants.as_ptr().cast()),
                                _mm_loadu_si128((*blk).quants.as_ptr().cast()),
                            )
                        };
                        lo[r] = _mm256_and_si256(q, m4);
                        hi[r] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    }
                    for t in 0..T {
                        let xb = unsafe { x.as_ptr().add((t0 + t) * nbx + b) };
                        let (xa, xb1) = unsafe { ((*xb).qs.as_ptr(), (*xb.add(1)).qs.as_ptr()) };
                        let (xlo, xhi) = unsafe {
                            (
                                _mm256_set_m128i(_mm_loadu_si128(xb1.cast()), _mm_loadu_si128(xa.cast())),
                                _mm256_set_m128i(
                                    _mm_loadu_si128(xb1.add(16).cast()),
                                    _mm_loadu_si128(xa.add(16).cast()),
                                ),
                            )
                        };
                        for r in 0..R {
                            sums[r][t][k] = $pair_dot(lo[r], xlo, hi[r], xhi);
                        }
                    }
                }
                for r in 0..R {
                    for t in 0..T {
                        let s = &sums[r][t];
                        let h = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
                        let v = _mm256_fmsub_ps(dx[t], _mm256_cvtepi32_ps(h), s8[t]);
                        acc[r][t] = _mm256_fmadd_ps(dw[r], v, acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    let wr = unsafe { w.get_unchecked((r0 + r) * nbw + groups * 8..(r0 + r + 1) * nbw) };
                    let xr = unsafe { x.get_unchecked((t0 + t) * nbx + groups * 8..(t0 + t) * nbx + nbw) };
                    let tail = crate::kernels::generic::dot_q4_0(wr, xr);
                    unsafe { *out.get_unchecked_mut((r0 + r) * ldo + t0 + t) = super::avx2::hsum_ps(acc[r][t]) + tail };
                }
            }
        }
    };
}

/// Σ over a block pair with `vpmaddubsw` (unsigned 4-bit x signed 8-bit -> i16 pairs) and
/// `vpmaddwd` to i32: lanes 0-3 first block, 4-7 second.
#[inline]
#[target_feature(enable = "avx2")]
fn pair_dot_avx2(lo: __m256i, xlo: __m256i, hi: __m256i, xhi: __m256i) -> __m256i {
    // Each i16 is at most 2 * 15 * 127, so the sum of both halves cannot overflow.
    let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// The same with AVX-VNNI's fused u8 x i8 -> i32 accumulate.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn pair_dot_vnni(lo: __m256i, xlo: __m256i, hi: __m256i, xhi: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), lo, xlo), hi, xhi)
}

q4_0_kernel!(gemm_avx2, tile_avx2, "avx2,fma,f16c", pair_dot_avx2);
q4_0_kernel!(gemm_vnni, tile_vnni, "avx2,fma,f16c,avxvnni", pair_dot_vnni);
