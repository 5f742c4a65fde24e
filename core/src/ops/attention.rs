//! Causal self-attention over the KV cache with ALiBi, per the BTLM spec: scores are
//! q·k * qk_scale (1/d under muP), plus the bias -(slope/s)·(query position - key position),
//! softmax over the visible keys, weighted sum of values. Masked keys are simply skipped: the
//! reference replaces their scores by finfo.min, which gives them probability exactly 0.

use crate::kernels;
use crate::kv_cache::KvCache;
use rayon::prelude::*;

/// Attention for `n_tok` new queries at absolute positions `pos0..pos0+n_tok`, whose keys and
/// values are already in the cache. `q` is [n_tok][n_embd]; `out` likewise.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    cache: &KvCache,
    layer: usize,
    q: &[f32],
    pos0: usize,
    n_tok: usize,
    slopes: &[f32],
    alibi_scale: f32,
    qk_scale: f32,
    out: &mut [f32],
) {
    let n_head = slopes.len();
    let n_embd = q.len() / n_tok;
    let d = n_embd / n_head;
    let k = kernels::best();
    // One task per head writes a [n_tok][d] block; scattered into `out` afterwards.
    let per_head: Vec<Vec<f32>> = (0..n_head)
        .into_par_iter()
        .map(|h| {
            let (keys, vals) = cache.head(layer, h, pos0 + n_tok);
            let slope = slopes[h] / alibi_scale;
            let mut res = vec![0f32; n_tok * d];
            let mut scores = Vec::with_capacity(pos0 + n_tok);
            for t in 0..n_tok {
                let pos = pos0 + t;
                let qh = &q[t * n_embd + h * d..t * n_embd + (h + 1) * d];
                scores.clear();
                scores.extend((0..=pos).map(|j| keys.dot(k, j, qh) * qk_scale - slope * (pos - j) as f32));
                super::softmax(&mut scores);
                let o = &mut res[t * d..(t + 1) * d];
                for (j, &p) in scores.iter().enumerate() {
                    vals.axpy(k, j, p, o);
                }
            }
            res
        })
        .collect();
    for (h, block) in per_head.iter().enumerate() {
        for t in 0..n_tok {
            out[t * n_embd + h * d..t * n_embd + (h + 1) * d].copy_from_slice(&block[t * d..(t + 1) * d]);
        }
    }
}
