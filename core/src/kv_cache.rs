//! Per-session key/value cache, allocated whole at session creation so that "this context does
//! not fit" is an error up front, never an allocation failure mid-answer. The allocation is
//! zeroed memory from the OS, so pages become resident only as the conversation fills them.
//!
//! Layout: for each layer and head, `n_ctx` rows of `head_dim` values, separately for k and v.
//! A head's keys are contiguous, which is what attention streams through.
//!
//! Types: f32 (reference), f16 (default: 320 KiB/token on BTLM-3B), q8_0 (int8 with one f32
//! scale per head row: 172 KiB/token, what makes 8K context fit in 3 GB with the weights).

use crate::error::{Error, Result};
use crate::kernels::{generic, Kernels};
use crate::model::HParams;
use half::f16;

/// Element type of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
    Q8_0,
}

impl KvType {
    /// Bytes for one head row of `head_dim` values.
    pub fn row_bytes(self, head_dim: usize) -> u64 {
        match self {
            KvType::F32 => 4 * head_dim as u64,
            KvType::F16 => 2 * head_dim as u64,
            KvType::Q8_0 => head_dim as u64 + 4,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" | "q8" => Ok(KvType::Q8_0),
            other => Err(Error::InvalidArgument(format!("unknown KV cache type {other:?} (use f16, q8_0 or f32)"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    pub(crate) fn id(self) -> u32 {
        match self {
            KvType::F32 => 0,
            KvType::F16 => 1,
            KvType::Q8_0 => 8,
        }
    }
}

/// Zeroed storage through `alloc_zeroed`, so untouched pages cost no resident memory
/// (`vec![f16::ZERO; n]` would write every element).
fn zeroed<T: bytemuck::Zeroable + Clone>(n: usize) -> Vec<T> {
    bytemuck::allocation::zeroed_vec(n)
}

enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Values and one scale per head row.
    Q8(Vec<i8>, Vec<f32>),
}

impl Store {
    fn new(ty: KvType, n: usize, head_dim: usize) -> Self {
        match ty {
            KvType::F32 => Store::F32(zeroed(n)),
            KvType::F16 => Store::F16(zeroed(n)),
            KvType::Q8_0 => Store::Q8(zeroed(n), zeroed(n / head_dim)),
        }
    }

    /// Writes one head row starting at element `at`.
    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Store::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Store::F16(v) => {
                use half::slice::HalfFloatSliceExt;
                v[at..at + src.len()].convert_from_f32_slice(src)
            }
            Store::Q8(q, d) => {
                let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = amax / 127.0;
                let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
                for (o, &v) in q[at..at + src.len()].iter_mut().zip(src) {
                    *o = (v * inv).round() as i8;
                }
                d[at / src.len()] = scale;
            }
        }
    }

    /// Copies `n` elements from `from` to `to` (context shifting).
    fn copy_within(&mut self, from: usize, to: usize, n: usize, head_dim: usize) {
        match self {
            Store::F32(v) => v.copy_within(from..from + n, to),
            Store::F16(v) => v.copy_within(from..from + n, to),
            Store::Q8(q, d) => {
                q.copy_within(from..from + n, to);
                d.copy_within(from / head_dim..(from + n) / head_dim, to / head_dim);
            }
        }
    }

    fn bytes(&self, from: usize, n: usize, head_dim: usize) -> Vec<u8> {
        match self {
            Store::F32(v) => bytemuck::cast_slice(&v[from..from + n]).to_vec(),
            Store::F16(v) => bytemuck::cast_slice(&v[from..from + n]).to_vec(),
            Store::Q8(q, d) => {
                let mut b: Vec<u8> = bytemuck::cast_slice(&d[from / head_dim..(from + n) / head_dim]).to_vec();
                b.extend_from_slice(bytemuck::cast_slice(&q[from..from + n]));
                b
            }
        }
    }

    fn set_bytes(&mut self, from: usize, n: usize, head_dim: usize, bytes: &[u8]) {
        match self {
            Store::F32(v) => bytemuck::cast_slice_mut(&mut v[from..from + n]).copy_from_slice(bytes),
            Store::F16(v) => bytemuck::cast_slice_mut(&mut v[from..from + n]).copy_from_slice(bytes),
            Store::Q8(q, d) => {
                let rows = n / head_dim;
                let (db, qb) = bytes.split_at(rows * 4);
                bytemuck::cast_slice_mut(&mut d[from / head_dim..from / head_dim + rows]).copy_from_slice(db);
                bytemuck::cast_slice_mut(&mut q[from..from + n]).copy_from_slice(qb);
            }
        }
    }
}

/// A borrowed view of one head's rows (keys or values) for positions `0..len`.
pub enum HeadRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    Q8(&'a [i8], &'a [f32]),
}

impl HeadRows<'_> {
    /// `out[i] = row (start + i) · q` for `out.len()` rows: one kernel call per tile.
    pub fn dot_rows(&self, k: &Kernels, start: usize, q: &[f32], out: &mut [f32]) {
        let d = q.len();
        let (a, b) = (start * d, (start + out.len()) * d);
        match self {
            HeadRows::F32(r) => generic::dot_rows_with(k.dot_f32, q, &r[a..b], out),
            HeadRows::F16(r) => (k.dot_rows_f16)(q, &r[a..b], out),
            HeadRows::Q8(r, s) => {
                (k.dot_rows_i8)(q, &r[a..b], out);
                out.iter_mut().zip(&s[start..]).for_each(|(o, s)| *o *= s);
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
        }
    }
}

pub struct KvCache {
    ty: KvType,
    n_ctx: usize,
    n_layer: usize,
    n_head: usize,
    head_dim: usize,
    k: Store,
    v: Store,
    /// Largest key norm written per (layer, head): bounds q·k so attention can stop scanning
    /// keys whose ALiBi bias already makes them invisible (see ops::attention).
    k_norm_max: Vec<f32>,
    /// Tokens currently cached (the next position to write).
    len: usize,
}

impl KvCache {
    /// Bytes a cache of `n_ctx` tokens needs for this model.
    pub fn bytes_needed(hp: &HParams, n_ctx: usize, ty: KvType) -> u64 {
        2 * (hp.n_layer * hp.n_head) as u64 * n_ctx as u64 * ty.row_bytes(hp.head_dim())
    }

