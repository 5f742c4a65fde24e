//! GPT-2 byte-level BPE tokenizer for BTLM.
//!
//! The vocabulary travels inside the GGUF file (`tokenizer.ggml.*`), so the runtime builds the
//! tokenizer from a [`TokenizerSpec`] rather than from a `tokenizer.json`; the converter produces
//! that spec from the model folder's `tokenizer.json` with [`TokenizerSpec::from_hf_json`].
//!
//! Encoding is delegated to the `tokenizers` crate (pure-Rust `fancy-regex` build) because getting
//! GPT-2's pre-tokenization regex and merge order exactly right is where home-grown BPEs go wrong.
//! Decoding is done here from a per-token byte table, because generation needs the raw bytes of
//! each token (to stream text that may split a character across tokens), and because
//! `tokenizers::Tokenizer::decode` silently drops ids it does not know.

use std::fmt;

use serde_json::{Map, Value};
use tokenizers::models::bpe::{BpeBuilder, Merges, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// GGUF token type codes (`tokenizer.ggml.token_type`), as written by llama.cpp's converter.
pub mod token_type {
    /// Not set by the converter; handled like [`NORMAL`].
    pub const UNDEFINED: i32 = 0;
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    /// Special tokens such as `<|endoftext|>`: matched verbatim in text, never merged by BPE.
    pub const CONTROL: i32 = 3;
    /// Added tokens that are not special: also matched verbatim in text.
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The only special token GPT-2 and BTLM have; it serves as both BOS and EOS.
const ENDOFTEXT: &str = "<|endoftext|>";

/// Vocabulary as stored in GGUF `tokenizer.ggml.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.model`; only `"gpt2"` (byte-level BPE) is supported.
    pub model: String,
    /// Index = id; byte-level BPE strings (e.g. `"Ġthe"`), control tokens as their literal text.
    pub tokens: Vec<String>,
    /// `"a b"` pairs in priority order (first = merged first).
    pub merges: Vec<String>,
    /// GGUF token types (see [`token_type`]); empty means every token is normal.
    pub token_types: Vec<i32>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// A Jinja chat template (`tokenizer_config.json`'s `chat_template`), kept for the chat
    /// format (`chat::ChatFormat`); it plays no part in tokenizing.
    pub chat_template: Option<String>,
}

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.json is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "unsupported tokenizer model `{0}`: PocketLM only implements GPT-2 byte-level BPE \
         (GGUF model \"gpt2\", tokenizer.json model type \"BPE\" with a ByteLevel pre-tokenizer)"
    )]
    UnsupportedModel(String),
    #[error("invalid tokenizer data: {0}")]
    Invalid(String),
    #[error("failed to encode text: {0}")]
    Encode(String),
    #[error("token id {0} is outside the vocabulary (were the ids produced with another model's tokenizer?)")]
    UnknownId(u32),
}

fn invalid(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid(msg.into())
}

impl TokenizerSpec {
    /// Reads a Hugging Face tokenizer.json (as the converter finds it in a model folder).
    ///
    /// The runtime always tokenizes exactly like GPT-2, so a file that asks for anything else (a
    /// non-BPE model, a normalizer, a prefix space, byte fallback...) is rejected here instead of
    /// producing a GGUF whose ids silently differ from the model's training.
    pub fn from_hf_json(json: &str) -> Result<TokenizerSpec, TokenizerError> {
        let root: Value = serde_json::from_str(json)?;
        let root = root.as_object().ok_or_else(|| invalid("tokenizer.json: top level is not a JSON object"))?;
        Self::from_hf_root(root)
    }

