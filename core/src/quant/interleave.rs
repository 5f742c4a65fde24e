//! Q4_0_R16: Q4_0 with 16 rows interleaved, written by the converter so that decode's
//! matrix-vector product reads weights the way the 512-bit kernel consumes them.
//!
//! Why: a plain Q4_0 block is 18 bytes (an f16 scale, then 16 bytes of nibbles), so a vector
//! of one row's quants never sits at an aligned offset, and the decode kernel spent most of
//! its instructions permuting blocks into place and reducing per-row sums. Here one 32-bit lane
//! of a 64-byte vector holds 4 quant bytes of one row, for 16 rows side by side: `vpdpbusd`
//! with the 4 matching activation bytes broadcast leaves each row's partial dot product in its
//! own lane, with no permutes and no horizontal sums (about 2.4x fewer instructions per weight
//! byte), and every load is aligned. llama.cpp gets its decode speed from the same idea, but
//! repacks at load time into an anonymous copy; writing it into the file keeps the memory map
//! zero-copy and the process's memory at one copy of the weights.
//!
//! The bytes are a permutation of the plain Q4_0 tensor (same size, same values): each group
//! of 16 consecutive rows (`nbw` blocks each) is stored as
//!
//! ```text
//! scales: [nbw][16] f16            block b's scale of row r at (b * 16 + r) * 2
//! quants: [nbw][4][16][4] u8       bytes 4k..4k+4 of row r's block b at ((b * 4 + k) * 16 + r) * 4
//! ```
//!
//! so a group is `nbw * 288` bytes, like 16 plain rows. A tensor's row count must be a
//! multiple of 16 (the loader checks it; the converter keeps other matrices plain).

use super::blocks::{BlockQ4_0, QK};
use half::f16;

/// Rows per interleaved group.
pub const ROWS: usize = 16;

/// Why a stored Q4_0_R16 tensor of `rows` rows cannot be served (as the type text of an
/// `UnsupportedTensorType` error), or `None` if it can. The token embedding (`embedding`) is
/// refused by the model loader, which reads it one row at a time; conversion reads any.
pub fn refusal(rows: u64, embedding: bool) -> Option<String> {
    let bad_rows = !rows.is_multiple_of(ROWS as u64);
    (bad_rows || embedding)
        .then(|| format!("Q4_0_R16 with {rows} rows (interleaving needs a multiple of {ROWS}; not for the embedding)"))
}
/// Bytes of one block column of a group: 16 scales and 16 x 16 quant bytes.
pub const COLUMN_BYTES: usize = ROWS * 2 + ROWS * QK / 2;
const _: () = assert!(COLUMN_BYTES == ROWS * std::mem::size_of::<BlockQ4_0>());

/// Bytes of one group of 16 rows of `nbw` blocks.
pub const fn group_bytes(nbw: usize) -> usize {
    nbw * COLUMN_BYTES
}

/// Offset of the quants within a group.
pub const fn quants_offset(nbw: usize) -> usize {
    nbw * ROWS * 2
}

/// Interleaves plain Q4_0 rows (`rows` a multiple of 16, `nbw` blocks each) into `out`.
pub fn interleave(plain: &[BlockQ4_0], nbw: usize, out: &mut Vec<u8>) {
    assert!(nbw > 0 && plain.len().is_multiple_of(ROWS * nbw), "Q4_0_R16 needs whole groups of 16 rows");
    for group in plain.chunks_exact(ROWS * nbw) {
        let start = out.len();
        out.resize(start + group_bytes(nbw), 0);
        let g = &mut out[start..];
        let q0 = quants_offset(nbw);
        for r in 0..ROWS {
            for (b, blk) in group[r * nbw..(r + 1) * nbw].iter().enumerate() {
                let s = (b * ROWS + r) * 2;
                g[s..s + 2].copy_from_slice(&blk.delta.to_le_bytes());
                for k in 0..4 {
                    let q = q0 + ((b * 4 + k) * ROWS + r) * 4;
                    g[q..q + 4].copy_from_slice(&blk.quants[4 * k..4 * k + 4]);
                }
            }
        }
    }
}

/// Row `r` (0..16) of a group, as plain blocks.
pub fn group_row(group: &[u8], nbw: usize, r: usize, out: &mut [BlockQ4_0]) {
    assert!(group.len() >= group_bytes(nbw) && out.len() >= nbw && r < ROWS);
    let q0 = quants_offset(nbw);
    for (b, blk) in out[..nbw].iter_mut().enumerate() {
        let s = (b * ROWS + r) * 2;
        blk.delta = f16::from_le_bytes([group[s], group[s + 1]]);
        for k in 0..4 {
            let q = q0 + ((b * 4 + k) * ROWS + r) * 4;
            blk.quants[4 * k..4 * k + 4].copy_from_slice(&group[q..q + 4]);
        }
    }
}

/// Whole groups back to plain rows: `out` gets `bytes.len() / group_bytes(nbw) * 16` rows.
pub fn deinterleave(bytes: &[u8], nbw: usize, out: &mut [BlockQ4_0]) {
    for (g, group) in bytes.chunks_exact(group_bytes(nbw)).enumerate() {
        for r in 0..ROWS {
            let row = (g * ROWS + r) * nbw;
            group_row(group, nbw, r, &mut out[row..row + nbw]);
        }
    }
}

/// Row `r` of an interleaved tensor of `nbw`-block rows, as plain blocks.
pub fn row(bytes: &[u8], nbw: usize, r: usize, out: &mut [BlockQ4_0]) {
    let gb = group_bytes(nbw);
    group_row(&bytes[r / ROWS * gb..(r / ROWS + 1) * gb], nbw, r % ROWS, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{blocks_as_bytes, zeroed_q4_0};
    use rand::{Rng, SeedableRng};

    fn random_blocks(n: usize, seed: u64) -> Vec<BlockQ4_0> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut b = BlockQ4_0 { delta: f16::from_f32(rng.random_range(-1.0..1.0)), quants: [0; QK / 2] };
                rng.fill(&mut b.quants[..]);
                b
            })
            .collect()
    }

    #[test]
    fn interleave_round_trips_and_keeps_size() {
        for (groups, nbw) in [(1, 1), (2, 3), (3, 80), (1, 7)] {
            let plain = random_blocks(groups * ROWS * nbw, nbw as u64);
            let mut bytes = Vec::new();
            interleave(&plain, nbw, &mut bytes);
            assert_eq!(bytes.len(), blocks_as_bytes(&plain).len());
            let mut back = zeroed_q4_0(plain.len());
            deinterleave(&bytes, nbw, &mut back);
            assert_eq!(blocks_as_bytes(&back), blocks_as_bytes(&plain));
            for r in [0, 5, groups * ROWS - 1] {
                let mut one = zeroed_q4_0(nbw);
                row(&bytes, nbw, r, &mut one);
                assert_eq!(blocks_as_bytes(&one), blocks_as_bytes(&plain[r * nbw..(r + 1) * nbw]), "row {r}");
            }
        }
    }

    #[test]
    fn layout_puts_one_row_per_lane() {
        let plain = random_blocks(ROWS * 2, 9);
        let mut bytes = Vec::new();
        interleave(&plain, 2, &mut bytes);
        // Block 1 of row 5: scale at (1*16+5)*2, quant bytes 8..12 at quants + ((1*4+2)*16+5)*4.
        assert_eq!(&bytes[42..44], &plain[5 * 2 + 1].delta.to_le_bytes());
        let q = quants_offset(2) + (6 * 16 + 5) * 4;
        assert_eq!(&bytes[q..q + 4], &plain[5 * 2 + 1].quants[8..12]);
    }
}
