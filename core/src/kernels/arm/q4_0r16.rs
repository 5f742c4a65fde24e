//! Q4_0_R16 decode with SDOT (the interleaved layout `quant::interleave` describes).
//!
//! A 16-byte quarter of each 64-byte quant vector holds 4 quant bytes of each of 4 rows, one
//! row per 32-bit lane, and the 4 activation bytes they pair with are one 32-bit lane of the
//! token's block: SDOT against that lane broadcast advances 4 rows' dot products with no
//! horizontal sums (the plain-layout kernels reduce every row's lanes at the end of each row and
//! unpack each 18-byte block on its own). Nibbles 0-15 are valid signed bytes, so the Q4_0
//! offset of 8 is taken out exactly by starting the integer sums at −8·Σx.

use super::neon::dot16_sdot;
use crate::quant::interleave::{group_bytes, quants_offset, ROWS};
use crate::quant::BlockQ8A;
use core::arch::aarch64::*;
use core::arch::asm;

/// `out[r * ldo] = row r · x` over the whole groups of `w`; see [`crate::kernels::GemvR16Fn`].
pub(super) fn gemv_dotprod(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
    let gb = group_bytes(nbw);
    let groups = w.len().checked_div(gb).unwrap_or(0);
    assert!(x.len() >= nbw, "activations shorter than a row");
    assert!(groups == 0 || out.len() > (groups * ROWS - 1) * ldo, "output out of range");
    for g in 0..groups {
        // SAFETY: the table holding this function is only handed out after runtime detection
        // of dotprod; the group slice is exactly `gb` bytes.
        let ys = unsafe { group(&w[g * gb..(g + 1) * gb], nbw, &x[..nbw]) };
        for (i, y) in ys.into_iter().enumerate() {
            out[(g * ROWS + i) * ldo] = y;
        }
    }
}

/// The 16 rows of one group against `x` (`nbw` blocks).
#[target_feature(enable = "dotprod")]
unsafe fn group(group: &[u8], nbw: usize, x: &[BlockQ8A]) -> [f32; ROWS] {
    assert!(group.len() >= group_bytes(nbw) && x.len() >= nbw);
    // SAFETY: block b's 16 scales are bytes 32b..32b+32 and its quants the 256 bytes at
    // quants_offset + 256b, inside the group (asserted); x's blocks are 32 quant bytes each.
    unsafe {
        let scales = group.as_ptr();
        let quants = scales.add(quants_offset(nbw));
        let m4 = vdupq_n_u8(0x0F);
        let mut acc = [vdupq_n_f32(0.0); 4];
        for (b, xb) in x.iter().enumerate() {
            let (x0, x1) = (vld1q_s32(xb.qs.as_ptr().cast()), vld1q_s32(xb.qs.as_ptr().add(16).cast()));
            let lanes = |v: int32x4_t| {
                [vdupq_laneq_s32::<0>(v), vdupq_laneq_s32::<1>(v), vdupq_laneq_s32::<2>(v), vdupq_laneq_s32::<3>(v)]
                    .map(|l| vreinterpretq_s8_s32(l))
            };
            let (xl, xh) = (lanes(x0), lanes(x1));
            let q = quants.add(256 * b);
            for (j, acc) in acc.iter_mut().enumerate() {
                // Low nibbles pair with activations 0-15, high ones with 16-31.
                let (mut lo, mut hi) = (vdupq_n_s32(-8 * xb.sum), vdupq_n_s32(0));
                for k in 0..4 {
                    let v = vld1q_u8(q.add(64 * k + 16 * j));
                    lo = dot16_sdot(lo, vreinterpretq_s8_u8(vandq_u8(v, m4)), xl[k]);
                    hi = dot16_sdot(hi, vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), xh[k]);
                }
                let dw = f16x4_to_f32(vld1_u16(scales.add(32 * b + 8 * j).cast()));
                *acc = vfmaq_f32(*acc, vcvtq_f32_s32(vaddq_s32(lo, hi)), vmulq_n_f32(dw, xb.d));
            }
        }
        let mut ys = [0f32; ROWS];
        for (j, a) in acc.iter().enumerate() {
            vst1q_f32(ys.as_mut_ptr().add(4 * j), *a);
        }
        ys
    }
}

/// Four f16 (as bits) to f32: `fcvtl`, base ARMv8 (its intrinsic needs Rust's unstable f16).
#[inline]
unsafe fn f16x4_to_f32(bits: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: a register-only conversion.
    unsafe {
        asm!("fcvtl {o:v}.4s, {i:v}.4h", o = lateout(vreg) out, i = in(vreg) bits, options(pure, nomem, nostack));
    }
    out
}
