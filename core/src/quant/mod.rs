//! Weight block formats (GGML layouts) and their row-level quantizers and dequantizers, used by
//! the converter, `pocketlm quantize`, `pocketlm synth` and the reference paths of the tests.

pub mod blocks;
pub mod interleave;
pub mod q4k;

pub use blocks::{as_blocks, blocks_as_bytes, zeroed_q4_0, Block, BlockQ4K, BlockQ4_0, BlockQ8A, BlockQ8_0, QK, QK_K};

use crate::gguf::GgmlType;
use ggml_quants::Quantize;
use half::f16;

/// Types a weight matrix can be stored in.
pub fn is_weight_type(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_0R16 | GgmlType::Q4K)
}

/// Encodes one row of `x` (length a multiple of the type's block size) as `ty`, appending to `out`.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => x.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => x.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        GgmlType::Q4_0 => {
            for c in x.chunks_exact(QK) {
                let b = BlockQ4_0::quantize(c.try_into().unwrap_or(&[0.0; QK]));
                out.extend_from_slice(blocks_as_bytes(&[b]));
            }
        }
        GgmlType::Q8_0 => {
            for c in x.chunks_exact(QK) {
                let b = BlockQ8_0::quantize(c.try_into().unwrap_or(&[0.0; QK]));
                out.extend_from_slice(blocks_as_bytes(&[b]));
            }
        }
        GgmlType::Q4K => {
            for c in x.chunks_exact(QK_K) {
                let b = q4k::quantize_block(c.try_into().unwrap_or(&[0.0; QK_K]));
                out.extend_from_slice(blocks_as_bytes(&[b]));
            }
        }
        other => unreachable!("{other} is not a weight type"),
    }
}

/// Row `r` of a whole tensor's bytes (`cols` elements per row) into `out`. Unlike
/// [`dequantize_row`] this also reads interleaved layouts, whose rows are not contiguous.
pub fn dequantize_tensor_row(ty: GgmlType, tensor: &[u8], cols: usize, r: usize, out: &mut [f32]) {
    if ty == GgmlType::Q4_0R16 {
        let mut blocks = zeroed_q4_0(cols / QK);
        interleave::row(tensor, cols / QK, r, &mut blocks);
        return dequantize_row(GgmlType::Q4_0, blocks_as_bytes(&blocks), out);
    }
    let n = ty.row_bytes(cols as u64).unwrap_or(0) as usize;
    dequantize_row(ty, &tensor[r * n..(r + 1) * n], out)
}

/// Encodes a [rows][cols] matrix as `ty` (rows in parallel: Q4_K's fitting search is the slow
/// part). Q4_0_R16 needs a multiple of 16 rows and a multiple of 32 columns.
pub fn quantize_matrix(ty: GgmlType, data: &[f32], cols: usize) -> Vec<u8> {
    use rayon::prelude::*;
    let row_ty = if ty == GgmlType::Q4_0R16 { GgmlType::Q4_0 } else { ty };
    let row_bytes = row_ty.row_bytes(cols as u64).unwrap_or(0) as usize;
    let rows: Vec<Vec<u8>> = data
        .par_chunks(cols)
        .map(|r| {
            let mut b = Vec::with_capacity(row_bytes);
            quantize_row(row_ty, r, &mut b);
            b
        })
        .collect();
    let plain = rows.concat();
    if ty != GgmlType::Q4_0R16 {
        return plain;
    }
    let mut out = Vec::with_capacity(plain.len());
    interleave::interleave(as_blocks(&plain).unwrap_or(&[]), cols / QK, &mut out);
    out
}

