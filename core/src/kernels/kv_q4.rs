//! The 4-bit KV cache layout and its scalar reference kernels.
//!
//! Why a layout of its own: at 8K context the cache, not the weights, is most of what decode
//! reads per token, and 4 bits halve it against int8. But a 4-bit row of 80 values is only 40
//! bytes, and per-row dot products would spend more time on horizontal sums and nibble
//! shuffles than the memory saves. So rows are stored in tiles of [`TILE_ROWS`] positions,
//! interleaved so that one vector register holds the same few dimensions of 16 positions
//! (keys) or the same 16 dimensions of a few positions (values). Then the integer dot-product
//! instructions (`vpdpbusd`, `vpmaddubsw`, `sdot`) compute 16 scores, or 16 output dimensions,
//! at once with no horizontal reduction.
//!
//! Values: each group of [`GROUP`] dimensions of a row has an f16 scale `s`, codes `n` in 0..16,
//! value = s·(n − 8) (ggml's q4_0 rounding: the value of largest magnitude maps to −8 exactly).
//! 40 + 10 bytes per 80-value row of BTLM-3B, against 84 for the int8 cache.
//!
//! Per tile (d = head dim, a multiple of 16): 8·d bytes of codes, then separately d scales
//! `[group][row]`. Codes of row `r`, dimension `i`:
//! - keys: byte `(i / 8)·64 + 4·r + i % 4`, high nibble when `i % 8 >= 4`: a 64-byte vector is
//!   the 4-byte words of 16 rows, each word 8 dimensions;
//! - values: byte `(r / 8)·4·d + 4·i + r % 4`, high nibble when `r % 8 >= 4`: a 64-byte vector
//!   is 16 dimensions (one group) x 4 bytes of 8 rows.

use half::f16;

/// Positions per tile.
pub const TILE_ROWS: usize = 16;
/// Dimensions per scale.
pub const GROUP: usize = 16;

/// Which of the two interleavings a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Keys,
    Values,
}

/// Code bytes per tile for head dim `d`.
pub fn tile_bytes(d: usize) -> usize {
    8 * d
}

/// Byte index inside a tile and whether the code is the high nibble.
#[inline]
pub fn code_at(kind: Kind, d: usize, r: usize, i: usize) -> (usize, bool) {
    match kind {
        Kind::Keys => ((i / 8) * 64 + 4 * r + i % 4, i % 8 >= 4),
        Kind::Values => ((r / 8) * 4 * d + 4 * i + r % 4, r % 8 >= 4),
    }
}

#[inline]
pub fn get_code(kind: Kind, d: usize, tile: &[u8], r: usize, i: usize) -> u8 {
    let (b, hi) = code_at(kind, d, r, i);
    if hi {
        tile[b] >> 4
    } else {
        tile[b] & 0x0F
    }
}

#[inline]
pub fn set_code(kind: Kind, d: usize, tile: &mut [u8], r: usize, i: usize, n: u8) {
    let (b, hi) = code_at(kind, d, r, i);
    tile[b] = if hi { (tile[b] & 0x0F) | (n << 4) } else { (tile[b] & 0xF0) | (n & 0x0F) };
}

/// Quantizes one row (`x.len()` = d) into row `r` of a tile: codes into `tile`, scales into
/// `scales` (the tile's d scales). Returns the norm of the row as stored (what the attention
/// cut-off's score bound needs).
pub fn quantize_row(kind: Kind, x: &[f32], tile: &mut [u8], scales: &mut [f16], r: usize) -> f32 {
    let d = x.len();
    let mut sq = 0f32;
    for (g, xs) in x.chunks_exact(GROUP).enumerate() {
        let mx = xs.iter().copied().fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let s = mx / -8.0;
        let inv = if s != 0.0 { 1.0 / s } else { 0.0 };
        let sh = f16::from_f32(s);
        scales[g * TILE_ROWS + r] = sh;
        let mut codes2 = 0i32;
        for (j, &v) in xs.iter().enumerate() {
            let n = ((v * inv + 8.5) as u8).min(15);
            set_code(kind, d, tile, r, g * GROUP + j, n);
            codes2 += (n as i32 - 8) * (n as i32 - 8);
        }
        sq += sh.to_f32() * sh.to_f32() * codes2 as f32;
    }
    sq.sqrt()
}