    /// Allocates the whole cache; refuses when it would exceed `budget` bytes.
    pub fn new(hp: &HParams, n_ctx: usize, ty: KvType, budget: Option<u64>) -> Result<Self> {
        if n_ctx == 0 {
            return Err(Error::InvalidArgument("context size must be at least 1 token".into()));
        }
        let needed = Self::bytes_needed(hp, n_ctx, ty);
        if let Some(budget) = budget {
            if needed > budget {
                return Err(Error::OverBudget { n_ctx, needed, budget, detail: format!("{} KV cache", ty.name()) });
            }
        }
        let n = n_ctx
            .checked_mul(hp.n_layer * hp.n_embd)
            .filter(|&n| (n as u64) < (1u64 << 40))
            .ok_or_else(|| Error::InvalidArgument(format!("context size {n_ctx} is too large")))?;
        let d = hp.head_dim();
        Ok(KvCache {
            ty,
            n_ctx,
            n_layer: hp.n_layer,
            n_head: hp.n_head,
            head_dim: d,
            k: Store::new(ty, n, d),
            v: Store::new(ty, n, d),
            k_norm_max: vec![0.0; hp.n_layer * hp.n_head],
            len: 0,
        })
    }

    pub fn ty(&self) -> KvType {
        self.ty
    }
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Forgets everything cached (the memory stays allocated for reuse).
    pub fn clear(&mut self) {
        self.len = 0;
        self.k_norm_max.iter_mut().for_each(|m| *m = 0.0);
    }
    /// Keeps only the first `n` positions (benchmarks reuse a filled context this way).
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Marks `n` more positions as filled, after every layer has written them.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    fn base(&self, layer: usize, head: usize) -> usize {
        (layer * self.n_head + head) * self.n_ctx * self.head_dim
    }

