//! 4-bit KV cache attention kernels for plain NEON (every ARMv8-A core); layout in
//! `kernels::kv_q4`.
//!
//! A 16-byte vector is 4 rows x one 4-byte word (keys) or 4 dimensions x 4 rows (values), so
//! `smlal` products of the nibble codes with a broadcast int8 word, paired up by `saddlp` and
//! `addp`, land in one i32 lane per row (keys) or per dimension (values): no horizontal sums.
//! Same integer products, same weight rounding and same float operation order as the scalar
//! reference, so the results are identical.

use crate::kernels::kv_q4::{check_tiles, offsets, tile_bytes, words, GROUP, TILE_ROWS};
use core::arch::aarch64::*;
use half::f16;

/// 4 f16 to f32 exactly, with integer ops (no FP16 extension needed): the magnitude bits moved
/// into f32 position and scaled by 2^112 (right for zero, subnormals and normals alike).
#[inline(always)]
unsafe fn f16x4(p: *const f16) -> float32x4_t {
    let w = vmovl_u16(vld1_u16(p as *const u16));
    let sign = vshlq_n_u32::<16>(vandq_u32(w, vdupq_n_u32(0x8000)));
    let mag = vshlq_n_u32::<13>(vandq_u32(w, vdupq_n_u32(0x7fff)));
    let f = vmulq_f32(vreinterpretq_f32_u32(mag), vdupq_n_f32(f32::from_bits(0x7780_0000)));
    vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(f), sign))
}

/// Σ over 4 rows' (or dimensions') bytes of `codes · b` for the low and high nibbles of `v`,
/// added into two i16 accumulators (bytes 0-7 and 8-15).
#[inline(always)]
unsafe fn mla_nibbles(acc: &mut [int16x8_t; 2], v: uint8x16_t, blo: int8x16_t, bhi: int8x16_t) {
    let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
    acc[0] = vmlal_s8(acc[0], vget_low_s8(lo), vget_low_s8(blo));
    acc[1] = vmlal_high_s8(acc[1], lo, blo);
    acc[0] = vmlal_s8(acc[0], vget_low_s8(hi), vget_low_s8(bhi));
    acc[1] = vmlal_high_s8(acc[1], hi, bhi);
}

/// The i16 products of [`mla_nibbles`] summed per 4-byte lane.
#[inline(always)]
unsafe fn lanes(acc: [int16x8_t; 2]) -> int32x4_t {
    vpaddq_s32(vpaddlq_s16(acc[0]), vpaddlq_s16(acc[1]))
}

pub(super) fn dot_tiles(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32]) {
    let nt = check_tiles(q8.len(), out.len(), codes.len(), scales.len());
    let d = q8.len();
    let (qw, off) = (words(q8), offsets(q8));
    // SAFETY: NEON is baseline on aarch64; sizes checked above.
    unsafe {
        for t in 0..nt {
            let tile = codes.as_ptr().add(t * tile_bytes(d));
            let sc = scales.as_ptr().add(t * d);
            for j in 0..4 {
                let mut res = vdupq_n_f32(0.0);
                for g in 0..d / GROUP {
                    let mut acc = [vdupq_n_s16(0); 2];
                    for w in 2 * g..2 * g + 2 {
                        let v = vld1q_u8(tile.add(w * 64 + 16 * j));
                        let (bl, bh) = (vdupq_n_s32(qw[2 * w]), vdupq_n_s32(qw[2 * w + 1]));
                        mla_nibbles(&mut acc, v, vreinterpretq_s8_s32(bl), vreinterpretq_s8_s32(bh));
                    }
                    let acc = vaddq_s32(lanes(acc), vdupq_n_s32(off[g]));
                    res = vfmaq_f32(res, vcvtq_f32_s32(acc), f16x4(sc.add(g * TILE_ROWS + 4 * j)));
                }
                vst1q_f32(out.as_mut_ptr().add(t * TILE_ROWS + 4 * j), res);
            }
        }
    }
}

pub(super) fn axpy_tiles(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32]) {
    let nt = check_tiles(o.len(), p.len(), codes.len(), scales.len());
    let d = o.len();
    // SAFETY: NEON is baseline on aarch64; sizes checked above.
    unsafe {
        for t in 0..nt {
            let tile = codes.as_ptr().add(t * tile_bytes(d));
            let sc = scales.as_ptr().add(t * d);
            for g in 0..d / GROUP {
                let Some((w8, wsum, ws)) = weights(p.as_ptr().add(t * TILE_ROWS), sc.add(g * TILE_ROWS)) else {
                    continue;
                };
                let b: [int8x16_t; 4] = [
                    vreinterpretq_s8_s32(vdupq_laneq_s32::<0>(w8)),
                    vreinterpretq_s8_s32(vdupq_laneq_s32::<1>(w8)),
                    vreinterpretq_s8_s32(vdupq_laneq_s32::<2>(w8)),
                    vreinterpretq_s8_s32(vdupq_laneq_s32::<3>(w8)),
                ];
                for k in 0..4 {
                    let mut acc = [vdupq_n_s16(0); 2];
                    for c in 0..2 {
                        let v = vld1q_u8(tile.add(c * 4 * d + g * 64 + 16 * k));
                        mla_nibbles(&mut acc, v, b[2 * c], b[2 * c + 1]);
                    }
                    let acc = vsubq_s32(lanes(acc), vdupq_n_s32(8 * wsum));
                    let op = o.as_mut_ptr().add(g * GROUP + 4 * k);
                    vst1q_f32(op, vfmaq_n_f32(vld1q_f32(op), vcvtq_f32_s32(acc), ws));
                }
            }
        }
    }
}

/// Weights `p·s` of one (tile, group) rounded to int8 as `kv_q4::quantize_weights` does: the
/// 16 codes (as 4 words), their sum and the scale; `None` when all are 0.
#[inline(always)]
unsafe fn weights(p: *const f32, s: *const f16) -> Option<(int32x4_t, i32, f32)> {
    let w: [float32x4_t; 4] = std::array::from_fn(|i| vmulq_f32(vld1q_f32(p.add(4 * i)), f16x4(s.add(4 * i))));
    let m = vmaxq_f32(vmaxq_f32(vabsq_f32(w[0]), vabsq_f32(w[1])), vmaxq_f32(vabsq_f32(w[2]), vabsq_f32(w[3])));
    let wmax = vmaxvq_f32(m);
    if wmax == 0.0 {
        return None;
    }
    let inv = 127.0 / wmax;
    let i: [int32x4_t; 4] = std::array::from_fn(|k| vcvtnq_s32_f32(vmulq_n_f32(w[k], inv)));
    let sum = vaddvq_s32(vaddq_s32(vaddq_s32(i[0], i[1]), vaddq_s32(i[2], i[3])));
    let h0 = vcombine_s16(vqmovn_s32(i[0]), vqmovn_s32(i[1]));
    let h1 = vcombine_s16(vqmovn_s32(i[2]), vqmovn_s32(i[3]));
    let b = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
    Some((vreinterpretq_s32_s8(b), sum, wmax / 127.0))
}
