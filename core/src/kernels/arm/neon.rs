//! NEON kernels, with SDOT and SMMLA variants of the integer dot products.
//!
//! Q4_0 weights are unpacked to signed bytes (q - 8) so they multiply the signed int8
//! activations directly: `sdot` (4-way i8 dot into i32 lanes) where available, else
//! `smull`/`sadalp` widening multiplies. The i8mm prefill path feeds 2 weight rows x 2 tokens
//! to `smmla`, which computes the 2x2 block of 8-element dot products in one instruction.

use crate::kernels::{check_gemm, generic, Kernels};
use crate::quant::{q4k::scale_min, BlockQ4K, BlockQ4_0, BlockQ8A, BlockQ8_0, QK};
use core::arch::aarch64::*;
use core::arch::asm;

/// Plain NEON: always present on aarch64.
pub fn neon() -> Option<&'static Kernels> {
    Some(&NEON)
}

/// NEON + SDOT.
pub fn dotprod() -> Option<&'static Kernels> {
    std::arch::is_aarch64_feature_detected!("dotprod").then_some(&DOTPROD)
}

/// NEON + SDOT + SMMLA.
pub fn i8mm() -> Option<&'static Kernels> {
    (std::arch::is_aarch64_feature_detected!("dotprod") && std::arch::is_aarch64_feature_detected!("i8mm"))
        .then_some(&I8MM)
}

static NEON: Kernels = Kernels {
    isa: "neon",
    quantize_q8a,
    gemm_q4_0: gemm_q4_0_neon,
    gemm_q8_0: gemm_q8_0_neon,
    gemm_q4k: gemm_q4k_neon,
    prefill_tokens: 64,
    gemv_q4_0r16: None,
    dot_f32,
    dot_f16: generic::dot_f16,
    axpy_f32,
    axpy_f16: generic::axpy_f16,
    xcorr_f32,
    dot_i8,
    axpy_i8,
    dot_rows_f16: |q, r, o| generic::dot_rows_with(generic::dot_f16, q, r, o),
    axpy_rows_f16: |p, r, o| generic::axpy_rows_with(generic::axpy_f16, p, r, o),
    dot_rows_i8: |q, r, o| generic::dot_rows_with(dot_i8, q, r, o),
    axpy_rows_i8: |p, r, o| generic::axpy_rows_with(axpy_i8, p, r, o),
    dot_tiles_q4: super::kv_q4::dot_tiles,
    axpy_tiles_q4: super::kv_q4::axpy_tiles,
    exp_sum: generic::exp_sum,
    // NEON is baseline on aarch64, so the register-tiled loops compile to it directly.
    qk_tile: generic::qk_tile_blocked,
    pv_tile: generic::pv_tile_blocked,
};

static DOTPROD: Kernels = Kernels {
    isa: "neon-dotprod",
    gemm_q4_0: gemm_q4_0_dotprod,
    gemm_q8_0: gemm_q8_0_dotprod,
    gemm_q4k: gemm_q4k_dotprod,
    gemv_q4_0r16: Some(super::q4_0r16::gemv_dotprod),
    ..NEON
};

static I8MM: Kernels = Kernels { isa: "neon-i8mm", gemm_q4_0: gemm_q4_0_i8mm, ..DOTPROD };

// SAFETY (all wrappers): NEON is architecturally present on aarch64; the dotprod/i8mm tables
// are only handed out after runtime detection. Bounds are checked before the unchecked loops.

fn quantize_q8a(x: &[f32], out: &mut [BlockQ8A]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        unsafe { quantize_block(xs, b) }
    }
}

