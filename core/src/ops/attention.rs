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

/// Prompts of at least this many new tokens take the block path ([`Head::query_block`]).
/// Above the longest speculative verification batch (`session::MAX_DRAFT` + 1): a batch
/// that verifies a draft takes the one-query path that one-token decoding takes, so the two
/// agree to float rounding (the q4 cache's one-query path scores an int8 copy of the query,
/// the block path the exact one).
const BLOCK_MIN_TOKENS: usize = crate::session::MAX_DRAFT + 2;
/// Queries per block on the block path (a multiple of the kernels' 4-query register tile).
const QBLOCK: usize = 32;
/// Keys per tile on the block path: a tile's keys and values as f32 (2 x 64 x 80 floats for
/// BTLM) stay in L1 while the block's queries use them.
const KTILE: usize = 64;

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
    let qblock = if n_tok >= BLOCK_MIN_TOKENS { QBLOCK } else { 1 };
    let tasks: Vec<(usize, usize)> =
        (0..n_head).flat_map(|h| (0..n_tok).step_by(qblock).map(move |t0| (h, t0))).collect();
    // One task per (head, query block) writes a [nq][d] block; scattered into `out` afterwards.
    let blocks: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(h, t0)| {
            let (keys, vals, kmax) = cache.head(layer, h, pos0 + n_tok);
            let head = Head { k, keys: &keys, vals: &vals, kmax, slope: slopes[h] / alibi_scale, qk_scale };
            let nq = qblock.min(n_tok - t0);
            let qrow = |t: usize| &q[(t0 + t) * n_embd + h * d..(t0 + t) * n_embd + (h + 1) * d];
            if qblock == 1 {
                let mut res = vec![0f32; d];
                head.query(qrow(0), pos0 + t0, &mut vec![0f32; TILE], &mut res);
                res
            } else {
                head.query_block(&(0..nq).map(qrow).collect::<Vec<_>>(), pos0 + t0, d)
            }
        })
        .collect();
    for (&(h, t0), block) in tasks.iter().zip(&blocks) {
        for (i, o) in block.chunks_exact(d).enumerate() {
            let t = t0 + i;
            out[t * n_embd + h * d..t * n_embd + (h + 1) * d].copy_from_slice(o);
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
        let qp = self.keys.prepare(q);
        let mut end = pos + 1;
        while end > 0 {
            // Tiles aligned to TILE (the newest one partial), so the 4-bit cache's 16-row
            // storage tiles are never split between two of them.
            let start = (end - 1) / TILE * TILE;
            if m.is_finite() && self.slope > 0.0 {
                let best = bound - self.slope * (pos + 1 - end) as f32;
                if best < m - CUTOFF {
                    break;
                }
            }
            let s = &mut scores[..end - start];
            self.keys.dot_rows(self.k, start, &qp, s);
            let mut dist = (pos - start) as f32; // exact: positions are far below 2^24
            for sc in s.iter_mut() {
                *sc = *sc * self.qk_scale - self.slope * dist;
                dist -= 1.0;
            }
            let m_new = s.iter().copied().fold(m, f32::max);
            let corr = (m - m_new).exp(); // 0 on the first tile (m = -inf)
            if corr != 1.0 {
                l *= corr;
                o.iter_mut().for_each(|v| *v *= corr);
            }
            l += (self.k.exp_sum)(s, m_new);
            self.vals.axpy_rows(self.k, start, s, o);
            m = m_new;
            end = start;
        }
        let inv = 1.0 / l;
        o.iter_mut().for_each(|v| *v *= inv);
    }
}

