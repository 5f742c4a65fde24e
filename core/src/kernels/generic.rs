//! Scalar reference kernels: the definition every SIMD kernel is tested against, and the
//! fallback on CPUs without a SIMD path. Written for clarity, not speed.

use crate::quant::{q4k::scale_min, BlockQ4K, BlockQ4_0, BlockQ8A, BlockQ8_0, QK};
use half::f16;

/// Quantizes `x` (a multiple of 32 long) to activation blocks: d = max|x|/127, q = round(x/d)
/// (ties to even, as the SIMD converts round), s = d * Σq.
pub fn quantize_q8a(x: &[f32], out: &mut [BlockQ8A]) {
    for (xs, b) in x.chunks_exact(QK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xs) {
            *q = (v * id).round_ties_even() as i8;
            sum += *q as i32;
        }
        b.d = d;
        b.s = d * sum as f32;
    }
}

/// Σ over blocks of the exact integer dot, scaled per block.
pub fn dot_q4_0(w: &[BlockQ4_0], x: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (wb, xb) in w.iter().zip(x) {
        let mut sum = 0i32;
        for j in 0..QK / 2 {
            sum += (wb.quants[j] & 0xF) as i32 * xb.qs[j] as i32;
            sum += (wb.quants[j] >> 4) as i32 * xb.qs[j + QK / 2] as i32;
        }
        // Σ (q-8)·x = Σ q·x - 8 Σ x, with d_x Σ x = s.
        let dw = wb.delta.to_f32();
        acc += dw * (xb.d * sum as f32 - 8.0 * xb.s);
    }
    acc
}

pub fn dot_q8_0(w: &[BlockQ8_0], x: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (wb, xb) in w.iter().zip(x) {
        let sum: i32 = wb.quants.iter().zip(&xb.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
        acc += wb.delta.to_f32() * xb.d * sum as f32;
    }
    acc
}

/// Q4_K super-blocks against 8 activation blocks each.
pub fn dot_q4k(w: &[BlockQ4K], x: &[BlockQ8A]) -> f32 {
    let mut acc = 0f32;
    for (wb, xs) in w.iter().zip(x.chunks_exact(8)) {
        let (d, dmin) = (wb.d.to_f32(), wb.dmin.to_f32());
        for (j, xb) in xs.iter().enumerate() {
            let (sc, m) = scale_min(j, &wb.scales);
            let qs = &wb.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let sum: i32 = qs.iter().zip(&xb.qs).map(|(&q, &v)| ((q >> shift) & 0xF) as i32 * v as i32).sum();
            acc += d * sc as f32 * xb.d * sum as f32 - dmin * m as f32 * xb.s;
        }
    }
    acc
}

pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn dot_f16(a: &[f16], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x.to_f32() * y).sum()
}

/// y += a * x
pub fn axpy_f32(a: f32, x: &[f32], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

pub fn axpy_f16(a: f32, x: &[f16], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x.to_f32());
}

pub fn dot_i8(a: &[i8], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(&x, y)| x as f32 * y).sum()
}

pub fn axpy_i8(a: f32, x: &[i8], y: &mut [f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x as f32);
}

/// Generic tile: out[r * ldo + t] = dot(row r, token t), rows of `nbw` weight blocks and token
/// rows of `nbx` activation blocks.
pub fn gemm<B>(
    dot: impl Fn(&[B], &[BlockQ8A]) -> f32,
    w: &[B],
    nbw: usize,
    x: &[BlockQ8A],
    nbx: usize,
    rows: usize,
    toks: usize,
    out: &mut [f32],
    ldo: usize,
) {
    for r in 0..rows {
        for t in 0..toks {
            out[r * ldo + t] = dot(&w[r * nbw..(r + 1) * nbw], &x[t * nbx..(t + 1) * nbx]);
        }
    }
}
