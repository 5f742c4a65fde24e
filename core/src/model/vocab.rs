//! The tokenizer as GGUF metadata (`tokenizer.ggml.*`, the keys llama.cpp uses for GPT-2 BPE).

use crate::error::GgufError;
use crate::gguf::{GgufHeader, MetaValue};
use crate::tokenizer::TokenizerSpec;

pub const MODEL: &str = "tokenizer.ggml.model";
pub const TOKENS: &str = "tokenizer.ggml.tokens";
pub const MERGES: &str = "tokenizer.ggml.merges";
pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub const BOS: &str = "tokenizer.ggml.bos_token_id";
pub const EOS: &str = "tokenizer.ggml.eos_token_id";
pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";

pub fn to_metadata(spec: &TokenizerSpec) -> Vec<(String, MetaValue)> {
    let strs = |v: &[String]| MetaValue::Array(v.iter().cloned().map(MetaValue::Str).collect());
    let mut m = vec![
        (MODEL.to_string(), MetaValue::Str(spec.model.clone())),
        (TOKENS.to_string(), strs(&spec.tokens)),
        (MERGES.to_string(), strs(&spec.merges)),
        (
            TOKEN_TYPE.to_string(),
            MetaValue::Array(
                (0..spec.tokens.len()).map(|i| MetaValue::I32(spec.token_types.get(i).copied().unwrap_or(1))).collect(),
            ),
        ),
    ];
    if let Some(b) = spec.bos_id {
        m.push((BOS.into(), MetaValue::U32(b)));
    }
    if let Some(e) = spec.eos_id {
        m.push((EOS.into(), MetaValue::U32(e)));
    }
    // BTLM was trained without a BOS prepended to prompts.
    m.push((ADD_BOS.into(), MetaValue::Bool(false)));
    if let Some(t) = &spec.chat_template {
        m.push((crate::chat::CHAT_TEMPLATE_KEY.into(), MetaValue::Str(t.clone())));
    }
    m
}

pub fn from_gguf(h: &GgufHeader) -> Result<TokenizerSpec, GgufError> {
    let get = |k: &str| h.get(k).ok_or_else(|| GgufError::MissingKey(k.into()));
    let wrong = |k: &str, exp: &str, v: &MetaValue| GgufError::WrongKeyType {
        key: k.into(),
        expected: exp.into(),
        found: v.type_name().into(),
    };
    let str_array = |k: &str| -> Result<Vec<String>, GgufError> {
        let v = get(k)?;
        v.as_array()
            .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| wrong(k, "array of strings", v))
    };
    let model = get(MODEL)?;
    let model = model.as_str().ok_or_else(|| wrong(MODEL, "string", model))?.to_string();
    let tokens = str_array(TOKENS)?;
    let merges = match h.get(MERGES) {
        Some(_) => str_array(MERGES)?,
        None => vec![],
    };
    let token_types = match h.get(TOKEN_TYPE) {
        None => vec![],
        Some(v) => token_types(v, tokens.len()).map_err(|why| match why {
            None => wrong(TOKEN_TYPE, "array of integers", v),
            Some(why) => GgufError::InvalidValue { key: TOKEN_TYPE.into(), why },
        })?,
    };
    let id = |k: &str| -> Result<Option<u32>, GgufError> {
        match h.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(x) if (x as usize) < tokens.len() => Ok(Some(x as u32)),
                _ => Err(GgufError::InvalidValue { key: k.into(), why: format!("{} is not a token id", v.summary()) }),
            },
        }
    };
    let chat_template = match h.get(crate::chat::CHAT_TEMPLATE_KEY) {
        None => None,
        Some(v) => Some(v.as_str().ok_or_else(|| wrong(crate::chat::CHAT_TEMPLATE_KEY, "string", v))?.to_string()),
    };
    Ok(TokenizerSpec { model, bos_id: id(BOS)?, eos_id: id(EOS)?, tokens, merges, token_types, chat_template })
}

/// llama.cpp's token types: 0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined,
/// 5 unused, 6 byte.
const TOKEN_TYPES: std::ops::RangeInclusive<i64> = 0..=6;

/// The `token_type` array, one valid type per token. `Err(None)`: not an array of integers;
/// `Err(Some(why))`: integers, but not valid ones.
fn token_types(v: &MetaValue, n_tokens: usize) -> Result<Vec<i32>, Option<String>> {
    let a = v.as_array().ok_or(None)?;
    if a.len() != n_tokens {
        return Err(Some(format!("has {} entries for {n_tokens} tokens", a.len())));
    }
    a.iter()
        .enumerate()
        .map(|(i, x)| match x.as_i64() {
            Some(t) if TOKEN_TYPES.contains(&t) => Ok(t as i32),
            Some(t) => Err(Some(format!("entry {i} is {t}; token types are 0..=6 (normal 1, control 3, byte 6, ...)"))),
            None => Err(Some(format!("entry {i} is {}, not an integer", x.summary()))),
        })
        .collect()
}