/// Decodes one row of `ty` bytes into `out` (its length is the row's element count).
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => out.iter_mut().zip(bytes.chunks_exact(4)).for_each(|(o, b)| {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }),
        GgmlType::F16 => {
            out.iter_mut().zip(bytes.chunks_exact(2)).for_each(|(o, b)| *o = f16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        GgmlType::Q4_0 => {
            for (b, o) in as_blocks::<BlockQ4_0>(bytes).unwrap_or(&[]).iter().zip(out.chunks_exact_mut(QK)) {
                o.copy_from_slice(&Quantize::<f32, QK>::dequantize(b));
            }
        }
        GgmlType::Q8_0 => {
            for (b, o) in as_blocks::<BlockQ8_0>(bytes).unwrap_or(&[]).iter().zip(out.chunks_exact_mut(QK)) {
                o.copy_from_slice(&Quantize::<f32, QK>::dequantize(b));
            }
        }
        GgmlType::Q4K => {
            for (b, o) in as_blocks::<BlockQ4K>(bytes).unwrap_or(&[]).iter().zip(out.chunks_exact_mut(QK_K)) {
                q4k::dequantize_block(b, o);
            }
        }
        other => unreachable!("{other} is not a weight type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn roundtrip_rmse(ty: GgmlType, x: &[f32]) -> (f32, f32) {
        let mut bytes = Vec::new();
        quantize_row(ty, x, &mut bytes);
        assert_eq!(bytes.len() as u64, ty.row_bytes(x.len() as u64).unwrap());
        let mut y = vec![0f32; x.len()];
        dequantize_row(ty, &bytes, &mut y);
        let mse: f32 = x.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / x.len() as f32;
        let max = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        (mse.sqrt(), max)
    }

    /// Round-trip error on Gaussian data, relative to the data's standard deviation, within
    /// what each format's bit budget allows (bounds a little above GGML's published figures:
    /// Q8_0 ~0.4%, Q4_K ~7%, Q4_0 ~10% RMS of sigma).
    #[test]
    fn round_trip_error_per_format() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let x: Vec<f32> = (0..QK_K * 64)
            .map(|_| {
                let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
                (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
            })
            .collect();
        for (ty, rel_rmse, rel_max) in [
            (GgmlType::F16, 1e-3, 2e-3),
            (GgmlType::Q8_0, 0.006, 0.03),
            (GgmlType::Q4K, 0.08, 0.35),
            (GgmlType::Q4_0, 0.12, 0.6),
        ] {
            let (rmse, max) = roundtrip_rmse(ty, &x);
            println!("{ty}: rmse {rmse:.4} max {max:.4} (sigma 1)");
            assert!(rmse < rel_rmse && max < rel_max, "{ty}: rmse {rmse} max {max}");
        }
        // Q4_K beats Q4_0 on the same data: its affine fit is the point of the format.
        assert!(roundtrip_rmse(GgmlType::Q4K, &x).0 < roundtrip_rmse(GgmlType::Q4_0, &x).0);
    }

    #[test]
    fn zeros_and_constant_blocks_are_exact() {
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K] {
            assert_eq!(roundtrip_rmse(ty, &[0.0; QK_K]).1, 0.0, "{ty}");
        }
        let (_, max) = roundtrip_rmse(GgmlType::Q4K, &[-3.0; QK_K]);
        assert!(max < 0.05, "{max}");
    }

    #[test]
    fn scale_min_packing_round_trips_all_codes() {
        for a in 0..64u8 {
            let mut sc = [0u8; 12];
            let codes: Vec<(u8, u8)> = (0..8).map(|j| ((a + 7 * j as u8) % 64, (a + 13 * j as u8 + 5) % 64)).collect();
            for (j, &(ls, lm)) in codes.iter().enumerate() {
                if j < 4 {
                    sc[j] = ls;
                    sc[j + 4] = lm;
                } else {
                    sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
                    sc[j - 4] |= (ls >> 4) << 6;
                    sc[j] |= (lm >> 4) << 6;
                }
            }
            for (j, &c) in codes.iter().enumerate() {
                assert_eq!(q4k::scale_min(j, &sc), c);
            }
        }
    }
}
