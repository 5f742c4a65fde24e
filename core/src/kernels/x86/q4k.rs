//! Q4_K x int8 gemm for AVX2, with and without AVX-VNNI: the prefill path.
//!
//! As in the Q4_0 kernel, the float work is done once per group of blocks instead of once per
//! block. Here the group is a super-block: its 8 sub-blocks of 32 give 8 i32x8 products per
//! (row, token), which three rounds of horizontal adds and one cross-lane add reduce to the 8
//! sub-block sums in natural order. Then one convert and two FMAs finish the super-block:
//! acc += (d·scale_j) ⊙ (dx_j ⊙ Σq·x) − (dmin·min_j) ⊙ (dx_j·Σx). The 6-bit scales and mins
//! are unpacked once per call into a table (16 floats per row and super-block), and so are the
//! activation scales and sums (16 floats per token and super-block).

use crate::quant::{q4k::scale_min, BlockQ4K, BlockQ8A};
use std::arch::x86_64::*;

/// Per weight row and super-block: d·scale_j for the 8 sub-blocks, then dmin·min_j.
fn w_table(w: &[BlockQ4K], nbw: usize, rows: usize) -> Vec<f32> {
    let mut t = Vec::with_capacity(rows * nbw * 16);
    for blk in &w[..rows * nbw] {
        let (d, dmin) = (blk.d.to_f32(), blk.dmin.to_f32());
        let sm: [(u8, u8); 8] = std::array::from_fn(|j| scale_min(j, &blk.scales));
        t.extend(sm.iter().map(|&(s, _)| d * s as f32));
        t.extend(sm.iter().map(|&(_, m)| dmin * m as f32));
    }
    t
}

/// Per token and super-block: the 8 activation blocks' scales `d`, then their scaled sums `s`
/// (plain loads in the tile instead of two gathers per tile and super-block).
fn x_table(x: &[BlockQ8A], nbx: usize, toks: usize, nbw: usize) -> Vec<f32> {
    let mut t = Vec::with_capacity(toks * nbw * 16);
    for row in x.chunks(nbx).take(toks) {
        for sb in row[..8 * nbw].chunks_exact(8) {
            t.extend(sb.iter().map(|b| b.d));
            t.extend(sb.iter().map(|b| b.s));
        }
    }
    t
}

macro_rules! q4k_kernel {
    ($gemm:ident, $tile:ident, $feat:literal, $dot:expr) => {
        /// Requires `w.len() >= rows * nbw`, `x` to hold `toks` rows of `nbx >= 8 * nbw` blocks
        /// and `out` `(rows - 1) * ldo + toks` values (checked by the safe wrapper).
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $gemm(
            w: &[BlockQ4K],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            let table = w_table(w, nbw, rows);
            let xt = x_table(x, nbx, toks, nbw);
            drive_4x2!($tile, w, nbw, x, nbx, rows, toks, out, ldo; &table, &xt);
        }

        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        unsafe fn $tile<const R: usize, const T: usize>(
            w: &[BlockQ4K],
            nbw: usize,
            r0: usize,
            x: &[BlockQ8A],
            nbx: usize,
            t0: usize,
            out: &mut [f32],
            ldo: usize,
            table: &[f32],
            xt: &[f32],
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            for b in 0..nbw {
                // g[r][t][k]: sub-blocks 4k..4k+4 after two rounds of horizontal adds (reduced as
                // they come, to keep the tile in registers); h: the pending pair.
                let mut g = [[[_mm256_setzero_si256(); 2]; T]; R];
                let mut h = [[_mm256_setzero_si256(); T]; R];
                for c in 0..4 {
                    let mut lo = [_mm256_setzero_si256(); R];
                    let mut hi = [_mm256_setzero_si256(); R];
                    for r in 0..R {
                        let blk = unsafe { &*w.as_ptr().add((r0 + r) * nbw + b) };
                        let q = unsafe { _mm256_loadu_si256(blk.qs.as_ptr().add(32 * c).cast()) };
                        lo[r] = _mm256_and_si256(q, m4);
                        hi[r] = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
                    }
                    for t in 0..T {
                        let xb = unsafe { x.as_ptr().add((t0 + t) * nbx + 8 * b + 2 * c) };
                        let (q0, q1) = unsafe {
                            (
                                _mm256_loadu_si256((*xb).qs.as_ptr().cast()),
                                _mm256_loadu_si256((*xb.add(1)).qs.as_ptr().cast()),
                            )
                        };
                        for r in 0..R {
                            let pair = _mm256_hadd_epi32($dot(lo[r], q0), $dot(hi[r], q1));
                            if c % 2 == 0 {
                                h[r][t] = pair;
                            } else {
                                g[r][t][c / 2] = _mm256_hadd_epi32(h[r][t], pair);
                            }
                        }
                    }
                }
                for r in 0..R {
                    let tw = unsafe { table.as_ptr().add(((r0 + r) * nbw + b) * 16) };
                    let (dsc, dm) = unsafe { (_mm256_loadu_ps(tw), _mm256_loadu_ps(tw.add(8))) };
                    for t in 0..T {
                        let [g1, g2] = g[r][t];
                        let sums = super::block_sums8(g1, g2);
                        let xp = unsafe { xt.as_ptr().add(((t0 + t) * nbw + b) * 16) };
                        let (dx, xs) = unsafe { (_mm256_loadu_ps(xp), _mm256_loadu_ps(xp.add(8))) };
                        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), dx);
                        acc[r][t] = _mm256_fnmadd_ps(dm, xs, _mm256_fmadd_ps(dsc, v, acc[r][t]));
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

/// 32 unsigned 4-bit x signed 8-bit products summed in fours into i32x8 (`vpmaddubsw`: each
/// i16 is at most 2 · 15 · 127, no saturation).
#[inline]
#[target_feature(enable = "avx2")]
fn dot_avx2(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

/// The same with AVX-VNNI's fused u8 x i8 -> i32.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
fn dot_vnni(w: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), w, x)
}

/// With AVX-512 VNNI on 256-bit registers (EVEX encoding, 32 registers).
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512vnni")]
fn dot_avx512(w: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x)
}

q4k_kernel!(gemm_avx2, tile_avx2, "avx2,fma,f16c", dot_avx2);
q4k_kernel!(gemm_vnni, tile_vnni, "avx2,fma,f16c,avxvnni", dot_vnni);
q4k_kernel!(gemm_avx512, tile_avx512, "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni", dot_avx512);
