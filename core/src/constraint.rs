//! Constrained decoding: output that always matches a JSON Schema, any JSON object, a Lark
//! grammar or a regular expression, through llguidance (the engine llama.cpp and mistral.rs
//! use). Before each sampling step the grammar's set of allowed tokens masks the logits, so the
//! sampler can only pick a token that keeps the text a prefix of a valid answer.
//!
//! The token trie is built once per model from the vocabulary's raw bytes (byte-level BPE pieces
//! decoded, control tokens marked the way llguidance expects) and shared by every generation.
//!
//! A token budget (`max_tokens`) must not cut a JSON answer in half: inside the last
//! [`CLOSE_WINDOW`] tokens every sampled token is checked to leave room for a completion, and
//! when it would not, the shortest completion found (single-byte tokens, forced bytes first) is
//! emitted instead, so the answer still parses and the finish reason is still "length".

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Inside this many tokens of the budget, generation makes sure the answer can still be closed.
pub const CLOSE_WINDOW: usize = 48;
/// Parser steps one completion search may take (a few microseconds each).
const SEARCH_STEPS: usize = 4096;
/// A completion may overrun the budget by this much when none fits (deep nesting reached
/// before the window); an answer that parses is worth a few extra tokens.
const OVERRUN: usize = 256;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// An instance of this JSON Schema (`{"type": "json_schema", ...}`).
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect (`start: ...`).
    Lark(String),
    /// A regular expression (Rust `regex` syntax) the whole output must match.
    Regex(String),
}

impl Constraint {
    /// A JSON Schema from its text; the error names what is wrong with it.
    pub fn json_schema(text: &str) -> Result<Self> {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| Error::Constraint(format!("the JSON schema is not JSON: {e}")))?;
        if !(schema.is_object() || schema.is_boolean()) {
            return Err(Error::Constraint("a JSON schema must be an object (or true/false)".into()));
        }
        Ok(Constraint::JsonSchema(schema))
    }

    /// A short name for messages: "JSON schema", "Lark grammar"...
    pub fn kind(&self) -> &'static str {
        match self {
            Constraint::JsonObject => "JSON object",
            Constraint::JsonSchema(_) => "JSON schema",
            Constraint::Lark(_) => "Lark grammar",
            Constraint::Regex(_) => "regular expression",
        }
    }

    fn grammar(&self) -> TopLevelGrammar {
        match self {
            Constraint::JsonObject => TopLevelGrammar::from_json_schema(compact(any_object())),
            Constraint::JsonSchema(s) => TopLevelGrammar::from_json_schema(compact(s.clone())),
            Constraint::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            Constraint::Regex(r) => TopLevelGrammar::from_regex(r),
        }
    }
}

/// JSON without free whitespace (`{"a":1,"b":[2]}`), as OpenAI's structured outputs print it,
/// unless the schema chose otherwise with its own `x-guidance` options: fewer tokens, and no
/// way for a weak model to spend its budget on blank lines. Numbers get [`bounded`].
fn compact(mut schema: Value) -> Value {
    bounded(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| json!({"whitespace_flexible": false}));
    }
    schema
}

/// Any JSON object, as a schema whose values are spelled out (so their numbers are bounded).
fn any_object() -> Value {
    json!({
        "type": "object",
        "additionalProperties": {"$ref": "#/$defs/value"},
        "$defs": {"value": {"anyOf": [
            {"type": "string"},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {"$ref": "#/$defs/value"}},
            {"type": "object", "additionalProperties": {"$ref": "#/$defs/value"}}
        ]}}
    })
}

/// The largest integer a double holds exactly (JavaScript's `Number.MAX_SAFE_INTEGER`).
const MAX_SAFE: i64 = (1 << 53) - 1;

