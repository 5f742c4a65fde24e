//! Causal self-attention over the KV cache with ALiBi, per the BTLM spec: scores are
//! q·k · qk_scale (1/d under muP), plus the bias −(slope/s)·(query position − key position),
//! softmax over the visible keys, weighted sum of values. Masked keys are skipped: the reference
//! replaces their scores by finfo.min, which gives them probability exactly 0.
//!
//! Keys are visited newest first in tiles with an online softmax (running max and sum), so the
//! scratch memory is one tile, whatever the context length. And because the ALiBi bias only
//! grows with distance, the scan stops once no older key can matter: with |q·k|·qk_scale
//! bounded by |q|·max|k|·qk_scale, a key whose best possible score is CUTOFF below the running
//! maximum contributes less than e^−40 ≈ 4e−18 of the total — far below f32 resolution, so the
//! result is the same to the last bit in practice, while steep-slope heads (half of BTLM's) read
//! only the recent few hundred keys of an 8K context.

use crate::kernels::{self, Kernels};
use crate::kv_cache::{HeadRows, KvCache};
use rayon::prelude::*;

/// Keys per tile of the online softmax.
pub const TILE: usize = 128;
/// Contributions below e^−CUTOFF of the running maximum are not computed.
const CUTOFF: f32 = 40.0;

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
            let (keys, vals, kmax) = cache.head(layer, h, pos0 + n_tok);
            let slope = slopes[h] / alibi_scale;
            let mut res = vec![0f32; n_tok * d];
            let mut scores = vec![0f32; TILE];
            for t in 0..n_tok {
                let qh = &q[t * n_embd + h * d..t * n_embd + (h + 1) * d];
                let head = Head { k, keys: &keys, vals: &vals, kmax, slope, qk_scale };
                head.query(qh, pos0 + t, &mut scores, &mut res[t * d..(t + 1) * d]);
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

struct Head<'a> {
    k: &'a Kernels,
    keys: &'a HeadRows<'a>,
    vals: &'a HeadRows<'a>,
    kmax: f32,
    slope: f32,
    qk_scale: f32,
}

impl Head<'_> {
    /// One query at absolute position `pos` against keys `0..=pos`, into `o` (head_dim long).
    fn query(&self, q: &[f32], pos: usize, scores: &mut [f32], o: &mut [f32]) {
        let qnorm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
        let bound = qnorm * self.kmax * self.qk_scale.abs();
        let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
        o.iter_mut().for_each(|v| *v = 0.0);
        let mut end = pos + 1;
        while end > 0 {
            let start = end.saturating_sub(TILE);
            if m.is_finite() && self.slope > 0.0 {
                let best = bound - self.slope * (pos + 1 - end) as f32;
                if best < m - CUTOFF {
                    break;
                }
            }
            let s = &mut scores[..end - start];
            for (i, sc) in s.iter_mut().enumerate() {
                let j = start + i;
                *sc = self.keys.dot(self.k, j, q) * self.qk_scale - self.slope * (pos - j) as f32;
            }
            let m_new = s.iter().copied().fold(m, f32::max);
            let corr = (m - m_new).exp(); // 0 on the first tile (m = -inf)
            if corr != 1.0 {
                l *= corr;
                o.iter_mut().for_each(|v| *v *= corr);
            }
            for (i, &sc) in s.iter().enumerate() {
                let p = (sc - m_new).exp();
                l += p;
                self.vals.axpy(self.k, start + i, p, o);
            }
            m = m_new;
            end = start;
        }
        let inv = 1.0 / l;
        o.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Straightforward attention (all scores, one softmax): the definition the tiled version is
/// tested against.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub fn attend_reference(
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
    for h in 0..n_head {
        let (keys, vals, _) = cache.head(layer, h, pos0 + n_tok);
        let slope = slopes[h] / alibi_scale;
        for t in 0..n_tok {
            let pos = pos0 + t;
            let qh = &q[t * n_embd + h * d..t * n_embd + (h + 1) * d];
            let mut s: Vec<f64> = (0..=pos)
                .map(|j| {
                    let dot: f64 = match &keys {
                        HeadRows::F32(r) => {
                            r[j * d..(j + 1) * d].iter().zip(qh).map(|(a, b)| *a as f64 * *b as f64).sum()
                        }
                        _ => unreachable!("reference runs on f32 caches"),
                    };
                    dot * qk_scale as f64 - slope as f64 * (pos - j) as f64
                })
                .collect();
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s
                .iter_mut()
                .map(|v| {
                    *v = (*v - m).exp();
                    *v
                })
                .sum();
            let o = &mut out[t * n_embd + h * d..t * n_embd + (h + 1) * d];
            for c in 0..d {
                o[c] = (0..=pos)
                    .map(|j| match &vals {
                        HeadRows::F32(r) => s[j] / z * r[j * d + c] as f64,
                        _ => unreachable!(),
                    })
                    .sum::<f64>() as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_cache::KvType;
    use crate::model::{alibi_slopes, AlibiScaling, HParams};
    use rand::{Rng, SeedableRng};

    fn hparams(n_head: usize, d: usize) -> HParams {
        HParams {
            name: "t".into(),
            n_vocab: 10,
            n_ctx_train: 64,
            n_embd: n_head * d,
            n_layer: 1,
            n_head,
            n_inner: 32,
            n_inner_original: 32,
            ln_eps: 1e-5,
            qk_scale: 1.0 / d as f32,
            emb_scale: 1.0,
            out_scale: 1.0,
            alibi_slopes: alibi_slopes(n_head),
            alibi_scaling: AlibiScaling::None,
        }
    }

    /// Tiled + online softmax + ALiBi cut-off against the all-scores f64 reference, for context
    /// lengths around and between tile boundaries, prefill and decode shapes, and PI scales.
    #[test]
    fn tiled_attention_equals_straightforward() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for (n_head, d) in [(6, 16), (4, 80)] {
            let hp = hparams(n_head, d);
            let e = n_head * d;
            for total in [1, 2, 127, 128, 129, 300, 700] {
                for (n_tok, scale) in [(1, 1.0), (total.min(37), 1.0), (1, 4.0)] {
                    let mut cache = KvCache::new(&hp, total, KvType::F32, None).unwrap();
                    for p in 0..total {
                        let k: Vec<f32> = (0..e).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                        let v: Vec<f32> = (0..e).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                        cache.write(0, p, &k, &v);
                    }
                    let pos0 = total - n_tok;
                    let q: Vec<f32> = (0..n_tok * e).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                    let (mut a, mut b) = (vec![0f32; n_tok * e], vec![0f32; n_tok * e]);
                    attend(&cache, 0, &q, pos0, n_tok, &hp.alibi_slopes, scale, hp.qk_scale, &mut a);
                    attend_reference(&cache, 0, &q, pos0, n_tok, &hp.alibi_slopes, scale, hp.qk_scale, &mut b);
                    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(err < 2e-5, "heads {n_head} d {d} total {total} n_tok {n_tok} scale {scale}: {err}");
                }
            }
        }
    }
}
