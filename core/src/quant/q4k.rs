//! Q4_K quantization and dequantization, following GGML's reference (`quantize_row_q4_K_ref`
//! with `make_qkx2_quants`): per 32-wide sub-block an affine fit (scale, min) refined by a small
//! search, then scales and mins quantized to 6 bits against two f16 super-block factors.

use super::blocks::{BlockQ4K, QK_K};
use half::f16;

/// (scale, min) 6-bit codes of sub-block `j`.
#[inline]
pub fn scale_min(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

fn nearest(x: f32) -> i32 {
    x.round() as i32
}

/// Weighted affine fit of `x` to levels 0..=nmax; returns (scale, -min) and fills `l`.
fn make_qkx2_quants(x: &[f32], w: &[f32], nmax: i32, l: &mut [u8], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let n = x.len();
    let mut min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum_w: f32 = w.iter().sum();
    let sum_x: f32 = x.iter().zip(w).map(|(x, w)| x * w).sum();
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        l.iter_mut().for_each(|v| *v = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0f32;
    for i in 0..n {
        let q = nearest(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best += w[i] * diff * diff;
    }
    let mut aux = vec![0u8; n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sl, mut sl2, mut sxl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let q = nearest(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = q as u8;
            let qf = q as f32;
            sl += w[i] * qf;
            sl2 += w[i] * qf * qf;
            sxl += w[i] * qf * x[i];
        }
        let det = sum_w * sl2 - sl * sl;
        if det > 0.0 {
            let mut this_scale = (sum_w * sxl - sum_x * sl) / det;
            let mut this_min = (sl2 * sum_x - sl * sxl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sxl / sl2;
            }
            let err: f32 = (0..n)
                .map(|i| {
                    let d = this_scale * aux[i] as f32 + this_min - x[i];
                    w[i] * d * d
                })
                .sum();
            if err < best {
                l.copy_from_slice(&aux);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

pub fn quantize_block(x: &[f32; QK_K]) -> BlockQ4K {
    let mut levels = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut weights = [0f32; 32];
    for j in 0..8 {
        let xs = &x[32 * j..32 * (j + 1)];
        let av = (xs.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av + v.abs();
        }
        let (s, m) = make_qkx2_quants(xs, &weights, 15, &mut levels[32 * j..32 * (j + 1)], -1.0, 0.1, 20);
        scales[j] = s;
        mins[j] = m;
    }
    let max_scale = scales.iter().copied().fold(0f32, f32::max);
    let max_min = mins.iter().copied().fold(0f32, f32::max);
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sc = [0u8; 12];
    for j in 0..8 {
        let ls = nearest(inv_scale * scales[j]).clamp(0, 63) as u8;
        let lm = nearest(inv_min * mins[j]).clamp(0, 63) as u8;
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    // Re-fit the levels against the scales as they will actually be decoded.
    for j in 0..8 {
        let (s, m) = scale_min(j, &sc);
        let dd = d.to_f32() * s as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 0..32 {
            levels[32 * j + i] = nearest((x[32 * j + i] + dm) / dd).clamp(0, 15) as u8;
        }
    }
    let mut qs = [0u8; QK_K / 2];
    for c in 0..4 {
        for i in 0..32 {
            qs[32 * c + i] = levels[64 * c + i] | (levels[64 * c + 32 + i] << 4);
        }
    }
    BlockQ4K { d, dmin, scales: sc, qs }
}

pub fn dequantize_block(b: &BlockQ4K, out: &mut [f32]) {
    let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
    for c in 0..4 {
        let (s0, m0) = scale_min(2 * c, &b.scales);
        let (s1, m1) = scale_min(2 * c + 1, &b.scales);
        let (d0, d1) = (d * s0 as f32, d * s1 as f32);
        let (n0, n1) = (dmin * m0 as f32, dmin * m1 as f32);
        for i in 0..32 {
            let q = b.qs[32 * c + i];
            out[64 * c + i] = d0 * (q & 0xF) as f32 - n0;
            out[64 * c + 32 + i] = d1 * (q >> 4) as f32 - n1;
        }
    }
}
