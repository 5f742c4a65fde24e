//! The endpoints. Generation runs on a blocking thread inside the model's worker pool and
//! streams pieces through a channel; the HTTP side turns them into one JSON body or SSE
//! chunks. Whatever ends the HTTP side early (a client that disconnects) drops the
//! [`CancelOnDrop`] it holds, which cancels the generation within one token and frees the slot.

use super::api::*;
use super::{AppState, Loaded, Metrics};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pocketlm_core::chat::TrimStart;
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{CancelHandle, GenerateOptions, GenerationStats, StopReason};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Shared = State<Arc<AppState>>;

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn next_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The loaded model, or 503 while it loads.
fn loaded(st: &AppState) -> Result<&Loaded, ApiError> {
    st.loaded.get().ok_or_else(|| {
        let mut e = ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the model is loading");
        e.retry_after = Some(1);
        e
    })
}

fn authorize(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &st.api_key else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.map(str::trim) == Some(key.as_str()) {
        return Ok(());
    }
    let mut e = ApiError::status(StatusCode::UNAUTHORIZED, "invalid_request_error", "invalid or missing API key");
    e.code = Some("invalid_api_key");
    Err(e)
}

fn parse<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|r| ApiError::status(r.status(), "invalid_request_error", r.body_text()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}"), None))
}

pub async fn health(State(st): Shared) -> Response {
    match st.loaded.get() {
        Some(_) => Json(json!({ "status": "ok" })).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "loading" }))).into_response(),
    }
}

pub async fn models(State(st): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let data = json!([{ "id": st.model_id, "object": "model", "created": st.started, "owned_by": "pocketlm" }]);
    Ok(Json(json!({ "object": "list", "data": data })).into_response())
}

pub async fn tokenize(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let req: TokenizeRequest = parse(body)?;
    let ids = loaded(&st)?.model.tokenizer.encode(&req.content).map_err(pocketlm_core::Error::from)?;
    Ok(Json(json!({ "tokens": ids })).into_response())
}

pub async fn detokenize(
    State(st): Shared,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let req: DetokenizeRequest = parse(body)?;
    let l = loaded(&st)?;
    if let Some(&id) = req.tokens.iter().find(|&&id| id as usize >= l.model.hparams.n_vocab) {
        return Err(ApiError::bad_request(format!("token id {id} is outside the vocabulary"), Some("tokens")));
    }
    let text = l.model.tokenizer.decode(&req.tokens).map_err(pocketlm_core::Error::from)?;
    Ok(Json(json!({ "content": text })).into_response())
}

pub async fn metrics(State(st): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let m = &st.metrics;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (gen, us) = (get(&m.generated_tokens), get(&m.generation_us));
    let (busy, queued, total) =
        st.loaded.get().map_or((0, 0, 0), |l| (l.slots.busy(), l.slots.queued(), l.slots.total()));
    let rows: [(&str, &str, &str, f64); 9] = [
        ("requests_total", "counter", "Completion requests received", get(&m.requests) as f64),
        ("errors_total", "counter", "Requests answered with an error", get(&m.errors) as f64),
        ("prompt_tokens_total", "counter", "Prompt tokens of all requests", get(&m.prompt_tokens) as f64),
        (
            "prefilled_tokens_total",
            "counter",
            "Prompt tokens computed (not reused from a slot's cache)",
            get(&m.prefilled_tokens) as f64,
        ),
        ("generated_tokens_total", "counter", "Tokens generated", gen as f64),
        (
            "generation_tokens_per_second",
            "gauge",
            "Generated tokens per second of decode time, all requests",
            if us == 0 { 0.0 } else { gen as f64 * 1e6 / us as f64 },
        ),
        ("queue_length", "gauge", "Requests waiting for a slot", queued as f64),
        ("slots_busy", "gauge", "Slots generating now", busy as f64),
        ("slots_total", "gauge", "Slots", total as f64),
    ];
    let mut out = String::new();
    for (name, kind, help, v) in rows {
        out.push_str(&format!("# HELP pocketlm_{name} {help}\n# TYPE pocketlm_{name} {kind}\npocketlm_{name} {v}\n"));
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out).into_response())
}

pub async fn completions(State(st): Shared, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let result = async {
        authorize(&st, &headers)?;
        let req: CompletionRequest = parse(body)?;
        let l = loaded(&st)?;
        let ids = match req.prompt {
            Prompt::Text(t) => l.model.tokenizer.encode(&t).map_err(pocketlm_core::Error::from)?,
            Prompt::Ids(ids) => ids,
        };
        let job = Job::new(&st, l, ids, req.sampling, Vec::new(), 16)?;
        Ok::<_, ApiError>(run(&st, l, job, Kind::Completion).await)
    };
    finish(&st.metrics, result.await)
}