impl Head<'_> {
    /// A block of queries at consecutive positions `pos0..` against their keys, in tiles:
    /// each tile of keys and values is converted to f32 once, and the scores and weighted sums
    /// are small matrix products (the kernels' register-tiled `qk_tile` / `pv_tile`) instead of
    /// one dot per (query, key). The online softmax and the ALiBi cut-off work as in [`query`],
    /// per query; the scan stops when every query of the block is past its cut-off.
    ///
    /// [`query`]: Head::query
    fn query_block(&self, qs: &[&[f32]], pos0: usize, d: usize) -> Vec<f32> {
        let nq = qs.len();
        let nq4 = nq.div_ceil(4) * 4;
        // Queries pre-scaled by qk_scale; padding rows stay zero (their output is dropped).
        let mut qb = vec![0f32; nq4 * d];
        let mut bound = vec![0f32; nq];
        for (i, q) in qs.iter().enumerate() {
            qb[i * d..(i + 1) * d].iter_mut().zip(*q).for_each(|(a, &b)| *a = b * self.qk_scale);
            bound[i] = q.iter().map(|x| x * x).sum::<f32>().sqrt() * self.kmax * self.qk_scale.abs();
        }
        let (mut m, mut l) = (vec![f32::NEG_INFINITY; nq], vec![0f32; nq]);
        let mut o = vec![0f32; nq4 * d];
        let (mut kr, mut kt, mut vr) = (vec![0f32; KTILE * d], vec![0f32; KTILE * d], vec![0f32; KTILE * d]);
        let mut s = vec![0f32; nq4 * KTILE];
        let mut end = pos0 + nq;
        while end > 0 {
            let start = end.saturating_sub(KTILE);
            let past_cutoff = |i: usize| {
                // Distance to the nearest unvisited key (0 while it is still in the future).
                let best = bound[i] - self.slope * (pos0 + i + 1).saturating_sub(end) as f32;
                m[i].is_finite() && best < m[i] - CUTOFF
            };
            if self.slope > 0.0 && (0..nq).all(past_cutoff) {
                break;
            }
            let nk = end - start;
            self.keys.rows_to_f32_t(start, d, nk, &mut kr, &mut kt[..d * nk]);
            self.vals.rows_to_f32(start, d, &mut vr[..nk * d]);
            let s = &mut s[..nq4 * nk];
            (self.k.qk_tile)(&qb, &kt[..d * nk], d, nk, s);
            for (i, row) in s.chunks_exact_mut(nk).take(nq).enumerate() {
                let pos = pos0 + i;
                let mut mx = m[i];
                for (jj, sc) in row.iter_mut().enumerate() {
                    let j = start + jj;
                    *sc = if j > pos { f32::NEG_INFINITY } else { *sc - self.slope * (pos - j) as f32 };
                    mx = mx.max(*sc);
                }
                if mx == f32::NEG_INFINITY {
                    row.fill(0.0); // every key of the tile is in this query's future
                    continue;
                }
                let corr = (m[i] - mx).exp(); // 0 on the query's first tile (m = -inf)
                if corr != 1.0 {
                    l[i] *= corr;
                    o[i * d..(i + 1) * d].iter_mut().for_each(|v| *v *= corr);
                }
                l[i] += (self.k.exp_sum)(row, mx);
                m[i] = mx;
            }
            (self.k.pv_tile)(s, &vr[..nk * d], d, nk, &mut o);
            end = start;
        }
        o.truncate(nq * d);
        for (row, &li) in o.chunks_exact_mut(d).zip(&l) {
            let inv = 1.0 / li;
            row.iter_mut().for_each(|v| *v *= inv);
        }
        o
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
                for (n_tok, scale) in [(1, 1.0), (total.min(37), 1.0), (1, 4.0), (total, 4.0)] {
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

    /// The 4-bit cache against the f64 reference on its own dequantized rows: prefill blocks
    /// see exact rows (error as for f32), decode scores an int8 copy of the query and sums
    /// int8-rounded weights, which moves outputs by well under 1% of the values' range.
    #[test]
    fn q4_cache_attention_matches_its_dequantized_rows() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n_head, d) = (4, 80);
        let hp = hparams(n_head, d);
        let e = n_head * d;
        for total in [1, 17, 129, 300] {
            for n_tok in [1, total] {
                let mut q4 = KvCache::new(&hp, total, KvType::Q4, None).unwrap();
                let mut f32c = KvCache::new(&hp, total, KvType::F32, None).unwrap();
                for p in 0..total {
                    let k: Vec<f32> = (0..e).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                    let v: Vec<f32> = (0..e).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                    q4.write(0, p, &k, &v);
                    let (mut kd, mut vd) = (vec![0f32; e], vec![0f32; e]);
                    for h in 0..n_head {
                        let (kr, vr, _) = q4.head(0, h, p + 1);
                        kr.rows_to_f32(p, d, &mut kd[h * d..(h + 1) * d]);
                        vr.rows_to_f32(p, d, &mut vd[h * d..(h + 1) * d]);
                    }
                    f32c.write(0, p, &kd, &vd);
                }
                let pos0 = total - n_tok;
                let q: Vec<f32> = (0..n_tok * e).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                let (mut a, mut b) = (vec![0f32; n_tok * e], vec![0f32; n_tok * e]);
                attend(&q4, 0, &q, pos0, n_tok, &hp.alibi_slopes, 1.0, hp.qk_scale, &mut a);
                attend_reference(&f32c, 0, &q, pos0, n_tok, &hp.alibi_slopes, 1.0, hp.qk_scale, &mut b);
                let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                let bound = if n_tok >= BLOCK_MIN_TOKENS { 2e-5 } else { 1e-2 };
                println!("q4 cache attention, total {total} n_tok {n_tok}: max error {err:.2e}");
                assert!(err < bound, "total {total} n_tok {n_tok}: {err}");
            }
        }
    }
}
