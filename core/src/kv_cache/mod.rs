//! Per-session key/value cache, allocated whole at session creation so that "this context does
//! not fit" is an error up front, never an allocation failure mid-answer. The allocation is
//! zeroed memory from the OS, so pages become resident only as the conversation fills them.
//!
//! Layout: for each layer and head, `n_ctx` rows of `head_dim` values, separately for k and v.
//! A head's keys are contiguous, which is what attention streams through.
//!
//! Types: f32 (reference), f16 (default: 320 KiB/token on BTLM-3B), q8_0 (int8 with one f32
//! scale per head row: 168 KiB/token, what makes 8K context fit in 3 GB with the weights), q4
//! (4-bit with an f16 scale per 16 values, in 16-position tiles: 100 KiB/token, and what keeps
//! decode at 8K context fast, since there the cache is most of what a token reads).

mod rows;
mod store;

pub use rows::{HeadRows, Query};

use crate::error::{Error, Result};
use crate::kernels::kv_q4::{self, Kind};
use crate::model::HParams;
use store::Store;

/// Element type of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
    Q8_0,
    Q4,
}

impl KvType {
    /// Bytes for one head row of `head_dim` values.
    pub fn row_bytes(self, head_dim: usize) -> u64 {
        match self {
            KvType::F32 => 4 * head_dim as u64,
            KvType::F16 => 2 * head_dim as u64,
            KvType::Q8_0 => head_dim as u64 + 4,
            KvType::Q4 => (head_dim / 2 + head_dim / 8) as u64,
        }
    }

    /// Positions allocated for a context of `n_ctx` (q4 stores whole 16-position tiles).
    pub(crate) fn padded_rows(self, n_ctx: usize) -> usize {
        match self {
            KvType::Q4 => n_ctx.div_ceil(kv_q4::TILE_ROWS).saturating_mul(kv_q4::TILE_ROWS),
            _ => n_ctx,
        }
    }

    /// Bytes of one head's keys (or values) for `n` positions, as stored and as saved.
    pub fn bytes_for(self, n: usize, head_dim: usize) -> u64 {
        // Saturating: a context no machine holds must still give a size to refuse, not wrap.
        (self.padded_rows(n) as u64).saturating_mul(self.row_bytes(head_dim))
    }

