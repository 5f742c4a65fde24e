//! Reading a Hugging Face BTLM `config.json`, with both the current muP key names and the
//! older ones third-party derivatives still carry (btlm-spec.md §1). Anything that would change
//! the math in a way this engine does not implement is refused with the key named.

use crate::error::ConvertError;
use crate::model::{alibi_slopes, AlibiScaling, HParams};
use serde_json::{Map, Value};

fn key_err(key: &str, why: impl Into<String>) -> ConvertError {
    ConvertError::ConfigKey { key: key.into(), why: why.into() }
}

fn get_usize(c: &Map<String, Value>, key: &str) -> Result<usize, ConvertError> {
    let v = c.get(key).ok_or_else(|| key_err(key, "missing"))?;
    v.as_u64()
        .filter(|&n| n > 0 && n < (1 << 31))
        .map(|n| n as usize)
        .ok_or_else(|| key_err(key, format!("expected a positive integer, found {v}")))
}

fn get_f64(c: &Map<String, Value>, key: &str) -> Result<Option<f64>, ConvertError> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| key_err(key, format!("expected a number, found {v}"))),
    }
}

fn get_bool(c: &Map<String, Value>, key: &str) -> Result<Option<bool>, ConvertError> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(key_err(key, format!("expected true or false, found {v}"))),
    }
}