/// Gives every `number` / `integer` without a bound the bounds ±(2^53 - 1). JSON itself puts no
/// limit on digits or exponents, so an unbounded number lets a model write `1E1616345` or 400
/// digits: valid JSON that common parsers (serde_json, kotlinx, Swift's JSONDecoder) reject.
/// Bounded ranges are written without exponents. Data inside a schema (enum, const, default,
/// examples) is left as it is.
fn bounded(node: &mut Value) {
    match node {
        Value::Object(obj) => {
            let numeric = |t: &Value| t == "number" || t == "integer";
            let is_number = match obj.get("type") {
                Some(Value::Array(types)) => types.iter().any(numeric),
                Some(t) => numeric(t),
                None => false,
            };
            if is_number {
                if !obj.contains_key("minimum") && !obj.contains_key("exclusiveMinimum") {
                    obj.insert("minimum".into(), json!(-MAX_SAFE));
                }
                if !obj.contains_key("maximum") && !obj.contains_key("exclusiveMaximum") {
                    obj.insert("maximum".into(), json!(MAX_SAFE));
                }
            }
            for (key, value) in obj.iter_mut() {
                if !matches!(key.as_str(), "enum" | "const" | "default" | "examples" | "x-guidance") {
                    bounded(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bounded),
        _ => {}
    }
}

/// The model's vocabulary as llguidance sees it, built once per model.
pub struct ConstraintEngine {
    factory: ParserFactory,
    /// The id of the token that is exactly this one byte (byte-level BPE has all 256).
    byte_tokens: [Option<u32>; 256],
    eos: u32,
}

impl std::fmt::Debug for ConstraintEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintEngine").field("eos", &self.eos).finish_non_exhaustive()
    }
}

impl ConstraintEngine {
    pub fn new(tok: &Tokenizer) -> Result<Self> {
        let eos = tok
            .eos_id()
            .ok_or_else(|| Error::Constraint("the vocabulary has no end-of-text token to end an answer with".into()))?;
        let n = tok.vocab_size();
        let mut byte_tokens = [None; 256];
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                let bytes = tok.token_bytes(id).unwrap_or_default();
                if tok.is_control(id) {
                    // llguidance's marker for special tokens: never matched by grammar text.
                    [&[0xFF][..], &bytes].concat()
                } else {
                    if let [b] = bytes[..] {
                        byte_tokens[b as usize].get_or_insert(id);
                    }
                    bytes
                }
            })
            .collect();
        // The trie builder asserts on vocabularies it cannot hold (a token over 255 bytes, say);
        // the vocabulary comes from the model file, so that is bad input, not a bug here.
        let built = std::panic::catch_unwind(move || {
            let trie = TokTrie::from(&TokRxInfo::new(n as u32, eos), &words);
            let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
            ParserFactory::new_simple(&env)
        });
        let mut factory = match built {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(Error::Constraint(format!("the vocabulary: {e}"))),
            Err(_) => {
                return Err(Error::Constraint("the vocabulary cannot be indexed for constrained decoding".into()))
            }
        };
        factory.quiet();
        Ok(ConstraintEngine { factory, byte_tokens, eos })
    }

    /// A fresh matcher for one generation; a schema or grammar that does not compile is an
    /// error naming the problem.
    pub fn guide(self: &Arc<Self>, constraint: &Constraint) -> Result<Guide> {
        let parser = self
            .factory
            .create_parser(constraint.grammar())
            .map_err(|e| Error::Constraint(format!("the {}: {e}", constraint.kind())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::Constraint(format!("the {}: {e}", constraint.kind())));
        }
        Ok(Guide { engine: self.clone(), matcher, closing: None })
    }
}

/// The grammar state of one generation.
pub struct Guide {
    engine: Arc<ConstraintEngine>,
    matcher: Matcher,
    /// Inside the closing window: a completion that fits the remaining budget.
    closing: Option<Vec<u32>>,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guide").field("closing", &self.closing).finish_non_exhaustive()
    }
}

