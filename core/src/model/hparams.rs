//! BTLM hyperparameters as stored in GGUF metadata, and the key names shared by the converter
//! (which writes them) and the loader (which reads and checks them).

use crate::error::GgufError;
use crate::gguf::{GgufHeader, MetaValue};

pub const ARCH: &str = "btlm";

/// Sanity limits on the shape, far above any real BTLM (3B: 32 heads, 2560 wide, 32 layers),
/// so that a hostile file cannot make the loader compute or allocate absurd amounts
/// (ALiBi slopes are per head; activations are per n_embd/n_inner).
pub const MAX_HEADS: usize = 4096;
pub const MAX_WIDTH: usize = 1 << 20;
pub const MAX_LAYERS: usize = 4096;

/// Checks the shape against [`MAX_HEADS`], [`MAX_WIDTH`], [`MAX_LAYERS`]: `Err((key, why))`.
pub fn check_shape(n_embd: usize, n_head: usize, n_layer: usize, n_inner: usize) -> Result<(), (&'static str, String)> {
    if n_head == 0 || n_head > MAX_HEADS {
        return Err(("n_head", format!("{n_head} heads (1 to {MAX_HEADS} supported)")));
    }
    if n_embd > MAX_WIDTH || n_inner > MAX_WIDTH {
        return Err(("n_embd/n_inner", format!("{n_embd}/{n_inner} wide (at most {MAX_WIDTH})")));
    }
    if n_layer > MAX_LAYERS {
        return Err(("n_layer", format!("{n_layer} layers (at most {MAX_LAYERS})")));
    }
    if !n_embd.is_multiple_of(n_head) {
        return Err(("n_head", format!("{n_head} heads do not divide n_embd {n_embd}")));
    }
    Ok(())
}

pub mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const NAME: &str = "general.name";
    pub const FILE_TYPE: &str = "general.file_type";
    pub const QUANT_VERSION: &str = "general.quantization_version";
    pub const CONTEXT_LENGTH: &str = "btlm.context_length";
    pub const EMBEDDING_LENGTH: &str = "btlm.embedding_length";
    pub const BLOCK_COUNT: &str = "btlm.block_count";
    pub const FEED_FORWARD_LENGTH: &str = "btlm.feed_forward_length";
    /// n_inner before zero-padding to a block multiple (informational; the padding is exact).
    pub const FEED_FORWARD_LENGTH_ORIGINAL: &str = "btlm.feed_forward_length_original";
    pub const HEAD_COUNT: &str = "btlm.attention.head_count";
    pub const LAYER_NORM_EPS: &str = "btlm.attention.layer_norm_epsilon";
    /// Multiplier on q·k: 1/d with muP (`mup_scale_qk_dot_by_d`), else 1/sqrt(d).
    pub const QK_SCALE: &str = "btlm.attention.qk_scale";
    /// ALiBi slopes as the checkpoint stores them (possibly bf16-rounded), one per head.
    pub const ALIBI_SLOPES: &str = "btlm.attention.alibi_slopes";
    pub const EMBEDDINGS_SCALE: &str = "btlm.mup.embeddings_scale";
    /// Logit multiplier: mup_output_alpha * mup_width_scale (or `output_logits_scale`).
    pub const OUTPUT_SCALE: &str = "btlm.mup.output_scale";
    pub const WIDTH_SCALE: &str = "btlm.mup.width_scale";
    pub const OUTPUT_ALPHA: &str = "btlm.mup.output_alpha";
    /// "none" or "linear".
    pub const ALIBI_SCALING_TYPE: &str = "btlm.alibi.scaling_type";
    pub const ALIBI_SCALING_FACTOR: &str = "btlm.alibi.scaling_factor";
    pub const ALIBI_TRAIN_SEQ_LEN: &str = "btlm.alibi.train_seq_len";
}

/// ALiBi position interpolation (BTLM's `alibi_scaling`): slopes are divided by `scale(K)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlibiScaling {
    None,
    /// `{"type": "linear", "factor": f}`: always divide by f.
    Fixed(f32),
    /// `{"type": "linear", "train_seq_len": n}`: divide by K/n once the call's total key count
    /// K exceeds n, recomputed on every forward call.
    Dynamic {
        train_seq_len: usize,
    },
}

impl AlibiScaling {
    /// The divisor for a forward call that sees `n_keys` keys in total (cached + new).
    pub fn scale(&self, n_keys: usize) -> f32 {
        match *self {
            AlibiScaling::None => 1.0,
            AlibiScaling::Fixed(f) => f,
            AlibiScaling::Dynamic { train_seq_len } if n_keys > train_seq_len => {
                (n_keys as f64 / train_seq_len as f64) as f32
            }
            AlibiScaling::Dynamic { .. } => 1.0,
        }
    }
}