    /// Reads the two files of a slow GPT-2 tokenizer (`vocab.json`: token -> id; `merges.txt`:
    /// one `a b` merge per line after a `#version` header), as the official BTLM base folder
    /// ships them with no tokenizer.json. `specials` are the special tokens the folder's
    /// tokenizer_config.json / special_tokens_map.json name (`<|endoftext|>` is always one):
    /// matched verbatim in text, never merged, as `GPT2Tokenizer` treats them. A special token
    /// missing from vocab.json gets the next id, as `transformers` adds it.
    ///
    /// The result is what the equivalent tokenizer.json would give (byte-level BPE,
    /// add_prefix_space false), built through the same validation.
    pub fn from_vocab_merges(
        vocab_json: &str,
        merges_txt: &str,
        specials: &[String],
    ) -> Result<TokenizerSpec, TokenizerError> {
        let vocab: Map<String, Value> = serde_json::from_str(vocab_json)
            .map_err(|e| invalid(format!("vocab.json is not a JSON object of token -> id: {e}")))?;
        let mut merges = Vec::new();
        for (i, line) in merges_txt.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if (i == 0 && line.starts_with("#version")) || line.is_empty() {
                continue;
            }
            if split_merge(line).is_none() {
                return Err(invalid(format!("merges.txt line {}: {line:?} is not of the form \"a b\"", i + 1)));
            }
            merges.push(Value::String(line.to_string()));
        }
        let mut next_id = vocab.len();
        let mut added = Vec::new();
        let mut names: Vec<&str> = vec![ENDOFTEXT];
        names.extend(specials.iter().map(String::as_str).filter(|s| *s != ENDOFTEXT));
        for content in names {
            let id = match vocab.get(content) {
                Some(id) => id.clone(),
                None if content == ENDOFTEXT => continue,
                None => {
                    next_id += 1;
                    Value::from(next_id - 1)
                }
            };
            added.push(serde_json::json!({"id": id, "content": content, "special": true}));
        }
        let mut root = Map::new();
        root.insert("added_tokens".into(), Value::Array(added));
        root.insert(
            "pre_tokenizer".into(),
            serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
        );
        root.insert("model".into(), serde_json::json!({"type": "BPE", "vocab": vocab, "merges": merges}));
        Self::from_hf_root(&root)
    }

    fn from_hf_root(root: &Map<String, Value>) -> Result<TokenizerSpec, TokenizerError> {
        let model = root
            .get("model")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("tokenizer.json has no \"model\" object"))?;

        check_model_is_gpt2_bpe(model)?;
        check_normalizer(root.get("normalizer"))?;
        check_pre_tokenizer(root.get("pre_tokenizer"))?;

        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("model.vocab is missing or not an object of token -> id"))?;
        let merges = parse_hf_merges(model.get("merges"))?;
        let added = parse_hf_added_tokens(root.get("added_tokens"))?;

        // Ids can be anything in the file; only a dense 0..n range maps onto GGUF's token array.
        // With k distinct entries, density means every id is < k, which also bounds the allocation.
        let capacity = vocab.len() + added.len();
        let mut slots: Vec<Option<(String, i32)>> = vec![None; capacity];
        for (token, id) in vocab {
            let id = json_id(id).ok_or_else(|| invalid(format!("model.vocab[{token:?}] is not a valid id")))?;
            let slot = slots.get_mut(id).ok_or_else(|| {
                invalid(format!(
                    "token ids are not dense 0..n: {token:?} has id {id} but there are only {capacity} tokens"
                ))
            })?;
            if let Some((other, _)) = slot {
                return Err(invalid(format!("id {id} is used by both {other:?} and {token:?} in model.vocab")));
            }
            *slot = Some((token.clone(), token_type::NORMAL));
        }
        for tok in &added {
            let kind = if tok.special { token_type::CONTROL } else { token_type::USER_DEFINED };
            let slot = slots.get_mut(tok.id).ok_or_else(|| {
                invalid(format!(
                    "token ids are not dense 0..n: added token {:?} has id {} but there are only {capacity} tokens",
                    tok.content, tok.id
                ))
            })?;
            match slot {
                Some((content, ty)) if *content == tok.content => *ty = kind,
                Some((other, _)) => {
                    return Err(invalid(format!(
                        "added token {:?} has id {} which model.vocab gives to {other:?}",
                        tok.content, tok.id
                    )))
                }
                None => *slot = Some((tok.content.clone(), kind)),
            }
        }

        let n = slots.iter().position(Option::is_none).unwrap_or(slots.len());
        if let Some(extra) = slots[n..].iter().flatten().next() {
            return Err(invalid(format!(
                "token ids are not dense 0..n: id {n} is missing but {:?} has a higher id",
                extra.0
            )));
        }
        let (tokens, token_types): (Vec<String>, Vec<i32>) = slots.into_iter().flatten().unzip();
        if tokens.is_empty() {
            return Err(invalid("model.vocab is empty"));
        }

        let endoftext = tokens.iter().position(|t| t == ENDOFTEXT).and_then(|i| u32::try_from(i).ok());
        Ok(TokenizerSpec {
            model: "gpt2".to_string(),
            tokens,
            merges,
            token_types,
            bos_id: endoftext,
            eos_id: endoftext,
            chat_template: None,
        })
    }
}

