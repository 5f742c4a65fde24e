use pocketlm_core::session::{ContextPolicy, GenerateOptions, Session, SessionOptions};
use pocketlm_core::{Error, KvType, Model};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    #[arg(short, long)]
    model: PathBuf,
    /// Prompt text (with --ids: comma-separated token ids); empty continues a --session
    #[arg(short, long, conflicts_with = "file", default_value = "")]
    prompt: String,
    /// Read the prompt from this file (long prompts)
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Tokens to generate
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    #[command(flatten)]
    sampling: crate::sampling_args::SamplingArgs,
    #[command(flatten)]
    constraint: crate::constraint_args::ConstraintArgs,
    #[command(flatten)]
    draft: crate::sampling_args::DraftArgs,
    /// Context size in tokens
    #[arg(short = 'c', long, default_value_t = 2048)]
    ctx_size: usize,
    /// KV cache type: f16, q8_0, q4 or f32
    #[arg(long = "cache-type", alias = "ctk", default_value = "f16")]
    cache_type: String,
    /// ALiBi position interpolation when the model has none: none, dynamic, or fixed:FACTOR
    #[arg(long = "alibi-scaling", default_value = "none")]
    alibi_scaling: String,
    /// Training length for --alibi-scaling dynamic (default: the model's context length)
    #[arg(long = "alibi-train-len")]
    alibi_train_len: Option<usize>,
    /// When the context fills: keep the first N tokens and drop the oldest half of the rest
    /// (default: stop)
    #[arg(long)]
    keep: Option<usize>,
    /// Refuse to start if weights + KV cache + scratch exceed this (e.g. 3G, 1500M)
    #[arg(long = "mem-budget")]
    mem_budget: Option<String>,
    /// Session file: restored before the prompt if it exists, saved after generation
    #[arg(long)]
    session: Option<PathBuf>,
    /// Stop when this text is generated (repeatable)
    #[arg(long)]
    stop: Vec<String>,
    /// Prompt and output are comma-separated token ids
    #[arg(long)]
    ids: bool,
    /// Keep going past the end-of-text token
    #[arg(long)]
    ignore_eos: bool,
    /// Worker threads (0 = one per physical core)
    #[arg(short = 't', long, default_value_t = 0)]
    threads: usize,
}

/// "3G", "1500M", "2048K" or plain bytes.
pub fn parse_bytes(s: &str) -> pocketlm_core::Result<u64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('G') => (&t[..t.len() - 1], 1u64 << 30),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('K') => (&t[..t.len() - 1], 1 << 10),
        _ => (t, 1),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(|v| (v * mult as f64) as u64)
        .ok_or_else(|| Error::InvalidArgument(format!("--mem-budget: {s:?} is not a size like 3G or 1500M")))
}

fn parse_ids(s: &str) -> pocketlm_core::Result<Vec<u32>> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(str::trim)
        .map(|t| t.parse::<u32>().map_err(|_| Error::InvalidArgument(format!("--ids: {t:?} is not a token id"))))
        .collect()
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    pocketlm_core::threads::pool(a.threads)?.install(|| generate(a))
}

fn generate(mut a: Args) -> pocketlm_core::Result<()> {
    if let Some(f) = &a.file {
        a.prompt = std::fs::read_to_string(f).map_err(|e| Error::Io { path: f.clone(), source: e })?;
    }
    let constraint = a.constraint.constraint()?;
    let model = Arc::new(Model::load(&a.model)?);
    let sopts = SessionOptions {
        n_ctx: a.ctx_size,
        kv_type: KvType::parse(&a.cache_type)?,
        mem_budget: a.mem_budget.as_deref().map(parse_bytes).transpose()?,
        alibi_scaling: crate::common::parse_scaling(&a.alibi_scaling, a.alibi_train_len, &model)?,
        context_policy: a.keep.map_or(ContextPolicy::Stop, |keep| ContextPolicy::Shift { keep }),
        ..Default::default()
    };
    let mut session = Session::new(model.clone(), &sopts)?;
    if let Some(path) = a.session.as_deref().filter(|p| p.exists()) {
        session.restore(path)?;
        eprintln!("restored {} tokens from {}", session.tokens().len(), path.display());
    }
    let opts = GenerateOptions {
        max_tokens: a.n_predict,
        sampling: a.sampling.params(),
        stop: a.stop.clone(),
        stop_at_eos: !a.ignore_eos,
        constraint,
        draft: a.draft.tokens(),
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let stats = if a.ids {
        let prompt = parse_ids(&a.prompt)?;
        let mut out = Vec::new();
        let stats = session.generate_ids(&prompt, &opts, &mut |id| {
            out.push(id.to_string());
            true
        })?;
        println!("{}", out.join(","));
        stats
    } else {
        let mut lock = stdout.lock();
        let stats = session.generate(&a.prompt, &opts, &mut |piece| {
            let _ = lock.write_all(piece.as_bytes());
            let _ = lock.flush();
        })?;
        let _ = writeln!(lock);
        stats
    };
    if let Some(path) = &a.session {
        session.save(path)?;
    }
    eprintln!(
        "prompt: {} tokens, {:.2} tok/s | generation: {} tokens, {:.2} tok/s | stop: {:?}",
        stats.prompt_tokens,
        stats.prompt_tokens_per_s(),
        stats.generated_tokens,
        stats.generation_tokens_per_s(),
        stats.stop_reason
    );
    if stats.drafted_tokens > 0 {
        eprintln!(
            "draft: {} of {} drafted tokens accepted ({:.0}%)",
            stats.accepted_tokens,
            stats.drafted_tokens,
            100.0 * stats.accepted_tokens as f64 / stats.drafted_tokens as f64
        );
    }
    if stats.constraint_time > std::time::Duration::ZERO {
        eprintln!(
            "constraint: {:.3} ms per token (mask, grammar, closing search)",
            stats.constraint_time.as_secs_f64() * 1000.0 / stats.generated_tokens.max(1) as f64
        );
    }
    Ok(())
}