pub async fn chat_completions(State(st): Shared, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let result = async {
        authorize(&st, &headers)?;
        let req: ChatRequest = parse(body)?;
        if req.messages.is_empty() {
            return Err(ApiError::bad_request("messages is empty", Some("messages")));
        }
        let l = loaded(&st)?;
        let prompt = l.format.render(&req.messages, true)?;
        let ids = l.model.tokenizer.encode(&prompt).map_err(pocketlm_core::Error::from)?;
        let job = Job::new(&st, l, ids, req.sampling, l.format.stops(), usize::MAX)?;
        Ok(run(&st, l, job, Kind::Chat).await)
    };
    finish(&st.metrics, result.await)
}

fn finish(m: &Metrics, r: Result<Response, ApiError>) -> Response {
    Metrics::add(&m.requests, 1);
    match r {
        Ok(r) => r,
        Err(e) => {
            Metrics::add(&m.errors, 1);
            e.into_response()
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Completion,
    Chat,
}

/// A validated generation request.
struct Job {
    ids: Vec<u32>,
    opts: GenerateOptions,
    stream: bool,
    include_usage: bool,
}

impl Job {
    fn new(
        st: &AppState,
        l: &Loaded,
        ids: Vec<u32>,
        s: Sampling,
        format_stops: Vec<String>,
        default_max: usize,
    ) -> Result<Job, ApiError> {
        if let Some(m) = s.model.as_deref().filter(|m| !m.is_empty() && *m != st.model_id && *m != l.model.hparams.name)
        {
            let mut e = ApiError::status(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model {m:?} does not exist; this server has {:?}", st.model_id),
            );
            (e.param, e.code) = (Some("model"), Some("model_not_found"));
            return Err(e);
        }
        if s.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("only n = 1 is supported", Some("n")));
        }
        let constraint = s.constraint()?;
        if let Some(c) = &constraint {
            // Compiled here too, so a bad schema is this request's 400, not a failed stream; off
            // the async workers, as a large schema (or the first one, which indexes the
            // vocabulary) takes milliseconds to seconds.
            tokio::task::block_in_place(|| l.model.constraint_engine().and_then(|e| e.guide(c)))
                .map_err(|e| ApiError::bad_request(e.to_string(), None))?;
        }
        if ids.is_empty() {
            return Err(ApiError::bad_request("the prompt is empty", Some("prompt")));
        }
        if ids.len() >= l.n_ctx {
            return Err(ApiError::bad_request(
                format!(
                    "the prompt is {} tokens; the context is {} (start the server with a larger --ctx-size)",
                    ids.len(),
                    l.n_ctx
                ),
                Some("messages"),
            ));
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= l.model.hparams.n_vocab) {
            return Err(ApiError::bad_request(format!("token id {id} is outside the vocabulary"), Some("prompt")));
        }
        let d = SamplingParams::default();
        let sampling = SamplingParams {
            temperature: s.temperature.unwrap_or(d.temperature),
            top_k: s.top_k.map_or(d.top_k, |k| k as usize),
            top_p: s.top_p.unwrap_or(d.top_p),
            min_p: s.min_p.unwrap_or(d.min_p),
            repeat_penalty: s.repeat_penalty.or(s.repetition_penalty).unwrap_or(d.repeat_penalty),
            presence_penalty: s.presence_penalty.unwrap_or(0.0),
            frequency_penalty: s.frequency_penalty.unwrap_or(0.0),
            seed: s.seed.unwrap_or(d.seed),
            ..d
        };
        sampling.validate().map_err(|e| ApiError::bad_request(e, None))?;
        let room = l.n_ctx - ids.len();
        let max_tokens = s.max_completion_tokens.or(s.max_tokens).map_or(default_max, |m| m as usize).min(room);
        let mut stop = format_stops;
        stop.extend(s.stop.map(Stop::into_vec).unwrap_or_default().into_iter().filter(|s| !s.is_empty()));
        let opts = GenerateOptions {
            max_tokens,
            sampling,
            stop,
            stop_at_eos: true,
            cancel: CancelHandle::new(),
            constraint,
            draft: l.draft,
        };
        let include_usage = s.stream_options.is_some_and(|o| o.include_usage);
        Ok(Job { ids, opts, stream: s.stream, include_usage })
    }
}