/// Row `r` of a tile back to f32.
pub fn dequantize_row(kind: Kind, tile: &[u8], scales: &[f16], r: usize, out: &mut [f32]) {
    let d = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        let s = scales[(i / GROUP) * TILE_ROWS + r].to_f32();
        *o = s * (get_code(kind, d, tile, r, i) as f32 - 8.0);
    }
}

/// The tile's scales as f32, `[group][row]`.
fn scales_f32(scales: &[f16], d: usize) -> Vec<f32> {
    use half::slice::HalfFloatSliceExt;
    let mut s = vec![0f32; d];
    scales[..d].convert_to_f32_slice(&mut s);
    s
}

/// The 16 words (one per row) of key word `w`, and the shift of dimension `8w + b`'s code.
#[inline(always)]
fn key_words(tile: &[u8], w: usize) -> [u32; TILE_ROWS] {
    std::array::from_fn(|r| u32::from_le_bytes(tile[w * 64 + 4 * r..w * 64 + 4 * r + 4].try_into().unwrap()))
}

/// A whole value tile back to f32, 16 rows x d (row-major), as the prefill attention's
/// weighted sums read it. Loops run along dimensions over contiguous words, so they vectorize.
pub fn dequantize_values(tile: &[u8], scales: &[f16], out: &mut [f32]) {
    let d = out.len() / TILE_ROWS;
    let s = scales_f32(scales, d);
    for c in 0..2 {
        let words: Vec<u32> = tile[c * 4 * d..(c + 1) * 4 * d]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        for k in 0..8 {
            let r = 8 * c + k;
            let shift = 8 * (k % 4) + 4 * (k / 4);
            for (g, (o, wg)) in
                out[r * d..(r + 1) * d].chunks_exact_mut(GROUP).zip(words.chunks_exact(GROUP)).enumerate()
            {
                let sc = s[g * TILE_ROWS + r];
                for (o, &w) in o.iter_mut().zip(wg) {
                    *o = sc * (((w >> shift) & 0x0F) as f32 - 8.0);
                }
            }
        }
    }
}

/// A whole key tile back to f32, transposed: dimension `i` of row `r` into `out[i * ld + r]`,
/// the layout the prefill attention's score products read. Loops run along the 16 rows.
pub fn dequantize_keys_t(tile: &[u8], scales: &[f16], d: usize, out: &mut [f32], ld: usize) {
    let s = scales_f32(scales, d);
    for w in 0..d / 8 {
        let words = key_words(tile, w);
        let sc = &s[(w / 2) * TILE_ROWS..(w / 2 + 1) * TILE_ROWS];
        for j in 0..8 {
            let (i, shift) = (8 * w + j, 8 * (j % 4) + 4 * (j / 4));
            for ((o, &x), &sc) in out[i * ld..i * ld + TILE_ROWS].iter_mut().zip(&words).zip(sc) {
                *o = sc * (((x >> shift) & 0x0F) as f32 - 8.0);
            }
        }
    }
}

/// Int8 query for [`dot_tiles`]: `q ≈ scale · q8` (symmetric, round to nearest even).
pub fn quantize_query(q: &[f32], q8: &mut [i8]) -> f32 {
    let amax = q.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale != 0.0 { 127.0 / amax } else { 0.0 };
    for (o, &v) in q8.iter_mut().zip(q) {
        *o = (v * inv).round_ties_even() as i8;
    }
    scale
}

/// Int8 weights of one (tile, group) for [`axpy_tiles`]: `w ≈ ws · w8`; `None` when all are 0.
/// The SIMD kernels round the same way (`127 / max|w|`, nearest even), so they agree exactly.
pub fn quantize_weights(w: &[f32; TILE_ROWS]) -> Option<([i8; TILE_ROWS], f32)> {
    let wmax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    if wmax == 0.0 {
        return None;
    }
    let inv = 127.0 / wmax;
    let mut w8 = [0i8; TILE_ROWS];
    for (o, &v) in w8.iter_mut().zip(w) {
        *o = (v * inv).round_ties_even() as i8;
    }
    Some((w8, wmax / 127.0))
}