fn json_id(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|id| u32::try_from(id).ok()).map(|id| id as usize)
}

fn type_name(v: &Value) -> String {
    v.get("type").and_then(Value::as_str).unwrap_or("<untyped>").to_string()
}

fn check_model_is_gpt2_bpe(model: &Map<String, Value>) -> Result<(), TokenizerError> {
    match model.get("type") {
        Some(Value::String(t)) if t == "BPE" => {}
        Some(Value::String(t)) => return Err(TokenizerError::UnsupportedModel(t.clone())),
        Some(_) => return Err(invalid("model.type is not a string")),
        // Files from old `tokenizers` versions omit the tag; vocab + merges can only be BPE.
        None if model.contains_key("vocab") && model.contains_key("merges") => {}
        None => return Err(invalid("model has no \"type\" and is not recognisable as BPE (needs vocab and merges)")),
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(TokenizerError::UnsupportedModel("BPE with byte_fallback (SentencePiece-style)".into()));
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if let Some(s) = model.get(key).and_then(Value::as_str) {
            if !s.is_empty() {
                return Err(TokenizerError::UnsupportedModel(format!("BPE with {key} {s:?}")));
            }
        }
    }
    Ok(())
}

fn check_normalizer(normalizer: Option<&Value>) -> Result<(), TokenizerError> {
    match normalizer {
        None | Some(Value::Null) => Ok(()),
        Some(n) => Err(TokenizerError::UnsupportedModel(format!(
            "BPE with a {} normalizer (GPT-2 has none, so ids would differ)",
            type_name(n)
        ))),
    }
}

fn check_pre_tokenizer(pre: Option<&Value>) -> Result<(), TokenizerError> {
    let pre = match pre {
        None | Some(Value::Null) => {
            return Err(TokenizerError::UnsupportedModel("BPE without a ByteLevel pre-tokenizer".into()))
        }
        Some(p) => p,
    };
    let kind = type_name(pre);
    if kind != "ByteLevel" {
        return Err(TokenizerError::UnsupportedModel(format!(
            "BPE with a {kind} pre-tokenizer (only GPT-2's ByteLevel is implemented)"
        )));
    }
    if pre.get("add_prefix_space").and_then(Value::as_bool) == Some(true) {
        return Err(TokenizerError::UnsupportedModel(
            "ByteLevel with add_prefix_space=true (GPT-2/BTLM use false)".into(),
        ));
    }
    if pre.get("use_regex").and_then(Value::as_bool) == Some(false) {
        return Err(TokenizerError::UnsupportedModel(
            "ByteLevel with use_regex=false (GPT-2's split regex is always applied)".into(),
        ));
    }
    Ok(())
}

fn parse_hf_merges(merges: Option<&Value>) -> Result<Vec<String>, TokenizerError> {
    let merges = merges.and_then(Value::as_array).ok_or_else(|| invalid("model.merges is missing or not an array"))?;
    merges
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Value::String(s) => {
                split_merge(s)
                    .ok_or_else(|| invalid(format!("merge {i} ({s:?}) is not of the form \"a b\"")))?;
                Ok(s.clone())
            }
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => {
                    if a.is_empty() || b.is_empty() || a.contains(' ') || b.contains(' ') {
                        Err(invalid(format!(
                            "merge {i} [{a:?}, {b:?}] has an empty part or a space, which GGUF's \"a b\" merge form cannot express"
                        )))
                    } else {
                        Ok(format!("{a} {b}"))
                    }
                }
                _ => Err(invalid(format!("merge {i} is not a pair of strings"))),
            },
            _ => Err(invalid(format!(
                "merge {i} is neither an \"a b\" string nor an [\"a\", \"b\"] array"
            ))),
        })
        .collect()
}

