//! The tokenizer of a model folder, in the forms Hugging Face folders carry it: `tokenizer.json`
//! (the fast tokenizer; BTLM's chat model has one) or the slow GPT-2 tokenizer's `vocab.json` +
//! `merges.txt` (all the official base model has). Special tokens and the bos/eos ids come from
//! `config.json` first, then `tokenizer_config.json`, then `special_tokens_map.json`, as
//! `transformers` resolves them; `<|endoftext|>` is GPT-2's default for both.

use super::HfConfig;
use crate::error::{ConvertError, Error, Result};
use crate::tokenizer::TokenizerSpec;
use serde_json::Value;
use std::path::Path;

/// The folder's tokenizer and a description of where it came from (for the CLI).
pub(super) fn load(dir: &Path, explicit: Option<&Path>, cfg: &HfConfig) -> Result<(TokenizerSpec, String)> {
    let named = SpecialTokens::read(dir)?;
    let fast = dir.join("tokenizer.json");
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    let (mut spec, source) = match explicit {
        Some(p) => (TokenizerSpec::from_hf_json(&read(p)?)?, p.display().to_string()),
        None if fast.is_file() => (TokenizerSpec::from_hf_json(&read(&fast)?)?, "tokenizer.json".to_string()),
        None if vocab.is_file() && merges.is_file() => {
            let spec = TokenizerSpec::from_vocab_merges(&read(&vocab)?, &read(&merges)?, &named.all)
                .map_err(|e| ConvertError::Config { path: vocab.clone(), why: format!("with merges.txt: {e}") })?;
            (spec, "vocab.json + merges.txt".to_string())
        }
        None => return Err(ConvertError::NoTokenizer(dir.to_path_buf()).into()),
    };
    let by_name =
        |name: &Option<String>| name.as_ref().and_then(|n| spec.tokens.iter().position(|t| t == n)).map(|i| i as u32);
    let bos = cfg.bos_token_id.or_else(|| by_name(&named.bos));
    let eos = cfg.eos_token_id.or_else(|| by_name(&named.eos));
    spec.bos_id = bos.or(spec.bos_id);
    spec.eos_id = eos.or(spec.eos_id);
    spec.chat_template = named.chat_template;
    let n = spec.tokens.len();
    for (key, id) in [("bos_token_id", spec.bos_id), ("eos_token_id", spec.eos_id)] {
        if let Some(id) = id.filter(|&id| id as usize >= n) {
            return Err(ConvertError::ConfigKey {
                key: key.into(),
                why: format!("id {id} is outside the tokenizer's {n} tokens ({source})"),
            }
            .into());
        }
    }
    Ok((spec, source))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Special tokens named by tokenizer_config.json and special_tokens_map.json.
#[derive(Default)]
struct SpecialTokens {
    bos: Option<String>,
    eos: Option<String>,
    all: Vec<String>,
    /// tokenizer_config.json's `chat_template`: a string, or a list of `{name, template}`
    /// (the one named "default", else the first).
    chat_template: Option<String>,
}

impl SpecialTokens {
    fn read(dir: &Path) -> Result<SpecialTokens> {
        let mut out = SpecialTokens::default();
        // tokenizer_config.json first: transformers lets it override the map.
        for file in ["tokenizer_config.json", "special_tokens_map.json"] {
            let path = dir.join(file);
            if !path.is_file() {
                continue;
            }
            let bad = |why: String| -> Error { ConvertError::Config { path: path.clone(), why }.into() };
            let v: Value = serde_json::from_str(&read(&path)?).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            let obj = v.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
            if file == "tokenizer_config.json" {
                out.chat_template = match obj.get("chat_template") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(Value::Array(list)) => {
                        let named = |n: &str| list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(n));
                        named("default").or(list.first()).and_then(|t| t.get("template")?.as_str()).map(str::to_string)
                    }
                    Some(_) => return Err(bad("chat_template is neither a string nor a list of templates".into())),
                };
            }
            for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
                let Some(tok) = obj.get(key).and_then(token_content) else { continue };
                match key {
                    "bos_token" if out.bos.is_none() => out.bos = Some(tok.clone()),
                    "eos_token" if out.eos.is_none() => out.eos = Some(tok.clone()),
                    _ => {}
                }
                out.push(tok);
            }
            if let Some(list) = obj.get("additional_special_tokens").and_then(Value::as_array) {
                list.iter().filter_map(token_content).for_each(|t| out.push(t));
            }
            // Newer transformers: {"added_tokens_decoder": {"50256": {"content": ..., "special": true}}}
            if let Some(map) = obj.get("added_tokens_decoder").and_then(Value::as_object) {
                for t in map.values().filter(|t| t.get("special").and_then(Value::as_bool) == Some(true)) {
                    if let Some(c) = token_content(t) {
                        out.push(c);
                    }
                }
            }
        }
        Ok(out)
    }

    fn push(&mut self, tok: String) {
        if !self.all.contains(&tok) {
            self.all.push(tok);
        }
    }
}

/// A special token as these files spell it: `"<|endoftext|>"` or `{"content": "<|endoftext|>", ...}`.
fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        _ => None,
    }
}
