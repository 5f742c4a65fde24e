//! The element storage behind one of the cache's two halves (keys or values): per (layer,
//! head) slot, `rows` positions of `d` values in the cache's type. Everything that touches the
//! bytes (writing a token, moving rows for a context shift, session files) is here, so the
//! cache itself deals in slots and positions only.

use super::rows::HeadRows;
use super::KvType;
use crate::error::{Error, Result};
use crate::kernels::kv_q4::{self, Kind, TILE_ROWS};
use half::f16;

/// Zeroed storage through `alloc_zeroed`, so untouched pages cost no resident memory
/// (`vec![f16::ZERO; n]` would write every element). An allocation the system refuses is an
/// error naming the bytes asked for, not an abort.
fn zeroed<T: bytemuck::Zeroable + Clone>(n: usize) -> Result<Vec<T>> {
    bytemuck::allocation::try_zeroed_vec(n).map_err(|()| Error::OutOfMemory {
        what: "KV cache".into(),
        bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        available: None,
    })
}

/// Code bytes and scales of q4 tile `t` (counted from the start of the store: a slot's tiles
/// are consecutive).
fn tile_range(d: usize, t: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let tb = kv_q4::tile_bytes(d);
    (t * tb..(t + 1) * tb, t * d..(t + 1) * d)
}

enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Values and one scale per row.
    Q8(Vec<i8>, Vec<f32>),
    /// Tiles of 16 rows: codes and scales (layout in `kernels::kv_q4`).
    Q4(Kind, Vec<u8>, Vec<f16>),
}

pub(super) struct Store {
    data: Data,
    /// Positions per slot (the context size, rounded up to whole tiles for q4).
    rows: usize,
    d: usize,
}

impl Store {
    pub(super) fn new(ty: KvType, kind: Kind, slots: usize, n_ctx: usize, d: usize) -> Result<Self> {
        let rows = ty.padded_rows(n_ctx);
        let n = slots * rows * d;
        let data = match ty {
            KvType::F32 => Data::F32(zeroed(n)?),
            KvType::F16 => Data::F16(zeroed(n)?),
            KvType::Q8_0 => Data::Q8(zeroed(n)?, zeroed(n / d)?),
            KvType::Q4 => Data::Q4(kind, zeroed(n / 2)?, zeroed(n / kv_q4::GROUP)?),
        };
        Ok(Store { data, rows, d })
    }

    /// First element (of `d` per row) of position `pos` in `slot`.
    fn at(&self, slot: usize, pos: usize) -> usize {
        (slot * self.rows + pos) * self.d
    }

    /// Stores one row at `pos`; returns the norm of what was stored (after rounding), which
    /// bounds the scores the attention kernels can compute from it.
    pub(super) fn write(&mut self, slot: usize, pos: usize, src: &[f32]) -> f32 {
        let at = self.at(slot, pos);
        let norm = |it: &mut dyn Iterator<Item = f32>| it.map(|x| x * x).sum::<f32>().sqrt();
        match &mut self.data {
            Data::F32(v) => {
                v[at..at + src.len()].copy_from_slice(src);
                norm(&mut src.iter().copied())
            }
            Data::F16(v) => {
                use half::slice::HalfFloatSliceExt;
                v[at..at + src.len()].convert_from_f32_slice(src);
                norm(&mut v[at..at + src.len()].iter().map(|h| h.to_f32()))
            }
            Data::Q8(q, d) => {
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
                for (o, &v) in q[at..at + src.len()].iter_mut().zip(src) {
                    *o = (v * inv).round() as i8;
                }
                d[at / src.len()] = scale;
                norm(&mut q[at..at + src.len()].iter().map(|&v| v as f32 * scale))
            }
            Data::Q4(kind, codes, scales) => {
                let (kind, d) = (*kind, self.d);
                let (cr, sr) = tile_range(d, (slot * self.rows + pos) / TILE_ROWS);
                kv_q4::quantize_row(kind, src, &mut codes[cr], &mut scales[sr], pos % TILE_ROWS)
            }
        }
    }

