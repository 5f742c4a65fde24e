//! A borrowed view of one head's keys or values, and the per-type attention kernels on it.

use crate::kernels::kv_q4::{self, Kind, TILE_ROWS};
use crate::kernels::{generic, Kernels};
use half::f16;

/// Keys or values of one (layer, head) for positions `0..n`.
pub enum HeadRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    /// Values and one scale per row.
    Q8(&'a [i8], &'a [f32]),
    /// Whole 16-row tiles covering `0..n` (layout in `kernels::kv_q4`).
    Q4 {
        kind: Kind,
        codes: &'a [u8],
        scales: &'a [f16],
        d: usize,
    },
}

/// A query made ready for scoring against one head's keys: the 4-bit cache scores an int8 copy
/// of it, made once per query rather than once per tile of keys.
pub struct Query<'q> {
    pub f: &'q [f32],
    q8: Vec<i8>,
    scale: f32,
}

/// Tiles per kernel call on the q4 paths: a 128-key attention tile at any alignment, on the stack.
const CHUNK_TILES: usize = 9;

impl HeadRows<'_> {
    pub fn prepare<'q>(&self, q: &'q [f32]) -> Query<'q> {
        match self {
            HeadRows::Q4 { kind: Kind::Keys, .. } => {
                let mut q8 = vec![0i8; q.len()];
                let scale = kv_q4::quantize_query(q, &mut q8);
                Query { f: q, q8, scale }
            }
            _ => Query { f: q, q8: Vec::new(), scale: 1.0 },
        }
    }

    /// `out[i] = row (start + i) · q` for `out.len()` rows: one kernel call per tile.
    pub fn dot_rows(&self, k: &Kernels, start: usize, q: &Query, out: &mut [f32]) {
        let d = q.f.len();
        let (a, b) = (start * d, (start + out.len()) * d);
        match self {
            HeadRows::F32(r) => generic::dot_rows_with(k.dot_f32, q.f, &r[a..b], out),
            HeadRows::F16(r) => (k.dot_rows_f16)(q.f, &r[a..b], out),
            HeadRows::Q8(r, s) => {
                (k.dot_rows_i8)(q.f, &r[a..b], out);
                out.iter_mut().zip(&s[start..]).for_each(|(o, s)| *o *= s);
            }
            HeadRows::Q4 { kind: Kind::Keys, codes, scales, .. } => {
                let mut buf = [0f32; CHUNK_TILES * TILE_ROWS];
                q4_chunks(start, out.len(), |row0, rows, tiles| {
                    let n = tiles.len() * TILE_ROWS;
                    (k.dot_tiles_q4)(&q.q8, &codes[tiles.start * 8 * d..], &scales[tiles.start * d..], &mut buf[..n]);
                    let first = rows.start - row0;
                    let dst = &mut out[rows.start - start..rows.end - start];
                    dst.iter_mut().zip(&buf[first..]).for_each(|(o, v)| *o = v * q.scale);
                });
            }
            HeadRows::Q4 { .. } => {
                // Value rows are never scored by the model; correct, not fast.
                let mut row = vec![0f32; d];
                for (i, o) in out.iter_mut().enumerate() {
                    self.rows_to_f32(start + i, d, &mut row);
                    *o = generic::dot_f32(q.f, &row);
                }
            }
        }
    }

    /// `o += Σ_i p[i] · row (start + i)`. `p` is scratch: the int8 path folds the row scales
    /// into it.
    pub fn axpy_rows(&self, k: &Kernels, start: usize, p: &mut [f32], o: &mut [f32]) {
        let d = o.len();
        let (a, b) = (start * d, (start + p.len()) * d);
        match self {
            HeadRows::F32(r) => generic::axpy_rows_with(k.axpy_f32, p, &r[a..b], o),
            HeadRows::F16(r) => (k.axpy_rows_f16)(p, &r[a..b], o),
            HeadRows::Q8(r, s) => {
                p.iter_mut().zip(&s[start..]).for_each(|(p, s)| *p *= s);
                (k.axpy_rows_i8)(p, &r[a..b], o);
            }
            HeadRows::Q4 { kind: Kind::Values, codes, scales, .. } => {
                let mut buf = [0f32; CHUNK_TILES * TILE_ROWS];
                q4_chunks(start, p.len(), |row0, rows, tiles| {
                    let n = tiles.len() * TILE_ROWS;
                    // Rows of the tiles outside `rows` (before `start`, or not written yet) get 0.
                    buf[..n].fill(0.0);
                    buf[rows.start - row0..rows.end - row0].copy_from_slice(&p[rows.start - start..rows.end - start]);
                    (k.axpy_tiles_q4)(&buf[..n], &codes[tiles.start * 8 * d..], &scales[tiles.start * d..], o);
                });
            }
            HeadRows::Q4 { .. } => {
                // Key rows are never summed by the model; correct, not fast.
                let mut row = vec![0f32; d];
                for (i, &w) in p.iter().enumerate() {
                    self.rows_to_f32(start + i, d, &mut row);
                    generic::axpy_f32(w, &row, o);
                }
            }
        }
    }

    /// Rows `start..start + n` as f32 into `out` (`n * d` long), for the prefill attention
    /// tiles: converted once per tile and then used by a whole block of queries.
    pub fn rows_to_f32(&self, start: usize, d: usize, out: &mut [f32]) {
        let (a, b) = (start * d, start * d + out.len());
        match self {
            HeadRows::F32(r) => out.copy_from_slice(&r[a..b]),
            HeadRows::F16(r) => {
                use half::slice::HalfFloatSliceExt;
                r[a..b].convert_to_f32_slice(out)
            }
            HeadRows::Q8(r, s) => {
                for (j, (o, q)) in out.chunks_exact_mut(d).zip(r[a..b].chunks_exact(d)).enumerate() {
                    let sc = s[start + j];
                    o.iter_mut().zip(q).for_each(|(o, &q)| *o = sc * q as f32);
                }
            }
            HeadRows::Q4 { kind: Kind::Values, codes, scales, .. } => {
                let end = start + out.len() / d;
                q4_tiles(start, end, d, codes, scales, |tile, sc, first, rows, tmp| {
                    let dst = &mut out[(rows.start - start) * d..(rows.end - start) * d];
                    if rows.len() == TILE_ROWS {
                        kv_q4::dequantize_values(tile, sc, dst);
                    } else {
                        tmp.resize(TILE_ROWS * d, 0.0);
                        kv_q4::dequantize_values(tile, sc, tmp);
                        dst.copy_from_slice(&tmp[(rows.start - first) * d..(rows.end - first) * d]);
                    }
                });
            }
            HeadRows::Q4 { kind, codes, scales, .. } => {
                // Keys row by row: the model reads them transposed (`rows_to_f32_t`).
                let tb = kv_q4::tile_bytes(d);
                for (j, o) in out.chunks_exact_mut(d).enumerate() {
                    let (t, r) = ((start + j) / TILE_ROWS, (start + j) % TILE_ROWS);
                    kv_q4::dequantize_row(*kind, &codes[t * tb..(t + 1) * tb], &scales[t * d..(t + 1) * d], r, o);
                }
            }
        }
    }

    /// Rows `start..start + nk` as f32, transposed: value `i` of row `start + j` into
    /// `out[i * nk + j]` (`d * nk` long), the layout of the prefill score products. `scratch`
    /// (`nk * d` long) holds the row-major copy for the types that convert row by row; q4 keys
    /// are stored transposed per tile already and skip it.
    pub fn rows_to_f32_t(&self, start: usize, d: usize, nk: usize, scratch: &mut [f32], out: &mut [f32]) {
        match self {
            HeadRows::Q4 { kind: Kind::Keys, codes, scales, .. } => {
                q4_tiles(start, start + nk, d, codes, scales, |tile, sc, first, rows, tmp| {
                    if rows.len() == TILE_ROWS {
                        kv_q4::dequantize_keys_t(tile, sc, d, &mut out[rows.start - start..], nk);
                    } else {
                        tmp.resize(TILE_ROWS * d, 0.0);
                        kv_q4::dequantize_keys_t(tile, sc, d, tmp, TILE_ROWS);
                        for i in 0..d {
                            let src = &tmp[i * TILE_ROWS + rows.start - first..i * TILE_ROWS + rows.end - first];
                            out[i * nk + rows.start - start..i * nk + rows.end - start].copy_from_slice(src);
                        }
                    }
                });
            }
            _ => {
                self.rows_to_f32(start, d, &mut scratch[..nk * d]);
                for (j, row) in scratch[..nk * d].chunks_exact(d).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        out[c * nk + j] = v;
                    }
                }
            }
        }
    }
}

