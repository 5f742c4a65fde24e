use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{GenerateOptions, Session, SessionOptions};
use pocketlm_core::{Error, KvType, Model};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    #[arg(short, long)]
    model: PathBuf,
    /// Prompt text (with --ids: comma-separated token ids)
    #[arg(short, long)]
    prompt: String,
    /// Tokens to generate
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    n_predict: usize,
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    #[arg(long, default_value_t = 0xC0FFEE)]
    seed: u64,
    /// Context size in tokens
    #[arg(short = 'c', long, default_value_t = 2048)]
    ctx_size: usize,
    /// KV cache type: f16 or f32
    #[arg(long = "cache-type", default_value = "f16")]
    cache_type: String,
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

fn parse_ids(s: &str) -> pocketlm_core::Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u32>().map_err(|_| Error::InvalidArgument(format!("--ids: {t:?} is not a token id"))))
        .collect()
}

pub fn run(a: Args) -> pocketlm_core::Result<()> {
    pocketlm_core::threads::pool(a.threads)?.install(|| generate(a))
}

fn generate(a: Args) -> pocketlm_core::Result<()> {
    let model = Arc::new(Model::load(&a.model)?);
    let mut session = Session::new(
        model.clone(),
        &SessionOptions { n_ctx: a.ctx_size, kv_type: KvType::parse(&a.cache_type)?, ..Default::default() },
    )?;
    let opts = GenerateOptions {
        max_tokens: a.n_predict,
        sampling: SamplingParams {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: a.repeat_last_n,
            seed: a.seed,
        },
        stop: a.stop.clone(),
        stop_at_eos: !a.ignore_eos,
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
    eprintln!(
        "prompt: {} tokens, {:.2} tok/s | generation: {} tokens, {:.2} tok/s | stop: {:?}",
        stats.prompt_tokens,
        stats.prompt_tokens_per_s(),
        stats.generated_tokens,
        stats.generation_tokens_per_s(),
        stats.stop_reason
    );
    Ok(())
}