/// Everything the forward pass needs besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct HParams {
    pub name: String,
    pub n_vocab: usize,
    /// `n_positions` of the checkpoint: the trained context, not a hard limit (ALiBi).
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    /// FFN width as stored (possibly zero-padded).
    pub n_inner: usize,
    pub n_inner_original: usize,
    pub ln_eps: f32,
    pub qk_scale: f32,
    pub emb_scale: f32,
    pub out_scale: f32,
    pub alibi_slopes: Vec<f32>,
    pub alibi_scaling: AlibiScaling,
}

impl HParams {
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// KV cache values per token (k and v, all layers).
    pub fn kv_values_per_token(&self) -> usize {
        2 * self.n_layer * self.n_embd
    }

    pub fn from_gguf(h: &GgufHeader) -> Result<Self, GgufError> {
        let arch = req_str(h, keys::ARCHITECTURE)?;
        if arch != ARCH {
            return Err(GgufError::WrongArchitecture { found: arch.to_string() });
        }
        let n_embd = req_usize(h, keys::EMBEDDING_LENGTH)?;
        let n_head = req_usize(h, keys::HEAD_COUNT)?;
        let n_layer = req_usize(h, keys::BLOCK_COUNT)?;
        let n_inner = req_usize(h, keys::FEED_FORWARD_LENGTH)?;
        let n_ctx_train = req_usize(h, keys::CONTEXT_LENGTH)?;
        check_shape(n_embd, n_head, n_layer, n_inner).map_err(|(k, why)| {
            let key = match k {
                "n_head" => keys::HEAD_COUNT,
                "n_layer" => keys::BLOCK_COUNT,
                _ => keys::EMBEDDING_LENGTH,
            };
            invalid(key, why)
        })?;
        let n_inner_original = match h.get(keys::FEED_FORWARD_LENGTH_ORIGINAL) {
            None => n_inner,
            Some(_) => req_usize(h, keys::FEED_FORWARD_LENGTH_ORIGINAL)?,
        };
        if n_inner_original > n_inner {
            return Err(invalid(keys::FEED_FORWARD_LENGTH_ORIGINAL, format!("{n_inner_original} > padded {n_inner}")));
        }
        let slopes = req(h, keys::ALIBI_SLOPES)?;
        let alibi_slopes = slopes
            .as_array()
            .and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect::<Option<Vec<f32>>>())
            .ok_or_else(|| wrong_type(keys::ALIBI_SLOPES, "array of f32", slopes))?;
        if alibi_slopes.len() != n_head {
            return Err(invalid(keys::ALIBI_SLOPES, format!("{} slopes for {n_head} heads", alibi_slopes.len())));
        }
        if alibi_slopes.iter().any(|s| !s.is_finite()) {
            return Err(invalid(keys::ALIBI_SLOPES, "a slope is not finite".into()));
        }
        let alibi_scaling = match h.get(keys::ALIBI_SCALING_TYPE).map(|v| (v, v.as_str())) {
            None | Some((_, Some("none"))) => AlibiScaling::None,
            Some((_, Some("linear"))) => match (h.get(keys::ALIBI_SCALING_FACTOR), h.get(keys::ALIBI_TRAIN_SEQ_LEN)) {
                (Some(_), None) => {
                    let f = req_f32(h, keys::ALIBI_SCALING_FACTOR)?;
                    if !(f > 0.0 && f.is_finite()) {
                        return Err(invalid(keys::ALIBI_SCALING_FACTOR, format!("{f} is not a positive number")));
                    }
                    AlibiScaling::Fixed(f)
                }
                (None, Some(_)) => {
                    let n = req_usize(h, keys::ALIBI_TRAIN_SEQ_LEN)?;
                    AlibiScaling::Dynamic { train_seq_len: n }
                }
                _ => {
                    return Err(invalid(
                        keys::ALIBI_SCALING_TYPE,
                        "linear scaling needs exactly one of scaling_factor and train_seq_len".into(),
                    ))
                }
            },
            Some((v, Some(other))) => {
                return Err(invalid(
                    keys::ALIBI_SCALING_TYPE,
                    format!("unknown scaling type {other:?} ({})", v.summary()),
                ))
            }
            Some((v, None)) => return Err(wrong_type(keys::ALIBI_SCALING_TYPE, "string", v)),
        };
        let hp = HParams {
            name: h.get(keys::NAME).and_then(|v| v.as_str()).unwrap_or("btlm").to_string(),
            n_vocab: 0, // from the embedding tensor, checked by the weight loader
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_inner,
            n_inner_original,
            ln_eps: req_f32(h, keys::LAYER_NORM_EPS)?,
            qk_scale: req_f32(h, keys::QK_SCALE)?,
            emb_scale: req_f32(h, keys::EMBEDDINGS_SCALE)?,
            out_scale: req_f32(h, keys::OUTPUT_SCALE)?,
            alibi_slopes,
            alibi_scaling,
        };
        for (k, v) in [
            (keys::LAYER_NORM_EPS, hp.ln_eps),
            (keys::QK_SCALE, hp.qk_scale),
            (keys::EMBEDDINGS_SCALE, hp.emb_scale),
            (keys::OUTPUT_SCALE, hp.out_scale),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return Err(invalid(k, format!("{v} is not a positive number")));
            }
        }
        Ok(hp)
    }

    /// Metadata entries describing these hyperparameters (the converter adds name, file type
    /// and tokenizer keys).
    pub fn to_metadata(&self) -> Vec<(String, MetaValue)> {
        let mut m = vec![
            (keys::CONTEXT_LENGTH, MetaValue::U32(self.n_ctx_train as u32)),
            (keys::EMBEDDING_LENGTH, MetaValue::U32(self.n_embd as u32)),
            (keys::BLOCK_COUNT, MetaValue::U32(self.n_layer as u32)),
            (keys::FEED_FORWARD_LENGTH, MetaValue::U32(self.n_inner as u32)),
            (keys::FEED_FORWARD_LENGTH_ORIGINAL, MetaValue::U32(self.n_inner_original as u32)),
            (keys::HEAD_COUNT, MetaValue::U32(self.n_head as u32)),
            (keys::LAYER_NORM_EPS, MetaValue::F32(self.ln_eps)),
            (keys::QK_SCALE, MetaValue::F32(self.qk_scale)),
            (keys::ALIBI_SLOPES, MetaValue::Array(self.alibi_slopes.iter().map(|&s| MetaValue::F32(s)).collect())),
            (keys::EMBEDDINGS_SCALE, MetaValue::F32(self.emb_scale)),
            (keys::OUTPUT_SCALE, MetaValue::F32(self.out_scale)),
        ];
        match self.alibi_scaling {
            AlibiScaling::None => m.push((keys::ALIBI_SCALING_TYPE, MetaValue::Str("none".into()))),
            AlibiScaling::Fixed(f) => {
                m.push((keys::ALIBI_SCALING_TYPE, MetaValue::Str("linear".into())));
                m.push((keys::ALIBI_SCALING_FACTOR, MetaValue::F32(f)));
            }
            AlibiScaling::Dynamic { train_seq_len } => {
                m.push((keys::ALIBI_SCALING_TYPE, MetaValue::Str("linear".into())));
                m.push((keys::ALIBI_TRAIN_SEQ_LEN, MetaValue::U32(train_seq_len as u32)));
            }
        }
        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// ALiBi slopes for any head count, per the ALiBi paper's recipe as BTLM implements it: the
/// power-of-two list for the largest power of two c <= H, then the even-indexed entries of the
/// list for 2c appended (not interleaved).
pub fn alibi_slopes(n_head: usize) -> Vec<f32> {
    fn pow2_slopes(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-8.0 / n as f64);
        (0..n).map(|i| start.powi(i as i32 + 1)).collect()
    }
    if n_head == 0 {
        return vec![];
    }
    let c = 1usize << (usize::BITS - 1 - n_head.leading_zeros());
    let mut s = pow2_slopes(c);
    if c < n_head {
        s.extend(pow2_slopes(2 * c).into_iter().step_by(2).take(n_head - c));
    }
    s.into_iter().map(|x| x as f32).collect()
}

