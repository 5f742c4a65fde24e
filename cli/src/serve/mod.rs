//! `pocketlm serve`: the model behind an OpenAI-compatible HTTP API on one port, for the
//! clients people already have (the `openai` packages, curl, LangChain), the way llama-server
//! and Ollama are used on boards and kiosks.
//!
//! Endpoints: GET /health (503 while the model loads), GET /v1/models, POST /v1/completions,
//! POST /v1/chat/completions (JSON, or SSE with `stream`), POST /tokenize, POST /detokenize,
//! GET /metrics (Prometheus text). N slots share the model; more requests wait in a bounded
//! queue, beyond it they get 503 + Retry-After. A client that disconnects cancels its
//! generation. SIGTERM or Ctrl-C stops accepting and lets running requests finish.

mod api;
mod handlers;
mod slots;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use pocketlm_core::chat::ChatFormat;
use pocketlm_core::session::{Session, SessionOptions};
use pocketlm_core::{Error, KvType, Model};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    #[arg(short, long)]
    model: PathBuf,
    /// Address to listen on (loopback by default: expose it on purpose)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health
    #[arg(long, conflicts_with = "api_key_file")]
    api_key: Option<String>,
    /// Read the API key from this file (keeps it out of `ps`)
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Requests generated at once (each slot holds its own KV cache)
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Requests that may wait for a slot; more get 503
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Context size of each slot in tokens
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    ctx_size: usize,
    /// KV cache type: f16, q8_0, q4 or f32
    #[arg(long = "cache-type", alias = "ctk", default_value = "f16")]
    cache_type: String,
    /// Largest request body in bytes
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Worker threads (0 = one per physical core)
    #[arg(short = 't', long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    draft: crate::sampling_args::DraftArgs,
}

/// What the handlers share.
pub struct AppState {
    loaded: OnceLock<Loaded>,
    api_key: Option<String>,
    model_id: String,
    metrics: Metrics,
    started: u64,
}

/// The model and its slots, once loading has finished.
struct Loaded {
    model: Arc<Model>,
    format: ChatFormat,
    slots: Arc<slots::Slots>,
    pool: Arc<rayon::ThreadPool>,
    n_ctx: usize,
    /// Prompt-lookup draft length for every request (--draft, --no-draft).
    draft: usize,
}

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    errors: AtomicU64,
    prompt_tokens: AtomicU64,
    prefilled_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    /// Microseconds spent generating (decode), for tokens/s.
    generation_us: AtomicU64,
}

impl Metrics {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    if a.parallel == 0 || a.parallel > 64 {
        return Err(Error::InvalidArgument(format!("--parallel {}: use 1..=64 slots", a.parallel)));
    }
    let api_key = match (&a.api_key, &a.api_key_file) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(f)) => {
            let k = std::fs::read_to_string(f).map_err(|e| Error::Io { path: f.clone(), source: e })?;
            if k.trim().is_empty() {
                return Err(Error::InvalidArgument(format!("--api-key-file {}: the file is empty", f.display())));
            }
            Some(k.trim().to_string())
        }
        (None, None) => None,
    };
    let kv_type = KvType::parse(&a.cache_type)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(a, api_key, kv_type))
}

async fn serve(a: Args, api_key: Option<String>, kv_type: KvType) -> pocketlm_core::Result<()> {
    let addr = format!("{}:{}", a.host, a.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::Io { path: format!("--host/--port {addr}").into(), source: e })?;
    let model_id = a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let state = Arc::new(AppState {
        loaded: OnceLock::new(),
        api_key,
        model_id,
        metrics: Metrics::default(),
        started: handlers::now(),
    });
    eprintln!("listening on http://{addr} (model loading)");

    // Load in the background: /health answers 503 meanwhile, as llama-server does.
    let (load_state, path, (n_ctx, parallel, queue, threads)) =
        (state.clone(), a.model.clone(), (a.ctx_size, a.parallel, a.queue, a.threads));
    let draft = a.draft.tokens();
    let loading = tokio::task::spawn_blocking(move || -> pocketlm_core::Result<()> {
        let model = Arc::new(Model::load(&path)?);
        let opts = SessionOptions { n_ctx, kv_type, ..Default::default() };
        let sessions = (0..parallel).map(|_| Session::new(model.clone(), &opts)).collect::<Result<Vec<_>, _>>()?;
        let loaded = Loaded {
            format: ChatFormat::for_model(&model),
            slots: slots::Slots::new(sessions, queue),
            pool: Arc::new(pocketlm_core::threads::pool(threads)?),
            model,
            n_ctx,
            draft,
        };
        eprintln!("model {} ready: {parallel} slot(s) of {n_ctx} tokens, queue {queue}", load_state.model_id);
        let _ = load_state.loaded.set(loaded);
        Ok(())
    });

    let app = Router::new()
        .route("/health", get(handlers::health))
        .route("/v1/models", get(handlers::models))
        .route("/v1/completions", post(handlers::completions))
        .route("/v1/chat/completions", post(handlers::chat_completions))
        .route("/tokenize", post(handlers::tokenize))
        .route("/detokenize", post(handlers::detokenize))
        .route("/metrics", get(handlers::metrics))
        .layer(DefaultBodyLimit::max(a.max_body))
        .with_state(state.clone());
    // A model that does not load leaves nothing to serve: say why and exit.
    tokio::spawn(async move {
        let why = match loading.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("loading the model: {e}"),
        };
        eprintln!("error: {why}");
        std::process::exit(1);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::Io { path: addr.clone().into(), source: e })?;
    eprintln!("stopped");
    Ok(())
}

/// SIGTERM (service managers) or Ctrl-C: stop accepting, finish what runs, exit.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("shutting down: finishing running requests");
}