struct HfAddedToken {
    id: usize,
    content: String,
    special: bool,
}

fn parse_hf_added_tokens(added: Option<&Value>) -> Result<Vec<HfAddedToken>, TokenizerError> {
    let added = match added {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(invalid("added_tokens is not an array")),
    };
    added
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let id = t
                .get("id")
                .and_then(json_id)
                .ok_or_else(|| invalid(format!("added_tokens[{i}] has no valid \"id\"")))?;
            let content = t
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("added_tokens[{i}] has no \"content\" string")))?;
            let special = t.get("special").and_then(Value::as_bool).unwrap_or(false);
            Ok(HfAddedToken { id, content: content.to_string(), special })
        })
        .collect()
}

/// Splits a GGUF merge `"a b"`; byte-level tokens never contain a literal space, so exactly one
/// space separates two non-empty parts.
fn split_merge(m: &str) -> Option<(&str, &str)> {
    let (a, b) = m.split_once(' ')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(' ')).then_some((a, b))
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes
/// are shifted to U+0100..U+0143 so every byte has a visible, non-space character.
fn byte_is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Inverse of `bytes_to_unicode`, indexed by char code (0..=0x143).
fn char_to_byte_table() -> Vec<Option<u8>> {
    let mut table = vec![None; 256 + 68];
    let mut shifted = 256;
    for b in 0..=255u8 {
        if byte_is_printable(b) {
            table[usize::from(b)] = Some(b);
        } else {
            table[shifted] = Some(b);
            shifted += 1;
        }
    }
    table
}