#[inline]
unsafe fn quantize_block(xs: &[f32], b: &mut BlockQ8A) {
    unsafe {
        let p = xs.as_ptr();
        let v: [float32x4_t; 8] = std::array::from_fn(|i| vld1q_f32(p.add(4 * i)));
        let mut m = vabsq_f32(v[0]);
        for vi in &v[1..] {
            m = vmaxq_f32(m, vabsq_f32(*vi));
        }
        let amax = vmaxvq_f32(m);
        // Same scalar arithmetic as the reference, so the codes are bit-identical.
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q: [int32x4_t; 8] = std::array::from_fn(|i| vcvtnq_s32_f32(vmulq_n_f32(v[i], id)));
        let mut sum = vaddq_s32(q[0], q[1]);
        for qi in &q[2..] {
            sum = vaddq_s32(sum, *qi);
        }
        for h in 0..4 {
            let s16 = vcombine_s16(vqmovn_s32(q[2 * h]), vqmovn_s32(q[2 * h + 1]));
            vst1_s8(b.qs.as_mut_ptr().add(8 * h), vqmovn_s16(s16));
        }
        b.d = d;
        b.sum = vaddvq_s32(sum);
        b.s = d * b.sum as f32;
    }
}

/// 16 weights of a Q4_0 block as signed bytes: low nibbles (elements 0..15) or high (16..31).
#[inline]
unsafe fn q4_halves(blk: &BlockQ4_0) -> (int8x16_t, int8x16_t) {
    unsafe {
        let q = vld1q_u8(blk.quants.as_ptr());
        let eight = vdupq_n_s8(8);
        let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), eight);
        let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
        (lo, hi)
    }
}

/// i32x4 partial sums of a·b (16 signed bytes each) added to `acc`, without SDOT.
#[inline]
unsafe fn dot16_neon(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    unsafe {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// The same with SDOT.
#[inline]
#[target_feature(enable = "dotprod")]
pub(super) unsafe fn dot16_sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    unsafe {
        asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
             options(pure, nomem, nostack));
    }
    acc
}

/// Generates a gemm over any block format from a per-(row block, token block) dot.
macro_rules! gemm_per_block {
    ($name:ident, $inner:ident, $feat:literal, $B:ty, $dot:ident, $blocks_per:expr) => {
        fn $name(
            w: &[$B],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            check_gemm(w.len(), nbw, x.len(), nbx, rows, toks, out.len(), ldo);
            assert!(nbx >= nbw * $blocks_per);
            unsafe { $inner(w, nbw, x, nbx, rows, toks, out, ldo) }
        }

        #[target_feature(enable = $feat)]
        unsafe fn $inner(
            w: &[$B],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            for r in 0..rows {
                let wr = unsafe { w.get_unchecked(r * nbw..(r + 1) * nbw) };
                for t in 0..toks {
                    let xr = unsafe { x.get_unchecked(t * nbx..t * nbx + nbw * $blocks_per) };
                    unsafe { *out.get_unchecked_mut(r * ldo + t) = $dot(wr, xr) };
                }
            }
        }
    };
}

macro_rules! q4_0_dot {
    ($name:ident, $feat:literal, $dot16:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[BlockQ4_0], x: &[BlockQ8A]) -> f32 {
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 2];
                for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
                    let (lo, hi) = q4_halves(wb);
                    let s = $dot16(vdupq_n_s32(0), lo, vld1q_s8(xb.qs.as_ptr()));
                    let s = $dot16(s, hi, vld1q_s8(xb.qs.as_ptr().add(16)));
                    acc[i & 1] = vfmaq_n_f32(acc[i & 1], vcvtq_f32_s32(s), wb.delta.to_f32() * xb.d);
                }
                vaddvq_f32(vaddq_f32(acc[0], acc[1]))
            }
        }
    };
}