/// Calls `f(tile codes, tile scales, first row of the tile, rows of start..end in it, scratch)`
/// for each q4 tile holding rows `start..end`.
fn q4_tiles(
    start: usize,
    end: usize,
    d: usize,
    codes: &[u8],
    scales: &[f16],
    mut f: impl FnMut(&[u8], &[f16], usize, std::ops::Range<usize>, &mut Vec<f32>),
) {
    let tb = kv_q4::tile_bytes(d);
    let mut tmp = Vec::new();
    for t in start / TILE_ROWS..end.div_ceil(TILE_ROWS) {
        let rows = (t * TILE_ROWS).max(start)..((t + 1) * TILE_ROWS).min(end);
        f(&codes[t * tb..(t + 1) * tb], &scales[t * d..(t + 1) * d], t * TILE_ROWS, rows, &mut tmp);
    }
}

/// Splits rows `start..start + n` into runs of at most [`CHUNK_TILES`] whole tiles: calls
/// `f(first row of the run's tiles, rows of the run, tiles of the run)`.
fn q4_chunks(start: usize, n: usize, mut f: impl FnMut(usize, std::ops::Range<usize>, std::ops::Range<usize>)) {
    let end = start + n;
    let mut t = start / TILE_ROWS;
    while t * TILE_ROWS < end {
        let t_end = (t + CHUNK_TILES).min(end.div_ceil(TILE_ROWS));
        let rows = (t * TILE_ROWS).max(start)..(t_end * TILE_ROWS).min(end);
        f(t * TILE_ROWS, rows, t..t_end);
        t = t_end;
    }
}