/// The byte-level symbol GPT-2 uses for `b`.
fn byte_to_char(b: u8) -> char {
    if byte_is_printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !byte_is_printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Raw bytes of a byte-level token string; `None` if some char is not a byte symbol.
fn byte_level_decode(token: &str, table: &[Option<u8>]) -> Option<Vec<u8>> {
    token.chars().map(|c| table.get(c as usize).copied().flatten()).collect()
}

/// GPT-2 byte-level BPE tokenizer built from a [`TokenizerSpec`].
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Concatenated raw bytes of every token; token `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    /// One flat buffer keeps 50k tokens in two allocations and makes streaming a slice copy.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    types: Vec<i32>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
}

impl fmt::Debug for Tokenizer {
    // The wrapped tokenizer would print the whole vocabulary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer, validating the spec up front so that a bad GGUF fails at load time
    /// with a message instead of mis-tokenizing later.
    ///
    /// If a token string occurs more than once, encoding yields its lowest id (all ids still
    /// decode).
    pub fn from_spec(spec: &TokenizerSpec) -> Result<Tokenizer, TokenizerError> {
        if spec.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(spec.model.clone()));
        }
        let n = spec.tokens.len();
        if n == 0 {
            return Err(invalid("the vocabulary is empty"));
        }
        if u32::try_from(n).is_err() {
            return Err(invalid(format!("{n} tokens do not fit 32-bit ids")));
        }
        let types = if spec.token_types.is_empty() {
            vec![token_type::NORMAL; n]
        } else if spec.token_types.len() == n {
            spec.token_types.clone()
        } else {
            return Err(invalid(format!(
                "{} token types for {n} tokens (tokenizer.ggml.token_type must match tokenizer.ggml.tokens)",
                spec.token_types.len()
            )));
        };
        if let Some((id, ty)) =
            types.iter().enumerate().find(|(_, ty)| !(token_type::UNDEFINED..=token_type::BYTE).contains(*ty))
        {
            return Err(invalid(format!("token {id} has unknown token type {ty}")));
        }
        for (name, id) in [("bos", spec.bos_id), ("eos", spec.eos_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= n) {
                return Err(invalid(format!("{name} id {id} is outside the vocabulary of {n} tokens")));
            }
        }

        let mut vocab = Vocab::default();
        for (id, token) in (0u32..).zip(&spec.tokens) {
            vocab.entry(token.clone()).or_insert(id);
        }
        // Without every byte symbol, BPE silently drops the characters it cannot spell.
        if let Some(b) = (0..=255u8).find(|&b| !vocab.contains_key(byte_to_char(b).to_string().as_str())) {
            return Err(invalid(format!(
                "the vocabulary lacks the byte-level symbol {:?} for byte 0x{b:02X}, so some text could not be encoded",
                byte_to_char(b)
            )));
        }
        let merges: Merges = spec
            .merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                split_merge(m)
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| invalid(format!("merge {i} ({m:?}) is not of the form \"a b\"")))
            })
            .collect::<Result<_, _>>()?;

        let bpe = BpeBuilder::new()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| invalid(format!("the BPE model rejected the vocabulary/merges: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::new(false, true, true)));

        let mut added: Vec<(u32, &str)> = Vec::new();
        let mut control = Vec::new();
        let mut user = Vec::new();
        for ((id, token), &ty) in (0u32..).zip(&spec.tokens).zip(&types) {
            // An empty added token can never match text; `tokenizers` would only trip over it.
            if token.is_empty() {
                continue;
            }
            match ty {
                token_type::CONTROL => control.push(AddedToken::from(token.as_str(), true)),
                token_type::USER_DEFINED => user.push(AddedToken::from(token.as_str(), false)),
                _ => continue,
            }
            added.push((id, token));
        }
        inner.add_special_tokens(control).map_err(|e| invalid(format!("registering control tokens failed: {e}")))?;
        inner.add_tokens(user).map_err(|e| invalid(format!("registering user-defined tokens failed: {e}")))?;
        for (id, token) in added {
            match inner.token_to_id(token) {
                Some(got) if got == id => {}
                got => {
                    return Err(invalid(format!(
                        "special token {token:?} has id {id} but encodes as {got:?} (is it listed twice?)"
                    )))
                }
            }
        }

        let table = char_to_byte_table();
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for (token, &ty) in spec.tokens.iter().zip(&types) {
            let verbatim = matches!(ty, token_type::CONTROL | token_type::USER_DEFINED);
            match (!verbatim).then(|| byte_level_decode(token, &table)).flatten() {
                Some(b) => bytes.extend_from_slice(&b),
                // Same fallback as the `tokenizers` ByteLevel decoder: text that is not byte-level.
                None => bytes.extend_from_slice(token.as_bytes()),
            }
            offsets.push(bytes.len());
        }

        Ok(Tokenizer { inner, bytes, offsets, types, bos_id: spec.bos_id, eos_id: spec.eos_id })
    }

    /// Encodes text as-is: no BOS/EOS is added (the caller decides, as BTLM prompts differ), and
    /// control-token text such as `<|endoftext|>` becomes its single id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text; bytes that do not form UTF-8 become U+FFFD, as in every GPT-2 decoder.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut buf = Vec::new();
        for &id in ids {
            buf.extend_from_slice(self.bytes_of(id).ok_or(TokenizerError::UnknownId(id))?);
        }
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Raw bytes a token stands for (byte-level decoding of its string; control tokens give their
    /// text bytes). Bytes rather than text because one token may hold part of a character.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.bytes_of(id).map(<[u8]>::to_vec)
    }

    fn bytes_of(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        let start = *self.offsets.get(i)?;
        let end = *self.offsets.get(i + 1)?;
        self.bytes.get(start..end)
    }

    /// Number of ids, i.e. the length of the model's logits row.
    pub fn vocab_size(&self) -> usize {
        self.types.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// Whether `id` is a control token, which generation usually stops on or hides from the user.
    pub fn is_control(&self, id: u32) -> bool {
        self.types.get(id as usize) == Some(&token_type::CONTROL)
    }
}

/// Incremental detokenizer: feed generated ids one at a time, get back only complete UTF-8 text.
///
/// Bytes of a character split across tokens are held until the character is complete. Invalid
/// byte sequences (which can never become valid) are emitted as U+FFFD rather than held forever,
/// so the concatenation of all pieces plus [`finish`](Self::finish) equals
/// [`Tokenizer::decode`] of the same ids.
///
/// It borrows the tokenizer so a caller cannot feed ids from one vocabulary to another's
/// decoder; it holds at most 3 pending bytes. Control tokens come out as their text; callers that
/// want to hide them check [`Tokenizer::is_control`] before pushing.
#[derive(Debug, Clone)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tok: &'a Tokenizer) -> Self {
        StreamDecoder { tok, pending: Vec::new() }
    }

    /// Adds one id and returns the text it completes; `""` while a character is still partial.
    /// An unknown id is an error and leaves the decoder unchanged.
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let bytes = self.tok.bytes_of(id).ok_or(TokenizerError::UnknownId(id))?;
        self.pending.extend_from_slice(bytes);

        let mut out = String::new();
        let mut done = 0;
        loop {
            let rest = &self.pending[done..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    done = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix is valid UTF-8, so the lossy conversion is exact.
                    out.push_str(&String::from_utf8_lossy(&rest[..valid]));
                    done += valid;
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            done += bad;
                        }
                        // An incomplete character at the end: hold it for the next token.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..done);
        Ok(out)
    }

    /// Ends the stream, turning any incomplete character into U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All 256 byte symbols, then "Ġt", "he", "Ġthe", then `<|endoftext|>`.
    fn tiny_spec() -> TokenizerSpec {
        let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_to_char(b).to_string()).collect();
        tokens.extend(["Ġt", "he", "Ġthe", ENDOFTEXT].map(String::from));
        let mut token_types = vec![token_type::NORMAL; tokens.len()];
        token_types[259] = token_type::CONTROL;
        TokenizerSpec {
            model: "gpt2".into(),
            tokens,
            merges: vec!["Ġ t".into(), "h e".into(), "Ġt he".into()],
            token_types,
            bos_id: Some(259),
            eos_id: Some(259),
            chat_template: None,
        }
    }

    fn id_of_byte(b: u8) -> u32 {
        u32::from(b)
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
        assert_send_sync::<StreamDecoder<'static>>();
    }

    #[test]
    fn byte_map_matches_gpt2() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        let table = char_to_byte_table();
        for b in 0..=255u8 {
            assert_eq!(table[byte_to_char(b) as usize], Some(b));
        }
    }

    #[test]
    fn tiny_vocab_encodes_and_decodes() {
        let tok = Tokenizer::from_spec(&tiny_spec()).unwrap();
        assert_eq!(tok.vocab_size(), 260);
        let ids = tok.encode("x the<|endoftext|>").unwrap();
        assert_eq!(ids, vec![id_of_byte(b'x'), 258, 259]);
        assert_eq!(tok.decode(&ids).unwrap(), "x the<|endoftext|>");
        assert!(tok.is_control(259));
        assert!(!tok.is_control(258));
        assert!(!tok.is_control(100_000));
        assert_eq!(tok.token_bytes(258).unwrap(), b" the");
        assert_eq!(tok.token_bytes(259).unwrap(), ENDOFTEXT.as_bytes());
        assert_eq!(tok.token_bytes(260), None);
        assert!(matches!(tok.decode(&[1, 260]), Err(TokenizerError::UnknownId(260))));
        assert_eq!(tok.encode("").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn stream_decoder_holds_partial_chars_and_replaces_invalid() {
        let tok = Tokenizer::from_spec(&tiny_spec()).unwrap();
        let mut dec = StreamDecoder::new(&tok);
        // "é" = C3 A9 split over two byte tokens.
        assert_eq!(dec.push(id_of_byte(0xC3)).unwrap(), "");
        assert_eq!(dec.push(id_of_byte(0xA9)).unwrap(), "é");
        // A lead byte followed by ASCII can never complete: replaced, then the ASCII comes out.
        assert_eq!(dec.push(id_of_byte(0xE6)).unwrap(), "");
        assert_eq!(dec.push(id_of_byte(b'a')).unwrap(), "\u{FFFD}a");
        assert_eq!(dec.push(id_of_byte(0xFF)).unwrap(), "\u{FFFD}");
        assert!(dec.push(9999).is_err());
        assert_eq!(dec.push(id_of_byte(0xF0)).unwrap(), "");
        assert_eq!(dec.finish(), "\u{FFFD}");
        assert_eq!(dec.finish(), "");
    }

    #[test]
    fn stream_matches_decode_on_byte_soup() {
        let tok = Tokenizer::from_spec(&tiny_spec()).unwrap();
        let ids: Vec<u32> = [0xE2u8, 0x82, 0xAC, 0xC3, b'z', 0xF0, 0x9F, 0xA4, 0x96, 0x80, 0xF0]
            .iter()
            .map(|&b| id_of_byte(b))
            .chain([258, 259])
            .collect();
        let mut dec = StreamDecoder::new(&tok);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&dec.push(id).unwrap());
        }
        streamed.push_str(&dec.finish());
        assert_eq!(streamed, tok.decode(&ids).unwrap());
    }

    #[test]
    fn spec_validation_errors() {
        let mut spec = tiny_spec();
        spec.model = "llama".into();
        let err = Tokenizer::from_spec(&spec).unwrap_err();
        assert!(matches!(&err, TokenizerError::UnsupportedModel(m) if m == "llama"));
        assert!(err.to_string().contains("llama"));

        let mut spec = tiny_spec();
        spec.merges.push("Ġthe x".into());
        assert!(matches!(Tokenizer::from_spec(&spec), Err(TokenizerError::Invalid(_))));

        let mut spec = tiny_spec();
        spec.merges.push("nospace".into());
        assert!(Tokenizer::from_spec(&spec).is_err());

        let mut spec = tiny_spec();
        spec.token_types.pop();
        assert!(Tokenizer::from_spec(&spec).is_err());

        let mut spec = tiny_spec();
        spec.eos_id = Some(260);
        assert!(Tokenizer::from_spec(&spec).is_err());

        let mut spec = tiny_spec();
        spec.tokens[b'q' as usize] = "qq".into();
        let err = Tokenizer::from_spec(&spec).unwrap_err();
        assert!(err.to_string().contains("0x71"), "{err}");
    }

    #[test]
    fn hf_json_accepts_both_merge_forms_and_added_tokens() {
        let spec = tiny_spec();
        let vocab: serde_json::Map<String, Value> =
            spec.tokens[..259].iter().enumerate().map(|(i, t)| (t.clone(), Value::from(i))).collect();
        let json = |merges: Value| {
            serde_json::json!({
                "added_tokens": [{"id": 259, "content": ENDOFTEXT, "special": true},
                                 {"id": 260, "content": "<tool>", "special": false}],
                "normalizer": null,
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
                "model": {"type": "BPE", "vocab": vocab, "merges": merges}
            })
            .to_string()
        };
        let strings = TokenizerSpec::from_hf_json(&json(serde_json::json!(["Ġ t", "h e", "Ġt he"]))).unwrap();
        let arrays =
            TokenizerSpec::from_hf_json(&json(serde_json::json!([["Ġ", "t"], ["h", "e"], ["Ġt", "he"]]))).unwrap();
        assert_eq!(strings, arrays);
        assert_eq!(strings.merges, spec.merges);
        assert_eq!(strings.tokens.len(), 261);
        assert_eq!(strings.tokens[260], "<tool>");
        assert_eq!(strings.token_types[259], token_type::CONTROL);
        assert_eq!(strings.token_types[260], token_type::USER_DEFINED);
        assert_eq!((strings.bos_id, strings.eos_id), (Some(259), Some(259)));

        let tok = Tokenizer::from_spec(&strings).unwrap();
        assert_eq!(tok.encode("a<tool> the").unwrap(), vec![97, 260, 258]);

        let bad = json(serde_json::json!(["Ġ t"])).replace("\"id\":260", "\"id\":300");
        let err = TokenizerSpec::from_hf_json(&bad).unwrap_err();
        assert!(err.to_string().contains("dense"), "{err}");
    }

    #[test]
    fn hf_json_rejects_non_gpt2() {
        assert!(matches!(TokenizerSpec::from_hf_json("{not json"), Err(TokenizerError::Json(_))));
        assert!(TokenizerSpec::from_hf_json("[]").is_err());
        let wp = r#"{"model": {"type": "WordPiece", "vocab": {"a": 0}}}"#;
        let err = TokenizerSpec::from_hf_json(wp).unwrap_err();
        assert!(matches!(&err, TokenizerError::UnsupportedModel(m) if m == "WordPiece"));
        let prefix = r#"{"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true},
                         "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#;
        assert!(matches!(TokenizerSpec::from_hf_json(prefix), Err(TokenizerError::UnsupportedModel(_))));
    }
}
