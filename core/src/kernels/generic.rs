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
        b.sum = sum;
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

/// The reference for Q4_0_R16 decode: each row de-interleaved, then [`dot_q4_0`].
pub fn gemv_q4_0r16(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize) {
    use crate::quant::interleave::{group_bytes, group_row, ROWS};
    let mut row = crate::quant::zeroed_q4_0(nbw);
    for (g, group) in w.chunks_exact(group_bytes(nbw)).enumerate() {
        for r in 0..ROWS {
            group_row(group, nbw, r, &mut row);
            out[(g * ROWS + r) * ldo] = dot_q4_0(&row, x);
        }
    }
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

/// `out[l] = Σ_i a[i]·x[l + i]`; `x` must hold `out.len() - 1 + a.len()` samples.
pub fn xcorr_f32(a: &[f32], x: &[f32], out: &mut [f32]) {
    xcorr_with(dot_f32, a, x, out)
}

/// [`xcorr_f32`] one lag at a time with a one-row dot: the reference, and the SIMD kernels'
/// path for too few lags to fill their blocks.
#[inline(always)]
pub fn xcorr_with(dot: impl Fn(&[f32], &[f32]) -> f32, a: &[f32], x: &[f32], out: &mut [f32]) {
    assert!(out.is_empty() || x.len() + 1 >= out.len() + a.len(), "xcorr: x too short");
    for (l, o) in out.iter_mut().enumerate() {
        *o = dot(a, &x[l..l + a.len()]);
    }
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

/// Attention scores of a block of queries against a tile of keys stored transposed
/// (`kt[c * nk + j]` = key j, component c): `s[i * nk + j] = Σ_c q[i * d + c] · kt[c * nk + j]`.
pub fn qk_tile(q: &[f32], kt: &[f32], d: usize, nk: usize, s: &mut [f32]) {
    qk_entries(q, kt, d, nk, s, 0..q.len() / d.max(1), 0..nk);
}

/// Weighted values of a tile: `o[i * d + c] += Σ_j p[i * nk + j] · v[j * d + c]`.
pub fn pv_tile(p: &[f32], v: &[f32], d: usize, nk: usize, o: &mut [f32]) {
    pv_entries(p, v, d, nk, o, 0..o.len() / d.max(1), 0..d);
}

fn qk_entries(
    q: &[f32],
    kt: &[f32],
    d: usize,
    nk: usize,
    s: &mut [f32],
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    for i in rows {
        for j in cols.clone() {
            s[i * nk + j] = (0..d).map(|c| q[i * d + c] * kt[c * nk + j]).sum();
        }
    }
}

fn pv_entries(
    p: &[f32],
    v: &[f32],
    d: usize,
    nk: usize,
    o: &mut [f32],
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    for i in rows {
        for c in cols.clone() {
            o[i * d + c] += (0..nk).map(|j| p[i * nk + j] * v[j * d + c]).sum::<f32>();
        }
    }
}

/// Register-tiled [`qk_tile`]: 4 queries x 16 keys of accumulators, written so the compiler
/// keeps them in vector registers (SIMD sets compile it with their target features): fixed
/// trip counts, rows sliced up front so no bounds check sits in the inner loop. The edges fall
/// back to the plain loops.
#[inline(always)]
pub fn qk_tile_blocked(q: &[f32], kt: &[f32], d: usize, nk: usize, s: &mut [f32]) {
    let nq = q.len() / d.max(1);
    assert!(kt.len() >= d * nk && s.len() >= nq * nk);
    let (nq4, nk16) = (nq / 4 * 4, nk / 16 * 16);
    for i in (0..nq4).step_by(4) {
        let qr: [&[f32]; 4] = std::array::from_fn(|r| &q[(i + r) * d..(i + r + 1) * d]);
        for j in (0..nk16).step_by(16) {
            let mut acc = [[0f32; 16]; 4];
            for c in 0..d {
                let k: [f32; 16] = kt[c * nk + j..c * nk + j + 16].try_into().unwrap();
                let qv = [qr[0][c], qr[1][c], qr[2][c], qr[3][c]];
                for r in 0..4 {
                    for jj in 0..16 {
                        acc[r][jj] += qv[r] * k[jj];
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                s[(i + r) * nk + j..(i + r) * nk + j + 16].copy_from_slice(a);
            }
        }
        qk_entries(q, kt, d, nk, s, i..i + 4, nk16..nk);
    }
    qk_entries(q, kt, d, nk, s, nq4..nq, 0..nk);
}

/// Register-tiled [`pv_tile`]: 4 queries x 16 value components.
#[inline(always)]
pub fn pv_tile_blocked(p: &[f32], v: &[f32], d: usize, nk: usize, o: &mut [f32]) {
    let nq = o.len() / d.max(1);
    assert!(p.len() >= nq * nk && v.len() >= nk * d);
    let (nq4, d16) = (nq / 4 * 4, d / 16 * 16);
    for i in (0..nq4).step_by(4) {
        let pr: [&[f32]; 4] = std::array::from_fn(|r| &p[(i + r) * nk..(i + r + 1) * nk]);
        for c in (0..d16).step_by(16) {
            let mut acc = [[0f32; 16]; 4];
            for (r, a) in acc.iter_mut().enumerate() {
                a.copy_from_slice(&o[(i + r) * d + c..(i + r) * d + c + 16]);
            }
            for j in 0..nk {
                let vv: [f32; 16] = v[j * d + c..j * d + c + 16].try_into().unwrap();
                let pv = [pr[0][j], pr[1][j], pr[2][j], pr[3][j]];
                for r in 0..4 {
                    for cc in 0..16 {
                        acc[r][cc] += pv[r] * vv[cc];
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                o[(i + r) * d + c..(i + r) * d + c + 16].copy_from_slice(a);
            }
        }
        pv_entries(p, v, d, nk, o, i..i + 4, d16..d);
    }
    pv_entries(p, v, d, nk, o, nq4..nq, 0..d);
}

/// `out[j] = dot(row j, q)` over consecutive rows of `q.len()` elements, with a one-row dot:
/// the decode attention's scores for a tile of keys in one call.
#[inline(always)]
pub fn dot_rows_with<T>(dot: impl Fn(&[T], &[f32]) -> f32, q: &[f32], rows: &[T], out: &mut [f32]) {
    for (o, r) in out.iter_mut().zip(rows.chunks_exact(q.len().max(1))) {
        *o = dot(r, q);
    }
}

/// `o += Σ_j p[j] · row j` over consecutive rows of `o.len()` elements, with a one-row axpy.
#[inline(always)]
pub fn axpy_rows_with<T>(axpy: impl Fn(f32, &[T], &mut [f32]), p: &[f32], rows: &[T], o: &mut [f32]) {
    let d = o.len().max(1);
    for (&w, r) in p.iter().zip(rows.chunks_exact(d)) {
        axpy(w, r, o);
    }
}

pub fn dot_rows_f16(q: &[f32], rows: &[f16], out: &mut [f32]) {
    dot_rows_with(dot_f16, q, rows, out)
}
pub fn axpy_rows_f16(p: &[f32], rows: &[f16], o: &mut [f32]) {
    axpy_rows_with(axpy_f16, p, rows, o)
}
pub fn dot_rows_i8(q: &[f32], rows: &[i8], out: &mut [f32]) {
    dot_rows_with(dot_i8, q, rows, out)
}
pub fn axpy_rows_i8(p: &[f32], rows: &[i8], o: &mut [f32]) {
    axpy_rows_with(axpy_i8, p, rows, o)
}

/// The softmax numerators of a tile: `s[i] = exp(s[i] - m)` (0 for −∞), returning their sum.
pub fn exp_sum(s: &mut [f32], m: f32) -> f32 {
    let mut sum = 0f32;
    for v in s.iter_mut() {
        *v = (*v - m).exp();
        sum += *v;
    }
    sum
}