/// First present key of a list of spellings.
fn first_f64(c: &Map<String, Value>, keys: &[&str]) -> Result<Option<f64>, ConvertError> {
    for k in keys {
        if let Some(v) = get_f64(c, k)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// The parsed config: hyperparameters plus the special token ids it names.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub hparams: HParams,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

pub fn parse_config(json: &str) -> Result<HfConfig, ConvertError> {
    let root: Value = serde_json::from_str(json).map_err(|e| key_err("config.json", format!("not valid JSON: {e}")))?;
    let c = root.as_object().ok_or_else(|| key_err("config.json", "not a JSON object"))?;

    match c.get("model_type").and_then(Value::as_str) {
        Some("btlm") => {}
        other => return Err(key_err("model_type", format!("expected \"btlm\", found {other:?}"))),
    }
    let expect_str = |key: &str, want: &str| -> Result<(), ConvertError> {
        match c.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(s)) if s == want => Ok(()),
            Some(v) => Err(key_err(key, format!("only {want:?} is supported, found {v}"))),
        }
    };
    expect_str("activation_function", "swiglu")?;
    expect_str("position_embedding_type", "alibi")?;
    if get_bool(c, "scale_attn_by_inverse_layer_idx")? == Some(true) {
        return Err(key_err("scale_attn_by_inverse_layer_idx", "true is not supported"));
    }
    if get_bool(c, "tie_word_embeddings")? == Some(false) {
        return Err(key_err("tie_word_embeddings", "an untied LM head is not supported (BTLM ties it)"));
    }

    let n_embd = get_usize(c, "n_embd")?;
    let n_head = get_usize(c, "n_head")?;
    let n_layer = get_usize(c, "n_layer")?;
    let n_inner = match c.get("n_inner") {
        None | Some(Value::Null) => 4 * n_embd, // GPT-2's default
        Some(_) => get_usize(c, "n_inner")?,
    };
    crate::model::hparams::check_shape(n_embd, n_head, n_layer, n_inner).map_err(|(k, why)| key_err(k, why))?;
    let d = (n_embd / n_head) as f64;

    let emb_scale = first_f64(c, &["mup_embeddings_scale", "embeddings_scale"])?.unwrap_or(1.0);
    let out_scale = match get_f64(c, "output_logits_scale")? {
        Some(s) => s,
        None => {
            let alpha = get_f64(c, "mup_output_alpha")?.unwrap_or(1.0);
            let width = first_f64(c, &["mup_width_scale", "width_scale"])?.unwrap_or(1.0);
            alpha * width
        }
    };
    let by_d = match get_bool(c, "mup_scale_qk_dot_by_d")? {
        Some(b) => b,
        None => get_bool(c, "scale_qk_dot_by_d")?.unwrap_or(false),
    };
    let qk_scale = match get_bool(c, "scale_attn_weights")?.unwrap_or(true) {
        false => 1.0,
        true if by_d => 1.0 / d,
        true => 1.0 / d.sqrt(),
    };

    let alibi_scaling = match c.get("alibi_scaling") {
        None | Some(Value::Null) => AlibiScaling::None,
        Some(Value::Object(s)) => {
            match s.get("type").and_then(Value::as_str) {
                Some("linear") => {}
                other => {
                    return Err(key_err("alibi_scaling.type", format!("only \"linear\" is supported, found {other:?}")))
                }
            }
            if let Some(k) = s.keys().find(|k| !["type", "factor", "train_seq_len"].contains(&k.as_str())) {
                return Err(key_err(&format!("alibi_scaling.{k}"), "unknown key"));
            }
            match (s.get("factor"), s.get("train_seq_len")) {
                (Some(f), None) => match f.as_f64() {
                    Some(f) if f.is_finite() && f > 0.0 => AlibiScaling::Fixed(f as f32),
                    _ => return Err(key_err("alibi_scaling.factor", format!("expected a positive number, found {f}"))),
                },
                (None, Some(n)) => match n.as_u64() {
                    Some(n) if (1..(1 << 31)).contains(&n) => AlibiScaling::Dynamic { train_seq_len: n as usize },
                    _ => {
                        return Err(key_err(
                            "alibi_scaling.train_seq_len",
                            format!("expected a positive integer, found {n}"),
                        ))
                    }
                },
                _ => return Err(key_err("alibi_scaling", "needs exactly one of \"factor\" and \"train_seq_len\"")),
            }
        }
        Some(v) => return Err(key_err("alibi_scaling", format!("expected null or an object, found {v}"))),
    };
    let token_id = |key: &str| -> Result<Option<u32>, ConvertError> {
        match c.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n < u32::MAX as u64)
                .map(|n| Some(n as u32))
                .ok_or_else(|| key_err(key, format!("expected a token id, found {v}"))),
        }
    };

    Ok(HfConfig {
        hparams: HParams {
            name: c.get("_name_or_path").and_then(Value::as_str).unwrap_or("btlm").to_string(),
            n_vocab: get_usize(c, "vocab_size")?,
            n_ctx_train: get_usize(c, "n_positions")?,
            n_embd,
            n_layer,
            n_head,
            n_inner,
            n_inner_original: n_inner,
            ln_eps: get_f64(c, "layer_norm_epsilon")?.unwrap_or(1e-5) as f32,
            qk_scale: qk_scale as f32,
            emb_scale: emb_scale as f32,
            out_scale: out_scale as f32,
            alibi_slopes: alibi_slopes(n_head),
            alibi_scaling,
        },
        bos_token_id: token_id("bos_token_id")?,
        eos_token_id: token_id("eos_token_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"model_type":"btlm","n_embd":64,"n_head":4,"n_layer":2,"n_inner":170,
        "n_positions":128,"vocab_size":50257,"activation_function":"swiglu",
        "position_embedding_type":"alibi""#;

    fn cfg(extra: &str) -> Result<HfConfig, ConvertError> {
        parse_config(&format!("{BASE}{extra}}}"))
    }

    #[test]
    fn new_and_old_mup_spellings_agree() {
        let new = cfg(r#","mup_embeddings_scale":14.6,"mup_output_alpha":2.22,"mup_width_scale":0.1,"mup_scale_qk_dot_by_d":true"#).unwrap();
        let old =
            cfg(r#","embeddings_scale":14.6,"output_logits_scale":0.222,"width_scale":0.1,"scale_qk_dot_by_d":true"#)
                .unwrap();
        assert_eq!(new.hparams.emb_scale, 14.6);
        assert_eq!(new.hparams.out_scale, old.hparams.out_scale);
        assert_eq!(new.hparams.qk_scale, 1.0 / 16.0);
        assert_eq!(old.hparams.qk_scale, 1.0 / 16.0);
        let plain = cfg("").unwrap();
        assert_eq!(plain.hparams.qk_scale, 0.25);
    }

    #[test]
    fn alibi_scaling_forms() {
        let f = cfg(r#","alibi_scaling":{"type":"linear","factor":2.0}"#).unwrap();
        assert_eq!(f.hparams.alibi_scaling, AlibiScaling::Fixed(2.0));
        let d = cfg(r#","alibi_scaling":{"type":"linear","train_seq_len":32}"#).unwrap();
        assert_eq!(d.hparams.alibi_scaling, AlibiScaling::Dynamic { train_seq_len: 32 });
        let e = cfg(r#","alibi_scaling":{"type":"dynamic","factor":2.0}"#).unwrap_err();
        assert!(e.to_string().contains("alibi_scaling.type"), "{e}");
        let e = cfg(r#","alibi_scaling":{"type":"linear","factor":2.0,"train_seq_len":3}"#).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        for (extra, key) in [
            (r#","activation_function":"gelu""#, "activation_function"),
            (r#","tie_word_embeddings":false"#, "tie_word_embeddings"),
            (r#","scale_attn_by_inverse_layer_idx":true"#, "scale_attn_by_inverse_layer_idx"),
            (r#","n_head":5"#, "n_head"),
        ] {
            let json = format!(
                "{}{extra}}}",
                BASE.replace(r#""n_head":4,"#, if key == "n_head" { "" } else { r#""n_head":4,"# })
            );
            let e = parse_config(&json).unwrap_err();
            assert!(e.to_string().contains(key), "{extra}: {e}");
        }
        assert!(parse_config(r#"{"model_type":"gpt2"}"#).unwrap_err().to_string().contains("model_type"));
    }
}