    /// Factor on stored key norms for the attention cut-off's score bound: covers float
    /// rounding, and for q4 the int8 rounding of the query (≤ √d/254 of |q|·|k|: each of the d
    /// values is off by ≤ max|q|/254 ≤ |q|/254; 3.5% at d 80).
    fn norm_headroom(self, head_dim: usize) -> f32 {
        match self {
            KvType::Q4 => 1.01 + (head_dim as f32).sqrt() / 254.0,
            _ => 1.01,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(KvType::F32),
            "f16" => Ok(KvType::F16),
            "q8_0" | "q8" => Ok(KvType::Q8_0),
            "q4" | "q4_0" => Ok(KvType::Q4),
            other => Err(Error::InvalidArgument(format!("unknown KV cache type {other:?} (use f16, q8_0, q4 or f32)"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4 => "q4",
        }
    }

    pub(crate) fn id(self) -> u32 {
        match self {
            KvType::F32 => 0,
            KvType::F16 => 1,
            KvType::Q8_0 => 8,
            KvType::Q4 => 40,
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
        (2 * (hp.n_layer * hp.n_head) as u64).saturating_mul(ty.bytes_for(n_ctx, hp.head_dim()))
    }

    /// Bytes one more token of context costs (without q4's padding to whole tiles): what
    /// decode reads per token of depth.
    pub fn bytes_per_token(hp: &HParams, ty: KvType) -> u64 {
        2 * (hp.n_layer * hp.n_head) as u64 * ty.row_bytes(hp.head_dim())
    }

    /// Allocates the whole cache; refuses when it would exceed `budget` bytes.
    pub fn new(hp: &HParams, n_ctx: usize, ty: KvType, budget: Option<u64>) -> Result<Self> {
        if n_ctx == 0 {
            return Err(Error::InvalidArgument("context size must be at least 1 token".into()));
        }
        let d = hp.head_dim();
        if ty == KvType::Q4 && !d.is_multiple_of(kv_q4::GROUP) {
            return Err(Error::InvalidArgument(format!(
                "the q4 KV cache needs a head size that is a multiple of {}; this model's is {d}",
                kv_q4::GROUP
            )));
        }
        let needed = Self::bytes_needed(hp, n_ctx, ty);
        if let Some(budget) = budget {
            if needed > budget {
                return Err(Error::OverBudget { n_ctx, needed, budget, detail: format!("{} KV cache", ty.name()) });
            }
        }
        let slots = hp.n_layer * hp.n_head;
        ty.padded_rows(n_ctx).checked_mul(hp.n_layer * hp.n_embd).filter(|&n| (n as u64) < (1u64 << 40)).ok_or_else(
            || Error::InvalidArgument(format!("context size {n_ctx} is too large ({needed} bytes of KV cache)")),
        )?;
        // Always on, budget or not: a cache the machine cannot hold would be killed by the OS
        // (or abort) when its pages are first touched, long after this call succeeded.
        if let Some(available) = crate::threads::available_memory() {
            if needed > available {
                return Err(Error::OutOfMemory {
                    what: format!("{} KV cache for {n_ctx} tokens", ty.name()),
                    bytes: needed,
                    available: Some(available),
                });
            }
        }
        Ok(KvCache {
            ty,
            n_ctx,
            n_layer: hp.n_layer,
            n_head: hp.n_head,
            head_dim: d,
            k: Store::new(ty, Kind::Keys, slots, n_ctx, d)?,
            v: Store::new(ty, Kind::Values, slots, n_ctx, d)?,
            k_norm_max: vec![0.0; slots],
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

    fn slot(&self, layer: usize, head: usize) -> usize {
        layer * self.n_head + head
    }

    /// Stores one token's k and v (each `n_embd` = heads x head_dim, head-major) at `pos`.
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.head_dim;
        let headroom = self.ty.norm_headroom(d);
        for h in 0..self.n_head {
            let slot = self.slot(layer, h);
            let norm = self.k.write(slot, pos, &k[h * d..(h + 1) * d]);
            self.v.write(slot, pos, &v[h * d..(h + 1) * d]);
            let m = &mut self.k_norm_max[slot];
            *m = m.max(norm * headroom);
        }
    }

    /// Keys and values of one head for positions `0..n`, and the bound on key norms.
    pub fn head(&self, layer: usize, head: usize, n: usize) -> (HeadRows<'_>, HeadRows<'_>, f32) {
        let slot = self.slot(layer, head);
        (self.k.view(slot, n), self.v.view(slot, n), self.k_norm_max[slot])
    }

    /// Drops positions `keep..keep + drop`, moving the later ones down (context shift). ALiBi
    /// biases depend only on distances computed at attention time, so nothing is re-encoded.
    pub(crate) fn remove(&mut self, keep: usize, drop: usize) {
        let tail = self.len.saturating_sub(keep + drop);
        for slot in 0..self.n_layer * self.n_head {
            self.k.move_rows(slot, keep + drop, keep, tail);
            self.v.move_rows(slot, keep + drop, keep, tail);
        }
        self.len = keep + tail;
    }

    /// The first `n` positions of every layer and head, as bytes (session files).
    pub(crate) fn export(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for slot in 0..self.n_layer * self.n_head {
            self.k.export(slot, n, &mut out);
            self.v.export(slot, n, &mut out);
        }
        out.extend(bytemuck::cast_slice(&self.k_norm_max));
        out
    }

    /// Inverse of [`KvCache::export`]; `bytes` must be exactly what export wrote for `n`.
    pub(crate) fn import(&mut self, n: usize, bytes: &[u8]) -> Result<()> {
        let per = self.ty.bytes_for(n, self.head_dim) as usize;
        let want = 2 * per * self.n_layer * self.n_head + 4 * self.k_norm_max.len();
        if n > self.n_ctx || bytes.len() != want {
            return Err(Error::InvalidArgument(format!(
                "session KV data is {} bytes, expected {want} for {n} tokens",
                bytes.len()
            )));
        }
        // Checked before anything is copied, so a bad file leaves the cache as it was.
        let slots = self.n_layer * self.n_head;
        for slot in 0..slots {
            let at = 2 * per * slot;
            let (k, v) = (&bytes[at..at + per], &bytes[at + per..at + 2 * per]);
            if let Some(value) = self.k.first_non_finite(n, k).or_else(|| self.v.first_non_finite(n, v)) {
                let (layer, head) = (slot / self.n_head, slot % self.n_head);
                return Err(Error::NonFinite { what: format!("saved KV cache (layer {layer}, head {head})"), value });
            }
        }
        if let Some(x) = bytes[2 * per * slots..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .find(|x| !x.is_finite())
        {
            return Err(Error::NonFinite { what: "saved KV cache key norms".into(), value: x });
        }
        let mut at = 0;
        for slot in 0..slots {
            self.k.import(slot, n, &bytes[at..at + per]);
            self.v.import(slot, n, &bytes[at + per..at + 2 * per]);
            at += 2 * per;
        }
        bytemuck::cast_slice_mut(&mut self.k_norm_max).copy_from_slice(&bytes[at..]);
        self.len = n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{alibi_slopes, AlibiScaling};
    use rand::{Rng, SeedableRng};

    fn hparams() -> HParams {
        HParams {
            name: "t".into(),
            n_vocab: 10,
            n_ctx_train: 64,
            n_embd: 2 * 32,
            n_layer: 2,
            n_head: 2,
            n_inner: 32,
            n_inner_original: 32,
            ln_eps: 1e-5,
            qk_scale: 1.0 / 32.0,
            emb_scale: 1.0,
            out_scale: 1.0,
            alibi_slopes: alibi_slopes(2),
            alibi_scaling: AlibiScaling::None,
        }
    }

    /// Every stored row of every (layer, head), keys then values, as f32.
    fn contents(c: &KvCache, n: usize) -> Vec<Vec<f32>> {
        let d = c.head_dim;
        let mut out = Vec::new();
        for l in 0..c.n_layer {
            for h in 0..c.n_head {
                let (k, v, _) = c.head(l, h, n);
                for rows in [k, v] {
                    let mut f = vec![0f32; n * d];
                    rows.rows_to_f32(0, d, &mut f);
                    out.extend(f.chunks(d).map(|r| r.to_vec()));
                }
            }
        }
        out
    }

    /// For every type, with a context that is not a whole number of q4 tiles: the key norm
    /// bound covers what was stored, a context shift moves rows exactly, and export/import
    /// restore the same contents.
    #[test]
    fn rows_move_and_round_trip_exactly() {
        let hp = hparams();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for ty in [KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q4] {
            let (n_ctx, n) = (50, 45);
            let mut c = KvCache::new(&hp, n_ctx, ty, None).unwrap();
            for p in 0..n {
                for l in 0..hp.n_layer {
                    let k: Vec<f32> = (0..hp.n_embd).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                    let v: Vec<f32> = (0..hp.n_embd).map(|_| rng.random_range(-2.0f32..2.0)).collect();
                    c.write(l, p, &k, &v);
                }
            }
            c.advance(n);
            let before = contents(&c, n);
            for l in 0..hp.n_layer {
                for h in 0..hp.n_head {
                    let (k, _, kmax) = c.head(l, h, n);
                    let mut f = vec![0f32; n * 32];
                    k.rows_to_f32(0, 32, &mut f);
                    let most = f.chunks(32).map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt()).fold(0f32, f32::max);
                    assert!(kmax >= most, "{}: key norm bound {kmax} < {most}", ty.name());
                }
            }
            let saved = c.export(n);
            assert_eq!(saved.len() as u64, KvCache::bytes_needed(&hp, n, ty) + 4 * 4, "{}", ty.name());
            let (keep, drop) = (5, 17);
            c.remove(keep, drop);
            assert_eq!(c.len(), n - drop);
            let after = contents(&c, n - drop);
            let per = n; // rows per (layer, head, k|v) block in `before`
            for (b, blk) in after.chunks(n - drop).enumerate() {
                for (j, row) in blk.iter().enumerate() {
                    let src = if j < keep { j } else { j + drop };
                    assert_eq!(row, &before[b * per + src], "{}: row {j} of block {b} after the shift", ty.name());
                }
            }
            let mut r = KvCache::new(&hp, n_ctx, ty, None).unwrap();
            r.import(n, &saved).unwrap();
            assert_eq!(contents(&r, n), before, "{}: import of export", ty.name());
            assert!(r.import(n, &saved[1..]).is_err());
        }
        let odd = HParams { n_embd: 2 * 24, ..hparams() };
        let e = KvCache::new(&odd, 10, KvType::Q4, None).err().unwrap().to_string();
        assert!(e.contains("multiple of 16") && e.contains("24"), "{e}");
    }
}
