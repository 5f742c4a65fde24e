//! Q4_0 x int8 gemm for AVX2, with and without AVX-VNNI.
//!
//! Blocks are processed in groups of 8 so the float work is done once per group instead of
//! once per block: two blocks' 16-byte quant arrays are loaded into one register, so `& 0xF`
//! gives both blocks' first halves and `>> 4` both second halves (the activations are loaded
//! as matching halves). Each block pair yields an i32x8 whose lanes 0-3 belong to the first
//! block and 4-7 to the second; three horizontal adds turn four such vectors into the 8 block
//! sums, in lane order [0,2,4,6,1,3,5,7]. The weight scales (f16, 18 bytes apart) and the
//! activation scales and sums (44 bytes apart) are gathered in that order, and the whole group
//! costs one convert and two FMAs: acc += dw ⊙ (dx ⊙ Σq·x − 8·s), which also removes Q4_0's
//! offset of 8 (s = dx·Σx).

use crate::quant::{BlockQ4_0, BlockQ8A};
use std::arch::x86_64::*;

/// Order of a group's blocks in the reduced sums (see the module comment).
const ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The scales of this call's weight rows and tokens as f32, per group of 8 blocks in reduced
/// order: converted once per call instead of once per (row, token) tile.
struct Scales {
    /// [rows][groups][8] weight scales.
    w: Vec<f32>,
    /// [toks][groups][16]: 8 activation scales, then 8 times the 8 scaled sums (8·s).
    x: Vec<f32>,
}

impl Scales {
    fn new(w: &[BlockQ4_0], nbw: usize, rows: usize, x: &[BlockQ8A], nbx: usize, toks: usize) -> Self {
        let groups = nbw / 8;
        let mut ws = Vec::with_capacity(rows * groups * 8);
        for r in 0..rows {
            for g in 0..groups {
                ws.extend(ORDER.iter().map(|&i| w[r * nbw + g * 8 + i].delta.to_f32()));
            }
        }
        let mut xs = Vec::with_capacity(toks * groups * 16);
        for t in 0..toks {
            for g in 0..groups {
                let blk = |i: usize| &x[t * nbx + g * 8 + i];
                xs.extend(ORDER.iter().map(|&i| blk(i).d));
                xs.extend(ORDER.iter().map(|&i| 8.0 * blk(i).s));
            }
        }
        Scales { w: ws, x: xs }
    }
}

/// Byte offsets of a group's activation blocks in reduced order, for gathering their scales
/// directly when a call has too few tokens to pay for the tables.
const X_OFFS: [i32; 8] = {
    let mut o = [0i32; 8];
    let mut i = 0;
    while i < 8 {
        o[i] = (ORDER[i] * std::mem::size_of::<BlockQ8A>()) as i32;
        i += 1;
    }
    o
};
/// Calls with at least this many tokens convert the scales into tables first.
const TABLE_MIN_TOKENS: usize = 4;