    /// Stores one token's k and v (each `n_embd` = heads x head_dim, head-major) at `pos`.
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.head_dim;
        for h in 0..self.n_head {
            let at = self.base(layer, h) + pos * d;
            let kr = &k[h * d..(h + 1) * d];
            self.k.write(at, kr);
            self.v.write(at, &v[h * d..(h + 1) * d]);
            let norm = kr.iter().map(|x| x * x).sum::<f32>().sqrt();
            let m = &mut self.k_norm_max[layer * self.n_head + h];
            // A little headroom covers the quantized/rounded copy's norm.
            *m = m.max(norm * 1.01);
        }
    }

    /// Keys and values of one head for positions `0..n`, and the bound on key norms.
    pub fn head(&self, layer: usize, head: usize, n: usize) -> (HeadRows<'_>, HeadRows<'_>, f32) {
        let d = self.head_dim;
        let (a, b) = (self.base(layer, head), self.base(layer, head) + n * d);
        fn view(s: &Store, a: usize, b: usize, d: usize) -> HeadRows<'_> {
            match s {
                Store::F32(v) => HeadRows::F32(&v[a..b]),
                Store::F16(v) => HeadRows::F16(&v[a..b]),
                Store::Q8(q, sc) => HeadRows::Q8(&q[a..b], &sc[a / d..b / d]),
            }
        }
        (view(&self.k, a, b, d), view(&self.v, a, b, d), self.k_norm_max[layer * self.n_head + head])
    }

    /// Drops positions `keep..keep + drop`, moving the later ones down (context shift). ALiBi
    /// biases depend only on distances computed at attention time, so nothing is re-encoded.
    pub(crate) fn remove(&mut self, keep: usize, drop: usize) {
        let d = self.head_dim;
        let tail = self.len.saturating_sub(keep + drop);
        for l in 0..self.n_layer {
            for h in 0..self.n_head {
                let base = self.base(l, h);
                self.k.copy_within(base + (keep + drop) * d, base + keep * d, tail * d, d);
                self.v.copy_within(base + (keep + drop) * d, base + keep * d, tail * d, d);
            }
        }
        self.len = keep + tail;
    }

    /// The first `n` positions of every layer and head, as bytes (session files).
    pub(crate) fn export(&self, n: usize) -> Vec<u8> {
        let d = self.head_dim;
        let mut out = Vec::new();
        for l in 0..self.n_layer {
            for h in 0..self.n_head {
                let base = self.base(l, h);
                out.extend(self.k.bytes(base, n * d, d));
                out.extend(self.v.bytes(base, n * d, d));
            }
        }
        out.extend(bytemuck::cast_slice(&self.k_norm_max));
        out
    }

    /// Inverse of [`KvCache::export`]; `bytes` must be exactly what export wrote for `n`.
    pub(crate) fn import(&mut self, n: usize, bytes: &[u8]) -> Result<()> {
        let d = self.head_dim;
        let per = (n as u64 * self.ty.row_bytes(d)) as usize;
        let want = 2 * per * self.n_layer * self.n_head + 4 * self.k_norm_max.len();
        if n > self.n_ctx || bytes.len() != want {
            return Err(Error::InvalidArgument(format!(
                "session KV data is {} bytes, expected {want} for {n} tokens",
                bytes.len()
            )));
        }
        let mut at = 0;
        for l in 0..self.n_layer {
            for h in 0..self.n_head {
                let base = self.base(l, h);
                self.k.set_bytes(base, n * d, d, &bytes[at..at + per]);
                self.v.set_bytes(base, n * d, d, &bytes[at + per..at + 2 * per]);
                at += 2 * per;
            }
        }
        bytemuck::cast_slice_mut(&mut self.k_norm_max).copy_from_slice(&bytes[at..]);
        self.len = n;
        Ok(())
    }
}
