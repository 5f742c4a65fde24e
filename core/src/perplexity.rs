//! Perplexity over a token stream, and the data to compare a quantized model against a
//! reference (llama.cpp's `perplexity --kl-divergence` in spirit): windows of `n_ctx` tokens
//! advanced by `stride`; in each window only the last `stride` predictions are scored, so every
//! scored token sees at least `n_ctx - stride` tokens of context.

use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvType};
use crate::model::{AlibiScaling, Logits, Model};

#[derive(Debug, Clone)]
pub struct PerplexityOptions {
    pub n_ctx: usize,
    /// Tokens scored per window (and the window advance); default n_ctx / 2.
    pub stride: usize,
    pub kv_type: KvType,
    /// Stop after this many windows (0 = the whole text).
    pub max_windows: usize,
    /// Position interpolation for a model that carries none (its own always wins, as in a
    /// session). Dynamic interpolation sees K = n_ctx keys in every window, since the window
    /// is one logical call.
    pub alibi_scaling: AlibiScaling,
}

/// One scored prediction: the log-softmax over the vocabulary, and the token that followed.
pub struct Scored<'a> {
    pub log_probs: &'a [f32],
    pub next: u32,
}

#[derive(Debug, Clone, Default)]
pub struct PerplexityReport {
    pub scored: usize,
    pub windows: usize,
    pub nll_sum: f64,
}

impl PerplexityReport {
    pub fn perplexity(&self) -> f64 {
        (self.nll_sum / self.scored.max(1) as f64).exp()
    }
}

/// Number of windows `tokens` yields under `o`.
pub fn window_count(n_tokens: usize, o: &PerplexityOptions) -> usize {
    // An invalid stride yields no windows here; `perplexity` reports it as an error.
    if o.stride == 0 || n_tokens < o.n_ctx {
        return 0;
    }
    let all = (n_tokens - o.n_ctx) / o.stride + 1;
    if o.max_windows > 0 {
        all.min(o.max_windows)
    } else {
        all
    }
}

/// Scores `tokens`, calling `on_scored` for every prediction (in order) and `on_window` after
/// each window with the running report.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    o: &PerplexityOptions,
    on_scored: &mut dyn FnMut(Scored) -> Result<()>,
    on_window: &mut dyn FnMut(&PerplexityReport),
) -> Result<PerplexityReport> {
    if o.stride == 0 || o.stride >= o.n_ctx {
        return Err(Error::InvalidArgument(format!("stride {} must be in 1..{}", o.stride, o.n_ctx)));
    }
    let windows = window_count(tokens.len(), o);
    if windows == 0 {
        return Err(Error::InvalidArgument(format!(
            "the text has {} tokens, fewer than one window of {}",
            tokens.len(),
            o.n_ctx
        )));
    }
    let v = model.hparams.n_vocab;
    let mut cache = KvCache::new(&model.hparams, o.n_ctx, o.kv_type, None)?;
    let mut report = PerplexityReport::default();
    let first_scored = o.n_ctx - o.stride - 1; // window position whose logits predict the first scored token
    let mut lp = vec![0f32; v];
    let scaling = match model.hparams.alibi_scaling {
        AlibiScaling::None => o.alibi_scaling,
        own => own,
    };
    for w in 0..windows {
        let start = w * o.stride;
        let win = &tokens[start..start + o.n_ctx];
        cache.clear();
        for (c, chunk) in win.chunks(256).enumerate() {
            let c0 = c * 256;
            let want = if c0 + chunk.len() > first_scored { Logits::All } else { Logits::None };
            let logits = model.forward_with(&mut cache, chunk, o.n_ctx, scaling, want, &|| false)?.unwrap_or_default();
            for (i, row) in logits.chunks_exact(v).enumerate() {
                let p = c0 + i;
                if p < first_scored || p + 1 >= o.n_ctx {
                    continue;
                }
                if let Some((token, value)) = crate::ops::first_non_finite(row) {
                    return Err(Error::NonFinite {
                        what: format!("logit of token {token} at position {} of the text", start + p),
                        value,
                    });
                }
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
                lp.iter_mut().zip(row).for_each(|(o, x)| *o = x - lse);
                let next = win[p + 1];
                report.nll_sum -= lp[next as usize] as f64;
                report.scored += 1;
                on_scored(Scored { log_probs: &lp, next })?;
            }
        }
        report.windows += 1;
        on_window(&report);
    }
    Ok(report)
}