/// Cancels the generation when the HTTP side lets go of it.
struct CancelOnDrop(CancelHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

enum Piece {
    Text(String),
    Done { stats: GenerationStats, prompt_tokens: usize, prefilled: usize },
    Failed(ApiError),
}

async fn run(st: &Arc<AppState>, l: &Loaded, job: Job, kind: Kind) -> Response {
    let slot = match l.slots.acquire(&job.ids).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let guard = CancelOnDrop(job.opts.cancel.clone());
    let (tx, rx) = mpsc::channel::<Piece>(256);
    let pool = l.pool.clone();
    let (ids, opts) = (job.ids, job.opts);
    tokio::task::spawn_blocking(move || {
        let mut slot = slot;
        let s = slot.session();
        let common = s.keep_common_prefix(&ids);
        let cancel = opts.cancel.clone();
        let mut trim = TrimStart::default();
        let result = pool.install(|| {
            s.generate_text_ids(&ids[common..], &opts, &mut |piece| {
                let piece = if kind == Kind::Chat { trim.piece(piece) } else { piece };
                if !piece.is_empty() && tx.blocking_send(Piece::Text(piece.to_string())).is_err() {
                    cancel.cancel(); // the client is gone
                }
            })
        });
        let _ = tx.blocking_send(match result {
            Ok(stats) => Piece::Done { prefilled: stats.prompt_tokens, prompt_tokens: ids.len(), stats },
            Err(e) => Piece::Failed(e.into()),
        });
    });
    let (id, created, model) =
        (next_id(if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }), now(), st.model_id.clone());
    if job.stream {
        stream(st.clone(), rx, guard, kind, id, created, model, job.include_usage).into_response()
    } else {
        collect(st, rx, guard, kind, id, created, model).await
    }
}

fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

fn record(m: &Metrics, stats: &GenerationStats, prompt_tokens: usize, prefilled: usize) {
    Metrics::add(&m.prompt_tokens, prompt_tokens as u64);
    Metrics::add(&m.prefilled_tokens, prefilled as u64);
    Metrics::add(&m.generated_tokens, stats.generated_tokens as u64);
    Metrics::add(&m.generation_us, stats.generation_time.as_micros() as u64);
}

async fn collect(
    st: &AppState,
    mut rx: mpsc::Receiver<Piece>,
    _guard: CancelOnDrop,
    kind: Kind,
    id: String,
    created: u64,
    model: String,
) -> Response {
    let mut text = String::new();
    while let Some(p) = rx.recv().await {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::Failed(e) => return e.into_response(),
            Piece::Done { stats, prompt_tokens, prefilled } => {
                record(&st.metrics, &stats, prompt_tokens, prefilled);
                let usage = Usage::new(prompt_tokens, stats.generated_tokens);
                let reason = finish_reason(stats.stop_reason);
                let body = match kind {
                    Kind::Completion => json!({
                        "id": id, "object": "text_completion", "created": created, "model": model,
                        "choices": [{ "index": 0, "text": text, "logprobs": null, "finish_reason": reason }],
                        "usage": usage,
                    }),
                    Kind::Chat => json!({
                        "id": id, "object": "chat.completion", "created": created, "model": model,
                        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text.trim_end() },
                                      "logprobs": null, "finish_reason": reason }],
                        "usage": usage,
                    }),
                };
                return Json(body).into_response();
            }
        }
    }
    ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the generation ended without a result")
        .into_response()
}

#[allow(clippy::too_many_arguments)] // the fields of every chunk
fn stream(
    st: Arc<AppState>,
    rx: mpsc::Receiver<Piece>,
    guard: CancelOnDrop,
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let object = if kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = move |choice: Value, usage: Option<Usage>| {
        let mut c = json!({ "id": id, "object": object, "created": created, "model": model, "choices": [choice] });
        if let Some(u) = usage {
            c["choices"] = json!([]);
            c["usage"] = json!(u);
        }
        Event::default().data(c.to_string())
    };
    let delta = move |text: Option<&str>, reason: Option<&str>| match kind {
        Kind::Completion => {
            json!({ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason })
        }
        Kind::Chat => {
            let d = text.map_or(json!({}), |t| json!({ "content": t }));
            json!({ "index": 0, "delta": d, "logprobs": null, "finish_reason": reason })
        }
    };
    let mut opening = (kind == Kind::Chat).then(|| {
        json!({ "index": 0, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null })
    });
    let (etx, erx) = mpsc::channel::<Result<Event, std::convert::Infallible>>(256);
    tokio::spawn(async move {
        // Owns the guard: when the client goes away the SSE body is dropped, `etx` closes,
        // this task ends and the generation is cancelled.
        let _guard = guard;
        let mut rx = rx;
        loop {
            let p = tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => return },
                _ = etx.closed() => return,
            };
            let mut out = Vec::new();
            if let Some(o) = opening.take() {
                out.push(chunk(o, None));
            }
            let last = !matches!(p, Piece::Text(_));
            match p {
                Piece::Text(t) => out.push(chunk(delta(Some(&t), None), None)),
                Piece::Failed(e) => {
                    let err = json!({ "error": { "message": e.message, "type": e.kind } });
                    out.push(Event::default().data(err.to_string()));
                    out.push(Event::default().data("[DONE]"));
                }
                Piece::Done { stats, prompt_tokens, prefilled } => {
                    record(&st.metrics, &stats, prompt_tokens, prefilled);
                    out.push(chunk(delta(None, Some(finish_reason(stats.stop_reason))), None));
                    if include_usage {
                        out.push(chunk(json!(null), Some(Usage::new(prompt_tokens, stats.generated_tokens))));
                    }
                    out.push(Event::default().data("[DONE]"));
                }
            }
            for e in out {
                if etx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if last {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(erx))
}