/// The slice sizes every SIMD tile kernel relies on (d = head dim, `rows` = 16 per tile);
/// returns the number of tiles.
pub(crate) fn check_tiles(d: usize, rows: usize, codes: usize, scales: usize) -> usize {
    let nt = rows / TILE_ROWS;
    assert!(
        d.is_multiple_of(GROUP) && rows.is_multiple_of(TILE_ROWS),
        "4-bit KV tiles need d % 16 == 0 and whole tiles"
    );
    assert!(codes >= nt * tile_bytes(d) && scales >= nt * d, "4-bit KV tiles out of range");
    nt
}

/// Per group: −8 · Σ q8 over its 16 dimensions (the SIMD accumulators' starting value).
pub(crate) fn offsets(q8: &[i8]) -> Vec<i32> {
    q8.chunks_exact(GROUP).map(|g| -8 * g.iter().map(|&v| v as i32).sum::<i32>()).collect()
}

/// The query as little-endian words of 4 dimensions (the SIMD kernels' broadcast operands).
pub(crate) fn words(q8: &[i8]) -> Vec<i32> {
    (0..q8.len() / 4).map(|j| word(q8, j)).collect()
}

/// Bytes `4j..4j + 4` as a little-endian word.
pub(crate) fn word(b: &[i8], j: usize) -> i32 {
    i32::from_le_bytes([b[4 * j] as u8, b[4 * j + 1] as u8, b[4 * j + 2] as u8, b[4 * j + 3] as u8])
}

/// Key scores of whole tiles: `out[16t + r] = Σ_g s[r,g] · Σ_{i in g} q8[i]·(n[r,i] − 8)` (times
/// the query scale, which the caller applies). `codes` and `scales` hold `out.len() / 16` tiles.
pub fn dot_tiles(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32]) {
    let d = q8.len();
    for (t, o) in out.chunks_exact_mut(TILE_ROWS).enumerate() {
        let tile = &codes[t * tile_bytes(d)..(t + 1) * tile_bytes(d)];
        let sc = &scales[t * d..(t + 1) * d];
        for (r, o) in o.iter_mut().enumerate() {
            let mut res = 0f32;
            for g in 0..d / GROUP {
                let acc: i32 = (g * GROUP..(g + 1) * GROUP)
                    .map(|i| q8[i] as i32 * (get_code(Kind::Keys, d, tile, r, i) as i32 - 8))
                    .sum();
                res = (acc as f32).mul_add(sc[g * TILE_ROWS + r].to_f32(), res);
            }
            *o = res;
        }
    }
}

/// Weighted value sum of whole tiles: `o[i] += Σ_r p[r] · s[r,g(i)] · (n[r,i] − 8)`, with the
/// weights `p·s` of each (tile, group) rounded to int8 ([`quantize_weights`]): the integer
/// products are what makes the 4-bit cache fast, and the rounding (≤ 1/254 of the group's
/// largest weight) is small next to the 4-bit values' own. `p` holds 16 weights per tile
/// (0 for padding rows).
pub fn axpy_tiles(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32]) {
    let d = o.len();
    for (t, pt) in p.chunks_exact(TILE_ROWS).enumerate() {
        let tile = &codes[t * tile_bytes(d)..(t + 1) * tile_bytes(d)];
        let sc = &scales[t * d..(t + 1) * d];
        for g in 0..d / GROUP {
            let w: [f32; TILE_ROWS] = std::array::from_fn(|r| pt[r] * sc[g * TILE_ROWS + r].to_f32());
            let Some((w8, ws)) = quantize_weights(&w) else { continue };
            let wsum: i32 = w8.iter().map(|&v| v as i32).sum();
            for i in g * GROUP..(g + 1) * GROUP {
                let acc: i32 =
                    (0..TILE_ROWS).map(|r| w8[r] as i32 * get_code(Kind::Values, d, tile, r, i) as i32).sum();
                o[i] = ((acc - 8 * wsum) as f32).mul_add(ws, o[i]);
            }
        }
    }
}
