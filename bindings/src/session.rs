//! `Session`: one conversation. Generation streams text to a `TokenStream` the app implements;
//! a `CancelToken` passed to the call stops it from any thread between layers or tokens.
//! Concurrent calls on one session are refused with `Busy` instead of queueing.

use crate::error::PocketLmError;
use crate::exclusive::Exclusive;
use crate::guard;
use crate::model::Model;
use pocketlm_core::constraint::Constraint;
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{self as core, CancelHandle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Element type of the session's KV cache (per token of BTLM-3B: f16 320 KiB, q8_0 168 KiB,
/// q4 100 KiB). The quantized ones let longer contexts fit on a phone; q4 also keeps decode
/// fast at long contexts, where the cache is most of what each token reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum KvCacheType {
    F16,
    F32,
    /// int8 with one scale per head row.
    Q8_0,
    /// 4-bit with an f16 scale per 16 values.
    Q4,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct SessionOptions {
    /// Tokens of context (prompt + answer), allocated up front.
    #[uniffi(default = 2048)]
    pub context_size: u32,
    /// None = F16 (half the memory of F32, same answers in practice).
    #[uniffi(default = None)]
    pub kv_cache_type: Option<KvCacheType>,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerateOptions {
    #[uniffi(default = 256)]
    pub max_tokens: u32,
    /// 0 = greedy.
    #[uniffi(default = 0.8)]
    pub temperature: f32,
    #[uniffi(default = 40)]
    pub top_k: u32,
    #[uniffi(default = 0.95)]
    pub top_p: f32,
    #[uniffi(default = 0.05)]
    pub min_p: f32,
    #[uniffi(default = 1.0)]
    pub repeat_penalty: f32,
    #[uniffi(default = 0xC0FFEE)]
    pub seed: u64,
    /// Generation stops before any of these texts; they are not streamed.
    #[uniffi(default = [])]
    pub stop: Vec<String>,
    /// Stop at the end-of-text token.
    #[uniffi(default = true)]
    pub stop_at_end_of_text: bool,
    /// OpenAI's presence penalty (-2..2): subtracted once from every token already present.
    #[uniffi(default = 0.0)]
    pub presence_penalty: f32,
    /// OpenAI's frequency penalty (-2..2): subtracted per occurrence.
    #[uniffi(default = 0.0)]
    pub frequency_penalty: f32,
    /// A JSON Schema (as JSON text) the answer must be an instance of; `"{\"type\":\"object\"}"`
    /// for any JSON object. The answer always parses, also when `max_tokens` ends it.
    #[uniffi(default = None)]
    pub json_schema: Option<String>,
    /// A grammar in llguidance's Lark dialect the answer must match (instead of `json_schema`).
    #[uniffi(default = None)]
    pub grammar: Option<String>,
    /// Speculative decoding by prompt lookup: up to this many tokens guessed from earlier text
    /// and verified in one pass (at most 16; 0 = off). The output is the same either way;
    /// answers that repeat their input (rewrites, summaries, code edits) come faster.
    #[uniffi(default = 8)]
    pub draft_tokens: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum StopReason {
    MaxTokens,
    EndOfText,
    StopString,
    Cancelled,
    ContextFull,
    /// The call failed (it throws the error); only `on_finish` reports this.
    Error,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerationStats {
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub prompt_tokens_per_second: f64,
    pub generation_tokens_per_second: f64,
    /// Tokens guessed by prompt lookup, and how many of them were right (see
    /// `GenerateOptions::draft_tokens`).
    pub drafted_tokens: u32,
    pub accepted_draft_tokens: u32,
    pub stop_reason: StopReason,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct GenerationResult {
    pub token_ids: Vec<u32>,
    pub stats: GenerationStats,
}

/// Implemented by the app: receives the answer as it is generated.
#[uniffi::export(foreign)]
pub trait TokenStream: Send + Sync {
    /// One piece of text: always whole UTF-8 characters.
    fn on_text(&self, text: String);
    /// Called exactly once per `generate` call, last, whatever the reason it ended: with
    /// `StopReason::Error` when the call fails (`generate` then throws the error, also when
    /// the session was busy).
    fn on_finish(&self, stats: GenerationStats);
}

/// Stops one generation. Made by the app before the call and passed to it, so a cancel can
/// never be lost: cancelled before the call starts, the call returns at once (`Cancelled`);
/// during it, the generation stops within one layer of work. One token per call: once
/// cancelled it stays cancelled.
#[derive(Debug, Default, uniffi::Object)]
pub struct CancelToken(CancelHandle);

#[uniffi::export]
impl CancelToken {
    #[uniffi::constructor]
    pub fn new() -> Arc<CancelToken> {
        Arc::new(CancelToken::default())
    }

    /// Safe from any thread, any number of times.
    pub fn cancel(&self) {
        self.0.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

#[derive(uniffi::Object)]
pub struct Session {
    inner: Exclusive<core::Session>,
    pool: Arc<rayon::ThreadPool>,
    /// Tokens in the conversation, readable while a generation runs.
    count: Arc<AtomicUsize>,
    n_ctx: u32,
}

/// The core session a `SessionOptions` asks for, on `model`.
pub(crate) fn core_session(model: &Model, o: &SessionOptions) -> Result<core::Session, PocketLmError> {
    let opts = core::SessionOptions {
        n_ctx: o.context_size as usize,
        kv_type: match o.kv_cache_type.unwrap_or(KvCacheType::F16) {
            KvCacheType::F16 => pocketlm_core::KvType::F16,
            KvCacheType::F32 => pocketlm_core::KvType::F32,
            KvCacheType::Q8_0 => pocketlm_core::KvType::Q8_0,
            KvCacheType::Q4 => pocketlm_core::KvType::Q4,
        },
        mem_budget: model.budget,
        ..Default::default()
    };
    Ok(core::Session::new(model.inner.clone(), &opts)?)
}

/// Tells `stream` how a call ended, exactly once: its stats, or `StopReason::Error` with zero
/// counts when it failed (the call then throws the error).
pub(crate) fn finish(
    stream: &dyn TokenStream,
    result: Result<GenerationStats, PocketLmError>,
) -> Result<GenerationStats, PocketLmError> {
    let stats = match &result {
        Ok(stats) => stats.clone(),
        Err(_) => GenerationStats {
            prompt_tokens: 0,
            generated_tokens: 0,
            prompt_tokens_per_second: 0.0,
            generation_tokens_per_second: 0.0,
            drafted_tokens: 0,
            accepted_draft_tokens: 0,
            stop_reason: StopReason::Error,
        },
    };
    stream.on_finish(stats);
    result
}

/// The core options of a call, watching `cancel` if the app gave one.
pub(crate) fn call_options(
    o: &GenerateOptions,
    cancel: Option<Arc<CancelToken>>,
) -> Result<core::GenerateOptions, PocketLmError> {
    let mut opts = core_options(o)?;
    if let Some(t) = cancel {
        opts.cancel = t.0.clone();
    }
    Ok(opts)
}

impl Session {
    pub(crate) fn create(model: &Model, o: SessionOptions) -> Result<Session, PocketLmError> {
        let inner = core_session(model, &o)?;
        let count = inner.token_count_handle();
        Ok(Session { n_ctx: inner.n_ctx() as u32, inner: Exclusive::new(inner), pool: model.pool.clone(), count })
    }

    fn run(
        &self,
        prompt: Prompt,
        options: GenerateOptions,
        cancel: Option<Arc<CancelToken>>,
        stream: Option<&dyn TokenStream>,
    ) -> Result<GenerationResult, PocketLmError> {
        let opts = call_options(&options, cancel)?;
        let mut held = self.inner.acquire(&opts.cancel)?;
        let s: &mut core::Session = &mut held;
        let mut ids = Vec::new();
        let result = self.pool.install(|| match prompt {
            Prompt::Text(text) => s.generate(&text, &opts, &mut |piece| {
                if let Some(st) = stream {
                    st.on_text(piece.to_string());
                }
            }),
            Prompt::Ids(p) => s.generate_ids(&p, &opts, &mut |id| {
                ids.push(id);
                true
            }),
        })?;
        let stats = convert_stats(&result);
        if ids.is_empty() {
            ids = s.tokens()[s.tokens().len() - stats.generated_tokens as usize..].to_vec();
        }
        Ok(GenerationResult { token_ids: ids, stats })
    }
}

enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

#[uniffi::export]
impl Session {
    /// Generates an answer to `prompt` (appended to the conversation), streaming text to
    /// `stream`. Blocks until done: call it from a background thread. `cancel` stops it
    /// (see `CancelToken`).
    #[uniffi::method(default(cancel = None))]
    pub fn generate(
        &self,
        prompt: String,
        options: GenerateOptions,
        stream: Arc<dyn TokenStream>,
        cancel: Option<Arc<CancelToken>>,
    ) -> Result<GenerationStats, PocketLmError> {
        let result = guard(|| self.run(Prompt::Text(prompt), options, cancel, Some(&*stream)).map(|r| r.stats));
        finish(&*stream, result)
    }

    /// Like `generate`, with the prompt as token ids and the generated ids returned.
    #[uniffi::method(default(cancel = None))]
    pub fn generate_ids(
        &self,
        prompt: Vec<u32>,
        options: GenerateOptions,
        cancel: Option<Arc<CancelToken>>,
    ) -> Result<GenerationResult, PocketLmError> {
        guard(|| self.run(Prompt::Ids(prompt), options, cancel, None))
    }

    /// Stops the call running now, if any (a call that starts later is not affected: pass a
    /// `CancelToken` to the call for a cancel that cannot miss it). Safe from any thread.
    pub fn cancel(&self) {
        self.inner.cancel_running();
    }

    /// Tokens in the conversation so far (prompt and generated), updated during generation.
    pub fn token_count(&self) -> u32 {
        self.count.load(Ordering::Relaxed) as u32
    }

    /// Tokens of context (prompt + answers) the session was created with.
    pub fn context_size(&self) -> u32 {
        self.n_ctx
    }

    /// Forgets the conversation (keeps the memory). A running generation is cancelled and
    /// waited for (at most one layer of work) first.
    pub fn reset(&self) -> Result<(), PocketLmError> {
        guard(|| self.inner.after_cancelling(core::Session::reset))
    }
}

pub(crate) fn core_options(o: &GenerateOptions) -> Result<core::GenerateOptions, PocketLmError> {
    let constraint = match (&o.json_schema, &o.grammar) {
        (Some(_), Some(_)) => {
            return Err(PocketLmError::InvalidArgument { message: "give json_schema or grammar, not both".into() })
        }
        (Some(schema), None) => Some(Constraint::json_schema(schema)?),
        (None, Some(g)) => Some(Constraint::Lark(g.clone())),
        (None, None) => None,
    };
    Ok(core::GenerateOptions {
        max_tokens: o.max_tokens as usize,
        sampling: SamplingParams {
            temperature: o.temperature,
            top_k: o.top_k as usize,
            top_p: o.top_p,
            min_p: o.min_p,
            repeat_penalty: o.repeat_penalty,
            presence_penalty: o.presence_penalty,
            frequency_penalty: o.frequency_penalty,
            seed: o.seed,
            ..SamplingParams::default()
        },
        stop: o.stop.clone(),
        stop_at_eos: o.stop_at_end_of_text,
        cancel: CancelHandle::new(),
        constraint,
        draft: o.draft_tokens as usize,
    })
}

pub(crate) fn convert_stats(s: &core::GenerationStats) -> GenerationStats {
    GenerationStats {
        prompt_tokens: s.prompt_tokens as u32,
        generated_tokens: s.generated_tokens as u32,
        prompt_tokens_per_second: s.prompt_tokens_per_s(),
        generation_tokens_per_second: s.generation_tokens_per_s(),
        drafted_tokens: s.drafted_tokens as u32,
        accepted_draft_tokens: s.accepted_tokens as u32,
        stop_reason: match s.stop_reason {
            core::StopReason::MaxTokens => StopReason::MaxTokens,
            core::StopReason::EndOfText => StopReason::EndOfText,
            core::StopReason::StopString => StopReason::StopString,
            core::StopReason::Cancelled => StopReason::Cancelled,
            core::StopReason::ContextFull => StopReason::ContextFull,
        },
    }
}
