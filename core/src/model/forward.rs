//! The BTLM forward pass (btlm-spec.md §3), readable top to bottom: embedding x muP scale,
//! pre-LN blocks with fused QKV and ALiBi attention, SwiGLU MLP, final LN, tied head x output
//! scale.

use super::{AlibiScaling, Model};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::ops::{attention::attend, matmul::matmul, norm::layer_norm, swiglu};

/// Which logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only for the last token (generation).
    Last,
    /// For every token of the call (perplexity, tests).
    All,
    /// None (a prefill chunk that is not the last).
    None,
}

/// Returned when the cancel check fired between layers; the cache is left as it was before
/// the call (positions written past its length are simply overwritten next time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl Model {
    /// Runs `tokens` through the model at cache positions `cache.len()..`, appending their keys
    /// and values. `n_keys` is the total key count of the *logical* call, which decides the
    /// dynamic ALiBi interpolation scale: a prompt processed in chunks passes the same value
    /// (cached + whole prompt) for every chunk, as the reference processes it in one call.
    /// `cancelled` is polled between layers.
    pub fn forward(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        n_keys: usize,
        want: Logits,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<std::result::Result<Vec<f32>, Cancelled>> {
        self.forward_with(cache, tokens, n_keys, self.hparams.alibi_scaling, want, cancelled)
    }

    /// [`Model::forward`] with an explicit ALiBi interpolation (a session's choice for a model
    /// that carries none).
    pub fn forward_with(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        n_keys: usize,
        scaling: AlibiScaling,
        want: Logits,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<std::result::Result<Vec<f32>, Cancelled>> {
        let hp = &self.hparams;
        let (n, e, f) = (tokens.len(), hp.n_embd, hp.n_inner);
        let pos0 = cache.len();
        if n == 0 {
            return Err(Error::InvalidArgument("forward called with no tokens".into()));
        }
        if pos0 + n > cache.n_ctx() {
            return Err(Error::ContextFull { n_ctx: cache.n_ctx(), used: pos0, requested: n });
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= hp.n_vocab) {
            return Err(Error::TokenOutOfRange { id, vocab: hp.n_vocab });
        }
        self.file.check_unchanged()?;
        let alibi_scale = scaling.scale(n_keys.max(pos0 + n));

        // 1. Embedding, scaled by muP's embeddings multiplier.
        let emb = self.mat(&self.tok_embd);
        let mut h = vec![0f32; n * e];
        for (row, &id) in h.chunks_exact_mut(e).zip(tokens) {
            emb.row_to_f32(id as usize, row);
            row.iter_mut().for_each(|v| *v *= hp.emb_scale);
        }

        let mut x = vec![0f32; n * e];
        let mut qkv = vec![0f32; n * 3 * e];
        let (mut q, mut att, mut proj) = (vec![0f32; n * e], vec![0f32; n * e], vec![0f32; n * e]);
        let (mut up, mut gate) = (vec![0f32; n * f], vec![0f32; n * f]);
        for (li, l) in self.layers.iter().enumerate() {
            if cancelled() {
                return Ok(Err(Cancelled));
            }
            // 2. Attention block: LN, fused QKV, cache k/v, ALiBi attention, projection.
            layer_norm(&h, self.vector(&l.attn_norm.w), self.vector(&l.attn_norm.b), hp.ln_eps, &mut x);
            matmul(self.mat(&l.qkv.w), Some(self.vector(&l.qkv.b)), &x, n, &mut qkv);
            for (t, row) in qkv.chunks_exact(3 * e).enumerate() {
                q[t * e..(t + 1) * e].copy_from_slice(&row[..e]);
                cache.write(li, pos0 + t, &row[e..2 * e], &row[2 * e..]);
            }
            attend(cache, li, &q, pos0, n, &hp.alibi_slopes, alibi_scale, hp.qk_scale, &mut att);
            matmul(self.mat(&l.attn_out.w), Some(self.vector(&l.attn_out.b)), &att, n, &mut proj);
            h.iter_mut().zip(&proj).for_each(|(h, p)| *h += p);

            // 3. MLP block: LN, up (linear) and gate (SiLU) branches, down projection.
            layer_norm(&h, self.vector(&l.ffn_norm.w), self.vector(&l.ffn_norm.b), hp.ln_eps, &mut x);
            matmul(self.mat(&l.up.w), Some(self.vector(&l.up.b)), &x, n, &mut up);
            matmul(self.mat(&l.gate.w), Some(self.vector(&l.gate.b)), &x, n, &mut gate);
            swiglu(&mut up, &gate);
            matmul(self.mat(&l.down.w), Some(self.vector(&l.down.b)), &up, n, &mut proj);
            h.iter_mut().zip(&proj).for_each(|(h, p)| *h += p);
        }
        // Before the cache takes the new keys: a pass that read a changing file leaves no trace.
        self.file.check_unchanged()?;
        cache.advance(n);

        // 4. Final LN and the tied LM head, scaled by muP's output multiplier.
        let rows: &[f32] = match want {
            Logits::None => return Ok(Ok(Vec::new())),
            Logits::Last => &h[(n - 1) * e..],
            Logits::All => &h,
        };
        let m = rows.len() / e;
        let mut hn = vec![0f32; m * e];
        layer_norm(rows, self.vector(&self.out_norm.w), self.vector(&self.out_norm.b), hp.ln_eps, &mut hn);
        let mut logits = vec![0f32; m * hp.n_vocab];
        matmul(emb, None, &hn, m, &mut logits);
        logits.iter_mut().for_each(|v| *v *= hp.out_scale);
        self.file.check_unchanged()?;
        Ok(Ok(logits))
    }
}