macro_rules! q8_0_dot {
    ($name:ident, $feat:literal, $dot16:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[BlockQ8_0], x: &[BlockQ8A]) -> f32 {
            unsafe {
                let mut acc = [vdupq_n_f32(0.0); 2];
                for (i, (wb, xb)) in w.iter().zip(x).enumerate() {
                    let s = $dot16(vdupq_n_s32(0), vld1q_s8(wb.quants.as_ptr()), vld1q_s8(xb.qs.as_ptr()));
                    let s = $dot16(s, vld1q_s8(wb.quants.as_ptr().add(16)), vld1q_s8(xb.qs.as_ptr().add(16)));
                    acc[i & 1] = vfmaq_n_f32(acc[i & 1], vcvtq_f32_s32(s), wb.delta.to_f32() * xb.d);
                }
                vaddvq_f32(vaddq_f32(acc[0], acc[1]))
            }
        }
    };
}

macro_rules! q4k_dot {
    ($name:ident, $feat:literal, $dot16:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[BlockQ4K], x: &[BlockQ8A]) -> f32 {
            unsafe {
                let m4 = vdupq_n_u8(0x0F);
                let mut acc = vdupq_n_f32(0.0);
                let mut mins = 0f32;
                for (wb, xs) in w.iter().zip(x.chunks_exact(8)) {
                    let (d, dmin) = (wb.d.to_f32(), wb.dmin.to_f32());
                    for c in 0..4 {
                        let q0 = vld1q_u8(wb.qs.as_ptr().add(32 * c));
                        let q1 = vld1q_u8(wb.qs.as_ptr().add(32 * c + 16));
                        for (j, sub) in [
                            (2 * c, [vandq_u8(q0, m4), vandq_u8(q1, m4)]),
                            (2 * c + 1, [vshrq_n_u8::<4>(q0), vshrq_n_u8::<4>(q1)]),
                        ] {
                            let xb = &xs[j];
                            let s = $dot16(vdupq_n_s32(0), vreinterpretq_s8_u8(sub[0]), vld1q_s8(xb.qs.as_ptr()));
                            let s = $dot16(s, vreinterpretq_s8_u8(sub[1]), vld1q_s8(xb.qs.as_ptr().add(16)));
                            let (sc, m) = scale_min(j, &wb.scales);
                            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), d * sc as f32 * xb.d);
                            mins += dmin * m as f32 * xb.s;
                        }
                    }
                }
                vaddvq_f32(acc) - mins
            }
        }
    };
}

q4_0_dot!(dot_q4_0_neon, "neon", dot16_neon);
q4_0_dot!(dot_q4_0_sdot, "neon,dotprod", dot16_sdot);
q8_0_dot!(dot_q8_0_neon, "neon", dot16_neon);
q8_0_dot!(dot_q8_0_sdot, "neon,dotprod", dot16_sdot);
q4k_dot!(dot_q4k_neon, "neon", dot16_neon);
q4k_dot!(dot_q4k_sdot, "neon,dotprod", dot16_sdot);

gemm_per_block!(gemm_q4_0_neon, gemm_q4_0_neon_impl, "neon", BlockQ4_0, dot_q4_0_neon, 1);
gemm_per_block!(gemm_q4_0_dotprod, gemm_q4_0_dotprod_impl, "neon,dotprod", BlockQ4_0, dot_q4_0_sdot, 1);
gemm_per_block!(gemm_q8_0_neon, gemm_q8_0_neon_impl, "neon", BlockQ8_0, dot_q8_0_neon, 1);
gemm_per_block!(gemm_q8_0_dotprod, gemm_q8_0_dotprod_impl, "neon,dotprod", BlockQ8_0, dot_q8_0_sdot, 1);
gemm_per_block!(gemm_q4k_neon, gemm_q4k_neon_impl, "neon", BlockQ4K, dot_q4k_neon, 8);
gemm_per_block!(gemm_q4k_dotprod, gemm_q4k_dotprod_impl, "neon,dotprod", BlockQ4K, dot_q4k_sdot, 8);

/// 2x2 block of 8-byte dot products: acc += [a0·b0, a0·b1, a1·b0, a1·b1] where a = [a0 | a1]
/// and b = [b0 | b1] hold two 8-byte rows each.
#[inline]
#[target_feature(enable = "i8mm")]
unsafe fn smmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    unsafe {
        asm!("smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b", acc = inout(vreg) acc, a = in(vreg) a, b = in(vreg) b,
             options(pure, nomem, nostack));
    }
    acc
}