fn req<'a>(h: &'a GgufHeader, key: &str) -> Result<&'a MetaValue, GgufError> {
    h.get(key).ok_or_else(|| GgufError::MissingKey(key.into()))
}

fn wrong_type(key: &str, expected: &str, found: &MetaValue) -> GgufError {
    GgufError::WrongKeyType { key: key.into(), expected: expected.into(), found: found.type_name().into() }
}

fn invalid(key: &str, why: String) -> GgufError {
    GgufError::InvalidValue { key: key.into(), why }
}

fn req_str<'a>(h: &'a GgufHeader, key: &str) -> Result<&'a str, GgufError> {
    let v = req(h, key)?;
    v.as_str().ok_or_else(|| wrong_type(key, "string", v))
}

fn req_usize(h: &GgufHeader, key: &str) -> Result<usize, GgufError> {
    let v = req(h, key)?;
    let n = v.as_u64().ok_or_else(|| wrong_type(key, "unsigned integer", v))?;
    if n == 0 || n > (1 << 31) {
        return Err(invalid(key, format!("{n} is out of range")));
    }
    Ok(n as usize)
}

fn req_f32(h: &GgufHeader, key: &str) -> Result<f32, GgufError> {
    let v = req(h, key)?;
    v.as_f64().map(|x| x as f32).ok_or_else(|| wrong_type(key, "float", v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_power_of_two() {
        let s = alibi_slopes(32);
        assert!((s[0] - 0.840_896).abs() < 1e-6);
        assert_eq!(s[3], 0.5);
        assert_eq!(s[31], 0.003_906_25);
    }

    #[test]
    fn slopes_odd_heads_are_appended_not_interleaved() {
        assert_eq!(alibi_slopes(6), vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
    }

    #[test]
    fn dynamic_scale_kicks_in_past_train_len() {
        let d = AlibiScaling::Dynamic { train_seq_len: 32 };
        assert_eq!(d.scale(32), 1.0);
        assert_eq!(d.scale(64), 2.0);
        assert_eq!(AlibiScaling::Fixed(2.0).scale(1), 2.0);
    }
}
