//! The OpenAI-compatible request and response bodies, and errors as OpenAI spells them
//! (`{"error": {"message", "type", "param", "code"}}`), so existing clients understand them.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use pocketlm_core::chat::Message;
use pocketlm_core::constraint::Constraint;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A prompt as text or as token ids (OpenAI accepts both, and lists of them for batches).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// The fields of /v1/completions and /v1/chat/completions that shape generation.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Sampling {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<Stop>,
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    pub response_format: Option<Value>,
    /// A Lark grammar (llguidance's dialect) the output must match.
    pub grammar: Option<Value>,
    /// A regular expression the whole output must match.
    pub regex: Option<Value>,
    /// llama-server's spelling of a JSON-schema constraint.
    pub json_schema: Option<Value>,
}

impl Sampling {
    /// What the output must match: `response_format` (`json_object`, `json_schema`), or
    /// `grammar` / `regex` / `json_schema`; at most one of them.
    pub fn constraint(&self) -> Result<Option<Constraint>, ApiError> {
        let mut found: Vec<(&'static str, Constraint)> = Vec::new();
        if let Some(f) = &self.response_format {
            let bad = |m: &str| ApiError::bad_request(m, Some("response_format"));
            match f.get("type").and_then(Value::as_str) {
                Some("text") => {}
                Some("json_object") => found.push(("response_format", Constraint::JsonObject)),
                Some("json_schema") => {
                    let schema = match f.get("json_schema") {
                        Some(Value::Object(o)) => o.get("schema").cloned().unwrap_or_else(|| json!({})),
                        _ => return Err(bad("response_format json_schema needs a \"json_schema\" object")),
                    };
                    if !(schema.is_object() || schema.is_boolean()) {
                        return Err(bad("response_format json_schema.schema must be a JSON Schema object"));
                    }
                    found.push(("response_format", Constraint::JsonSchema(schema)));
                }
                _ => return Err(bad("response_format type must be \"text\", \"json_object\" or \"json_schema\"")),
            }
        }
        let text = |v: &Option<Value>, param: &'static str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::bad_request(format!("{param} must be a string"), Some(param))),
        };
        if let Some(g) = text(&self.grammar, "grammar")? {
            found.push(("grammar", Constraint::Lark(g)));
        }
        if let Some(r) = text(&self.regex, "regex")? {
            found.push(("regex", Constraint::Regex(r)));
        }
        match &self.json_schema {
            None | Some(Value::Null) => {}
            Some(s) if s.is_object() || s.is_boolean() => {
                found.push(("json_schema", Constraint::JsonSchema(s.clone())))
            }
            Some(_) => {
                return Err(ApiError::bad_request("json_schema must be a JSON Schema object", Some("json_schema")))
            }
        }
        if found.len() > 1 {
            return Err(ApiError::bad_request(
                format!("give one constraint, not {}", found.iter().map(|f| f.0).collect::<Vec<_>>().join(" and ")),
                Some(found[1].0),
            ));
        }
        Ok(found.pop().map(|f| f.1))
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub sampling: Sampling,
}

#[derive(Debug, Deserialize)]
pub struct TokenizeRequest {
    pub content: String,
}

#[derive(Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt: usize, completion: usize) -> Self {
        Usage { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion }
    }
}

/// An error response. `retry_after` (seconds) is for 503s when the queue is full.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
            retry_after: None,
        }
    }

    pub fn status(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }
}

impl From<pocketlm_core::Error> for ApiError {
    fn from(e: pocketlm_core::Error) -> Self {
        use pocketlm_core::Error as E;
        match e {
            E::ContextFull { .. } | E::InvalidArgument(_) | E::TokenOutOfRange { .. } | E::Tokenizer(_) => {
                ApiError::bad_request(e.to_string(), None)
            }
            E::OutOfMemory { .. } | E::OverBudget { .. } => {
                ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "server_error", e.to_string())
            }
            _ => ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code }
        });
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        r
    }
}