/// Interleaves 8-byte halves of two rows: ([r0 lo | r1 lo], [r0 hi | r1 hi]).
#[inline]
unsafe fn zip64(r0: int8x16_t, r1: int8x16_t) -> (int8x16_t, int8x16_t) {
    unsafe {
        let (a, b) = (vreinterpretq_s64_s8(r0), vreinterpretq_s64_s8(r1));
        (vreinterpretq_s8_s64(vzip1q_s64(a, b)), vreinterpretq_s8_s64(vzip2q_s64(a, b)))
    }
}

fn gemm_q4_0_i8mm(
    w: &[BlockQ4_0],
    nbw: usize,
    x: &[BlockQ8A],
    nbx: usize,
    rows: usize,
    toks: usize,
    out: &mut [f32],
    ldo: usize,
) {
    check_gemm(w.len(), nbw, x.len(), nbx, rows, toks, out.len(), ldo);
    assert!(nbx >= nbw);
    unsafe { gemm_q4_0_i8mm_impl(w, nbw, x, nbx, rows, toks, out, ldo) }
}

/// Pairs of rows x pairs of tokens through SMMLA; odd leftovers through the SDOT dot.
#[target_feature(enable = "neon,dotprod,i8mm")]
unsafe fn gemm_q4_0_i8mm_impl(
    w: &[BlockQ4_0],
    nbw: usize,
    x: &[BlockQ8A],
    nbx: usize,
    rows: usize,
    toks: usize,
    out: &mut [f32],
    ldo: usize,
) {
    let (r2, t2) = (rows / 2 * 2, toks / 2 * 2);
    for r in (0..r2).step_by(2) {
        for t in (0..t2).step_by(2) {
            unsafe {
                let mut acc = vdupq_n_f32(0.0);
                for b in 0..nbw {
                    let (w0, w1) = (w.get_unchecked(r * nbw + b), w.get_unchecked((r + 1) * nbw + b));
                    let (x0, x1) = (x.get_unchecked(t * nbx + b), x.get_unchecked((t + 1) * nbx + b));
                    let ((w0lo, w0hi), (w1lo, w1hi)) = (q4_halves(w0), q4_halves(w1));
                    let (x0a, x0b) = (vld1q_s8(x0.qs.as_ptr()), vld1q_s8(x0.qs.as_ptr().add(16)));
                    let (x1a, x1b) = (vld1q_s8(x1.qs.as_ptr()), vld1q_s8(x1.qs.as_ptr().add(16)));
                    // Elements 0..15 (low nibbles) then 16..31 (high), 8 at a time.
                    let mut s = vdupq_n_s32(0);
                    for (wa, wb, xa, xb) in [(w0lo, w1lo, x0a, x1a), (w0hi, w1hi, x0b, x1b)] {
                        let (wl, wh) = zip64(wa, wb);
                        let (xl, xh) = zip64(xa, xb);
                        s = smmla(smmla(s, wl, xl), wh, xh);
                    }
                    let (dw0, dw1) = (w0.delta.to_f32(), w1.delta.to_f32());
                    let scale = [dw0 * x0.d, dw0 * x1.d, dw1 * x0.d, dw1 * x1.d];
                    acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vld1q_f32(scale.as_ptr()));
                }
                let mut res = [0f32; 4];
                vst1q_f32(res.as_mut_ptr(), acc);
                *out.get_unchecked_mut(r * ldo + t) = res[0];
                *out.get_unchecked_mut(r * ldo + t + 1) = res[1];
                *out.get_unchecked_mut((r + 1) * ldo + t) = res[2];
                *out.get_unchecked_mut((r + 1) * ldo + t + 1) = res[3];
            }
        }
    }
    // Leftover rows and tokens.
    for r in 0..rows {
        let wr = unsafe { w.get_unchecked(r * nbw..(r + 1) * nbw) };
        let t_from = if r < r2 { t2 } else { 0 };
        for t in t_from..toks {
            let xr = unsafe { x.get_unchecked(t * nbx..t * nbx + nbw) };
            unsafe { *out.get_unchecked_mut(r * ldo + t) = dot_q4_0_sdot(wr, xr) };
        }
    }
}