impl Guide {
    /// True once the grammar can take nothing more (a complete JSON value, say).
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }

    pub fn eos(&self) -> u32 {
        self.engine.eos
    }

    /// Sets the logit of every token the grammar does not allow now to -inf. End-of-text is
    /// allowed only where the output is complete.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| self.error(e))?;
        if allowed.num_set() == 0 {
            return Err(Error::Constraint("the grammar allows no token here".into()));
        }
        for (l, id) in logits.iter_mut().zip(0u32..) {
            if !allowed.is_allowed(id) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances the grammar by the token the sampler chose.
    pub fn accept(&mut self, id: u32) -> Result<()> {
        self.matcher.consume_token(id).map_err(|e| self.error(e))
    }

    /// Called before sampling with `remaining` (>= 1) tokens of budget left: Some(tokens) when
    /// the answer must be closed now (emit exactly these, then stop); None to sample normally.
    pub fn must_close(&mut self, remaining: usize) -> Option<Vec<u32>> {
        if remaining > CLOSE_WINDOW {
            self.closing = None;
            return None;
        }
        if self.closing.is_some() {
            return None;
        }
        if self.matcher.is_accepting().unwrap_or(false) {
            self.closing = Some(Vec::new());
            return None;
        }
        match self.completion(remaining) {
            Some(c) => {
                self.closing = Some(c);
                None
            }
            // Nested deeper than the window can close: overrun rather than emit broken output.
            None => Some(self.completion(remaining + OVERRUN).unwrap_or_default()),
        }
    }

    /// After [`Guide::accept`] inside the window: keeps the token when a completion still fits
    /// in `remaining` (the budget left after it), else takes the token back and returns the
    /// completion to emit instead of it (found one step earlier, so it fits).
    pub fn check_room(&mut self, remaining: usize) -> Result<Option<Vec<u32>>> {
        let Some(previous) = self.closing.take() else { return Ok(None) };
        if self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false) {
            self.closing = Some(Vec::new());
            return Ok(None);
        }
        match self.completion(remaining) {
            Some(c) => {
                self.closing = Some(c);
                Ok(None)
            }
            None => {
                self.matcher.rollback(1).map_err(|e| self.error(e))?;
                Ok(Some(previous))
            }
        }
    }

    /// A short token sequence that completes the output from here, at most `max_tokens`
    /// tokens: a depth-first search over single-byte tokens on a copy of the parser (closing
    /// characters first, bytes the grammar forces taken at once), then the same bytes in the
    /// fewest tokens the vocabulary's greedy split gives, when the grammar takes those.
    fn completion(&mut self, max_tokens: usize) -> Option<Vec<u32>> {
        let mut m = self.matcher.deep_clone();
        let mut path = Vec::new();
        let mut steps = SEARCH_STEPS;
        let max_bytes = max_tokens.saturating_mul(4);
        if !search(&mut m, &self.engine.byte_tokens, &mut path, max_bytes, &mut steps) {
            return None;
        }
        let trie = self.engine.factory.tok_env().tok_trie();
        let greedy = trie.greedy_tokenize(&trie.decode(&path));
        let mut check = self.matcher.deep_clone();
        let best = if greedy.len() < path.len() && check.try_consume_tokens(&greedy).ok() == Some(greedy.len()) {
            greedy
        } else {
            path
        };
        (best.len() <= max_tokens).then_some(best)
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Constraint(self.matcher.get_error().unwrap_or_else(|| e.to_string()))
    }
}

/// Bytes to try when closing an answer, best first: what ends strings, objects and arrays, the
/// separators that end a number and move on to a required key, then the shortest values, the
/// rest of printable ASCII, and whitespace last (it never brings an answer closer to its end,
/// except where a grammar demands it). Digits come after the separators because they can always
/// extend a number: tried first, the search would lengthen numbers instead of closing them.
fn closing_order() -> impl Iterator<Item = u8> {
    const FIRST: &[u8] = b"\"}]),:0ntf1.e-";
    FIRST.iter().copied().chain((0x21u8..0x7f).filter(|b| !FIRST.contains(b))).chain([b' ', b'\n', b'\t'])
}

fn search(m: &mut Matcher, bytes: &[Option<u32>; 256], path: &mut Vec<u32>, max_len: usize, steps: &mut usize) -> bool {
    if m.is_stopped() || m.is_accepting().unwrap_or(false) {
        return true;
    }
    if m.is_error() || path.len() >= max_len || *steps == 0 {
        return false;
    }
    let forced: Vec<u32> = m.compute_ff_bytes().iter().map_while(|&b| bytes[b as usize]).collect();
    if !forced.is_empty() {
        let room = forced.len().min(max_len - path.len());
        *steps = steps.saturating_sub(room);
        let n = m.try_consume_tokens(&forced[..room]).unwrap_or(0);
        if n == 0 {
            return false;
        }
        path.extend_from_slice(&forced[..n]);
        if search(m, bytes, path, max_len, steps) {
            return true;
        }
        path.truncate(path.len() - n);
        let _ = m.rollback(n);
        return false;
    }
    for b in closing_order() {
        let Some(t) = bytes[b as usize] else { continue };
        if *steps == 0 {
            return false;
        }
        *steps -= 1;
        if m.try_consume_tokens(&[t]).unwrap_or(0) != 1 {
            continue;
        }
        path.push(t);
        if search(m, bytes, path, max_len, steps) {
            return true;
        }
        path.pop();
        if m.rollback(1).is_err() {
            return false;
        }
    }
    false
}