    /// Moves `n` rows of `slot` from position `from` down to `to` (context shift; `to < from`).
    pub(super) fn move_rows(&mut self, slot: usize, from: usize, to: usize, n: usize) {
        let (a, b, len) = (self.at(slot, from), self.at(slot, to), n * self.d);
        let d = self.d;
        match &mut self.data {
            Data::F32(v) => v.copy_within(a..a + len, b),
            Data::F16(v) => v.copy_within(a..a + len, b),
            Data::Q8(q, s) => {
                q.copy_within(a..a + len, b);
                s.copy_within(a / d..(a + len) / d, b / d);
            }
            Data::Q4(kind, codes, scales) => {
                // Code by code: exact copies, no re-quantization.
                let (kind, base) = (*kind, slot * self.rows);
                for j in 0..n {
                    let (src, dst) = (base + from + j, base + to + j);
                    let ((cs, ss), (cd, sd)) = (tile_range(d, src / TILE_ROWS), tile_range(d, dst / TILE_ROWS));
                    let (rs, rd) = (src % TILE_ROWS, dst % TILE_ROWS);
                    for i in 0..d {
                        let c = kv_q4::get_code(kind, d, &codes[cs.clone()], rs, i);
                        kv_q4::set_code(kind, d, &mut codes[cd.clone()], rd, i, c);
                    }
                    for g in 0..d / kv_q4::GROUP {
                        scales[sd.start + g * TILE_ROWS + rd] = scales[ss.start + g * TILE_ROWS + rs];
                    }
                }
            }
        }
    }

    /// Positions `0..n` of `slot`: the whole tiles that hold them for q4.
    fn span(&self, slot: usize, n: usize) -> (usize, usize) {
        let a = self.at(slot, 0);
        match self.data {
            Data::Q4(..) => (a, a + n.div_ceil(TILE_ROWS) * TILE_ROWS * self.d),
            _ => (a, a + n * self.d),
        }
    }

    /// Keys or values of `slot` for positions `0..n`.
    pub(super) fn view(&self, slot: usize, n: usize) -> HeadRows<'_> {
        let (a, b) = self.span(slot, n);
        let d = self.d;
        match &self.data {
            Data::F32(v) => HeadRows::F32(&v[a..b]),
            Data::F16(v) => HeadRows::F16(&v[a..b]),
            Data::Q8(q, s) => HeadRows::Q8(&q[a..b], &s[a / d..b / d]),
            Data::Q4(kind, codes, scales) => {
                HeadRows::Q4 { kind: *kind, codes: &codes[a / 2..b / 2], scales: &scales[a / 16..b / 16], d }
            }
        }
    }

    /// Positions `0..n` of `slot` as bytes (session files); [`KvType::bytes_for`] long.
    pub(super) fn export(&self, slot: usize, n: usize, out: &mut Vec<u8>) {
        let (a, b) = self.span(slot, n);
        let d = self.d;
        match &self.data {
            Data::F32(v) => out.extend_from_slice(bytemuck::cast_slice(&v[a..b])),
            Data::F16(v) => out.extend_from_slice(bytemuck::cast_slice(&v[a..b])),
            Data::Q8(q, s) => {
                out.extend_from_slice(bytemuck::cast_slice(&s[a / d..b / d]));
                out.extend_from_slice(bytemuck::cast_slice(&q[a..b]));
            }
            Data::Q4(_, codes, scales) => {
                out.extend_from_slice(bytemuck::cast_slice(&scales[a / 16..b / 16]));
                out.extend_from_slice(&codes[a / 2..b / 2]);
            }
        }
    }

    /// The first non-finite number in `bytes` (what [`Store::export`] wrote for `n`
    /// positions), if any: among the floats, or the scales of the quantized types (their
    /// codes are integers).
    pub(super) fn first_non_finite(&self, n: usize, bytes: &[u8]) -> Option<f32> {
        let (a, b) = self.span(0, n);
        let f16s =
            |b: &[u8]| b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).find(|x| !x.is_finite());
        let f32s =
            |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).find(|x| !x.is_finite());
        match &self.data {
            Data::F32(_) => f32s(bytes),
            Data::F16(_) => f16s(bytes),
            Data::Q8(..) => f32s(&bytes[..(b - a) / self.d * 4]),
            Data::Q4(..) => f16s(&bytes[..(b - a) / 16 * 2]),
        }
    }

    /// Inverse of [`Store::export`]; `bytes` is exactly what it wrote for `n`.
    pub(super) fn import(&mut self, slot: usize, n: usize, bytes: &[u8]) {
        let (a, b) = self.span(slot, n);
        let d = self.d;
        match &mut self.data {
            Data::F32(v) => bytemuck::cast_slice_mut(&mut v[a..b]).copy_from_slice(bytes),
            Data::F16(v) => bytemuck::cast_slice_mut(&mut v[a..b]).copy_from_slice(bytes),
            Data::Q8(q, s) => {
                let (sb, qb) = bytes.split_at((b - a) / d * 4);
                bytemuck::cast_slice_mut(&mut s[a / d..b / d]).copy_from_slice(sb);
                bytemuck::cast_slice_mut(&mut q[a..b]).copy_from_slice(qb);
            }
            Data::Q4(_, codes, scales) => {
                let (sb, cb) = bytes.split_at((b - a) / 16 * 2);
                bytemuck::cast_slice_mut(&mut scales[a / 16..b / 16]).copy_from_slice(sb);
                codes[a / 2..b / 2].copy_from_slice(cb);
            }
        }
    }
}