/// Lags in blocks of 16 (four accumulators of 4); a last partial block is moved back to end at
/// the last lag, as in the AVX2 kernel.
fn xcorr_f32(a: &[f32], x: &[f32], out: &mut [f32]) {
    let n = out.len();
    if n < 16 {
        return generic::xcorr_with(dot_f32, a, x, out);
    }
    assert!(x.len() + 1 >= n + a.len(), "xcorr: x too short");
    let mut l = 0;
    loop {
        // SAFETY: the assert keeps every load x[l + i], l + 16 <= out.len(), i < a.len(), in bounds.
        unsafe {
            let mut acc = [vdupq_n_f32(0.0); 4];
            for (i, &ai) in a.iter().enumerate() {
                for (k, acc) in acc.iter_mut().enumerate() {
                    *acc = vfmaq_n_f32(*acc, vld1q_f32(x.as_ptr().add(l + i + 4 * k)), ai);
                }
            }
            for (k, acc) in acc.iter().enumerate() {
                vst1q_f32(out.as_mut_ptr().add(l + 4 * k), *acc);
            }
        }
        if l + 16 == n {
            return;
        }
        l = (l + 16).min(n - 16);
    }
}

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                *acc = vfmaq_f32(*acc, vld1q_f32(a.as_ptr().add(i + 4 * k)), vld1q_f32(b.as_ptr().add(i + 4 * k)));
            }
            i += 16;
        }
        while i + 4 <= n {
            acc[0] = vfmaq_f32(acc[0], vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i)));
            i += 4;
        }
        let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
        for j in i..n {
            s += a[j] * b[j];
        }
        s
    }
}

fn axpy_f32(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    unsafe {
        let mut i = 0;
        while i + 4 <= n {
            let py = y.as_mut_ptr().add(i);
            vst1q_f32(py, vfmaq_n_f32(vld1q_f32(py), vld1q_f32(x.as_ptr().add(i)), alpha));
            i += 4;
        }
        for j in i..n {
            y[j] += alpha * x[j];
        }
    }
}

/// int8 x f32 dot: widen 8 bytes to two f32x4 vectors at a time.
fn dot_i8(a: &[i8], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut i = 0;
        while i + 8 <= n {
            let w = vmovl_s8(vld1_s8(a.as_ptr().add(i)));
            let lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
            let hi = vcvtq_f32_s32(vmovl_high_s16(w));
            acc[0] = vfmaq_f32(acc[0], lo, vld1q_f32(b.as_ptr().add(i)));
            acc[1] = vfmaq_f32(acc[1], hi, vld1q_f32(b.as_ptr().add(i + 4)));
            i += 8;
        }
        let mut s = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
        for j in i..n {
            s += a[j] as f32 * b[j];
        }
        s
    }
}

fn axpy_i8(alpha: f32, x: &[i8], y: &mut [f32]) {
    let n = x.len().min(y.len());
    unsafe {
        let mut i = 0;
        while i + 8 <= n {
            let w = vmovl_s8(vld1_s8(x.as_ptr().add(i)));
            let lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
            let hi = vcvtq_f32_s32(vmovl_high_s16(w));
            let py = y.as_mut_ptr().add(i);
            vst1q_f32(py, vfmaq_n_f32(vld1q_f32(py), lo, alpha));
            vst1q_f32(py.add(4), vfmaq_n_f32(vld1q_f32(py.add(4)), hi, alpha));
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * x[j] as f32;
        }
    }
}
