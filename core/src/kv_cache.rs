//! Per-session key/value cache, allocated whole at session creation so that "this context does
//! not fit" is an error up front, never an allocation failure mid-answer.
//!
//! Layout: for each layer and head, `n_ctx` rows of `head_dim` values, separately for k and v.
//! A head's keys are contiguous, which is what attention streams through.

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::model::HParams;
use half::f16;

/// Element type of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

impl KvType {
    pub fn bytes_per_value(self) -> u64 {
        match self {
            KvType::F32 => 4,
            KvType::F16 => 2,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            other => Err(Error::InvalidArgument(format!("unknown KV cache type {other:?} (use f16 or f32)"))),
        }
    }
}

enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Store {
    fn new(ty: KvType, n: usize) -> Self {
        // vec![0; n] is calloc: pages are committed only when first written, so a large n_ctx
        // costs address space up front and resident memory as the conversation grows.
        match ty {
            KvType::F32 => Store::F32(vec![0.0; n]),
            // Zeroed u16 storage goes through alloc_zeroed; vec![f16::ZERO; n] would write
            // every element and make the whole cache resident at once.
            KvType::F16 => Store::F16(bytemuck::allocation::cast_vec(vec![0u16; n])),
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Store::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            Store::F16(v) => {
                for (d, &s) in v[at..at + src.len()].iter_mut().zip(src) {
                    *d = f16::from_f32(s);
                }
            }
        }
    }
}

/// A borrowed view of one head's rows (keys or values) for positions `0..len`.
pub enum HeadRows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl HeadRows<'_> {
    /// Row `j` dotted with `q`.
    #[inline]
    pub fn dot(&self, k: &Kernels, j: usize, q: &[f32]) -> f32 {
        let d = q.len();
        match self {
            HeadRows::F32(r) => (k.dot_f32)(&r[j * d..(j + 1) * d], q),
            HeadRows::F16(r) => (k.dot_f16)(&r[j * d..(j + 1) * d], q),
        }
    }

    /// out += w * row `j`.
    #[inline]
    pub fn axpy(&self, k: &Kernels, j: usize, w: f32, out: &mut [f32]) {
        let d = out.len();
        match self {
            HeadRows::F32(r) => (k.axpy_f32)(w, &r[j * d..(j + 1) * d], out),
            HeadRows::F16(r) => (k.axpy_f16)(w, &r[j * d..(j + 1) * d], out),
        }
    }
}

pub struct KvCache {
    ty: KvType,
    n_ctx: usize,
    n_head: usize,
    head_dim: usize,
    k: Store,
    v: Store,
    /// Tokens currently cached (the next position to write).
    len: usize,
}

impl KvCache {
    /// Bytes a cache of `n_ctx` tokens needs for this model.
    pub fn bytes_needed(hp: &HParams, n_ctx: usize, ty: KvType) -> u64 {
        hp.kv_values_per_token() as u64 * n_ctx as u64 * ty.bytes_per_value()
    }

    /// Allocates the whole cache; refuses when it would exceed `budget` bytes.
    pub fn new(hp: &HParams, n_ctx: usize, ty: KvType, budget: Option<u64>) -> Result<Self> {
        if n_ctx == 0 {
            return Err(Error::InvalidArgument("context size must be at least 1 token".into()));
        }
        let needed = Self::bytes_needed(hp, n_ctx, ty);
        if let Some(budget) = budget {
            if needed > budget {
                return Err(Error::OverBudget { n_ctx, needed, budget });
            }
        }
        let n = n_ctx
            .checked_mul(hp.n_layer * hp.n_embd)
            .filter(|&n| (n as u64) < (1u64 << 40))
            .ok_or_else(|| Error::InvalidArgument(format!("context size {n_ctx} is too large")))?;
        Ok(KvCache {
            ty,
            n_ctx,
            n_head: hp.n_head,
            head_dim: hp.head_dim(),
            k: Store::new(ty, n),
            v: Store::new(ty, n),
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
            self.k.write(at, &k[h * d..(h + 1) * d]);
            self.v.write(at, &v[h * d..(h + 1) * d]);
        }
    }

    /// Keys and values of one head for positions `0..n`.
    pub fn head(&self, layer: usize, head: usize, n: usize) -> (HeadRows<'_>, HeadRows<'_>) {
        let (a, b) = (self.base(layer, head), self.base(layer, head) + n * self.head_dim);
        fn view(s: &Store, a: usize, b: usize) -> HeadRows<'_> {
            match s {
                Store::F32(v) => HeadRows::F32(&v[a..b]),
                Store::F16(v) => HeadRows::F16(&v[a..b]),
            }
        }
        (view(&self.k, a, b), view(&self.v, a, b))
    }
}