macro_rules! q4_0_kernel {
    ($gemm:ident, $tile:ident, $feat:literal, $pair_dot:expr, $rm:expr, $tm:expr) => {
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
            const RM: usize = $rm;
            const TM: usize = $tm;
            let tables = (toks >= TABLE_MIN_TOKENS).then(|| Scales::new(w, nbw, rows, x, nbx, toks));
            let tables = tables.as_ref();
            // Single-token calls (decode) stream the weights once: prefetch them as the
            // 512-bit gemv does (`DecodePlan`); prefill re-reads each tile from cache.
            let plan = (toks == 1).then(super::decode_plan);
            let mut r = 0;
            while r + RM <= rows {
                let mut t = 0;
                while t + TM <= toks {
                    unsafe { $tile::<RM, TM>(w, nbw, r, x, nbx, t, out, ldo, tables, plan) };
                    t += TM;
                }
                while t < toks {
                    unsafe { $tile::<RM, 1>(w, nbw, r, x, nbx, t, out, ldo, tables, plan) };
                    t += 1;
                }
                r += RM;
            }
            while r < rows {
                let mut t = 0;
                while t + 2 <= toks {
                    unsafe { $tile::<1, 2>(w, nbw, r, x, nbx, t, out, ldo, tables, plan) };
                    t += 2;
                }
                if t < toks {
                    unsafe { $tile::<1, 1>(w, nbw, r, x, nbx, t, out, ldo, tables, plan) };
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
            sc: Option<&Scales>,
            plan: Option<super::DecodePlan>,
        ) {
            let m4 = _mm256_set1_epi8(0x0F);
            let xoffs = unsafe { _mm256_loadu_si256(X_OFFS.as_ptr().cast()) };
            let mut acc = [[_mm256_setzero_ps(); T]; R];
            let groups = nbw / 8;
            for g in 0..groups {
                let b0 = g * 8;
                if let Some(plan) = plan {
                    for r in 0..R {
                        super::prefetch3(unsafe { w.as_ptr().add((r0 + r) * nbw + b0) }.cast(), plan);
                    }
                }
                let mut dw = [_mm256_setzero_ps(); R];
                let mut dx = [_mm256_setzero_ps(); T];
                let mut s8 = [_mm256_setzero_ps(); T];
                if let Some(sc) = sc {
                    for r in 0..R {
                        dw[r] = unsafe { _mm256_loadu_ps(sc.w.as_ptr().add(((r0 + r) * groups + g) * 8)) };
                    }
                    for t in 0..T {
                        let at = ((t0 + t) * groups + g) * 16;
                        dx[t] = unsafe { _mm256_loadu_ps(sc.x.as_ptr().add(at)) };
                        s8[t] = unsafe { _mm256_loadu_ps(sc.x.as_ptr().add(at + 8)) };
                    }
                } else {
                    for r in 0..R {
                        // Plain loads, not a gather: these blocks are still arriving from DRAM
                        // and a gather stalls until all eight of its lines are in.
                        let blk = unsafe { w.as_ptr().add((r0 + r) * nbw + b0) };
                        let h = |i: usize| unsafe { (*blk.add(i)).delta.to_bits() as i16 };
                        let bits = _mm_setr_epi16(h(0), h(2), h(4), h(6), h(1), h(3), h(5), h(7));
                        dw[r] = _mm256_cvtph_ps(bits);
                    }
                    for t in 0..T {
                        let base = unsafe { x.as_ptr().add((t0 + t) * nbx + b0) }.cast::<f32>();
                        dx[t] = unsafe { _mm256_i32gather_ps::<1>(base, xoffs) };
                        let s = unsafe { _mm256_i32gather_ps::<1>(base.add(1), xoffs) };
                        s8[t] = _mm256_mul_ps(_mm256_set1_ps(8.0), s);
                    }
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
            // Blocks past the last full group, one at a time (the offset of 8 removed in the
            // 16-bit domain with maddubs(8, x)).
            let ones = _mm256_set1_epi16(1);
            let eights = _mm256_set1_epi8(8);
            for b in groups * 8..nbw {
                let mut wq = [_mm256_setzero_si256(); R];
                let mut dwb = [0f32; R];
                for r in 0..R {
                    let blk = unsafe { &*w.as_ptr().add((r0 + r) * nbw + b) };
                    let raw = unsafe { _mm_loadu_si128(blk.quants.as_ptr().cast()) };
                    wq[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(raw), raw), m4);
                    dwb[r] = blk.delta.to_f32();
                }
                for t in 0..T {
                    let xb = unsafe { &*x.as_ptr().add((t0 + t) * nbx + b) };
                    let xq = unsafe { _mm256_loadu_si256(xb.qs.as_ptr().cast()) };
                    let x8 = _mm256_maddubs_epi16(eights, xq);
                    for r in 0..R {
                        let p = _mm256_sub_epi16(_mm256_maddubs_epi16(wq[r], xq), x8);
                        let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                        acc[r][t] = _mm256_fmadd_ps(p, _mm256_set1_ps(dwb[r] * xb.d), acc[r][t]);
                    }
                }
            }
            for r in 0..R {
                for t in 0..T {
                    unsafe { *out.get_unchecked_mut((r0 + r) * ldo + t0 + t) = super::avx2::hsum_ps(acc[r][t]) };
                }
            }
        }
    };
}

/// Σ over a block pair with `vpmaddubsw` (unsigned 4-bit x signed 8-bit -> i16 pairs) and
/// `vpmaddwd` to i32: lanes 0-3 first block, 4-7 second.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn pair_dot_avx2(lo: __m256i, xlo: __m256i, hi: __m256i, xhi: __m256i) -> __m256i {
    // Each i16 is at most 2 * 15 * 127, so the sum of both halves cannot overflow.
    let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// The same with AVX-VNNI's fused u8 x i8 -> i32 accumulate.
#[inline]
#[target_feature(enable = "avx2,avxvnni")]
pub(super) fn pair_dot_vnni(lo: __m256i, xlo: __m256i, hi: __m256i, xhi: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), lo, xlo), hi, xhi)
}

/// With AVX-512 VNNI on 256-bit registers (EVEX): the same instruction, and 32 registers
/// instead of 16, which lets the tile grow without spilling.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512bw,avx512vnni")]
fn pair_dot_avx512(lo: __m256i, xlo: __m256i, hi: __m256i, xhi: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, xlo), hi, xhi)
}

// Tile shapes (weight rows x tokens) measured best for each register file on a Zen 5 core.
q4_0_kernel!(gemm_avx2, tile_avx2, "avx2,fma,f16c", pair_dot_avx2, 4, 2);
q4_0_kernel!(gemm_vnni, tile_vnni, "avx2,fma,f16c,avxvnni", pair_dot_vnni, 4, 2);
q4_0_kernel!(gemm_avx512, tile_avx512, "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni", pair_dot_avx512, 4, 2);
