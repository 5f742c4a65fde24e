//! `pocketlm perplexity`: perplexity of a model over a text file, optionally saving its
//! predictions (`--save-logits`) or comparing them with a reference model's saved ones
//! (`--kl-divergence`: mean KL divergence and top-1 agreement, like llama.cpp's tool).

use half::f16;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pocketlm_core::atomic_file::AtomicFile;
use pocketlm_core::kv_cache::KvType;
use pocketlm_core::perplexity::{perplexity, window_count, PerplexityOptions, Scored};
use pocketlm_core::sampling::argmax;
use pocketlm_core::{Error, Model, Result};
use std::io::{BufReader, Read};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    #[arg(short, long)]
    model: PathBuf,
    /// Text file to score
    #[arg(short, long)]
    file: PathBuf,
    /// Window length in tokens
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    ctx_size: usize,
    /// Tokens scored per window and window advance (default: half the window)
    #[arg(long)]
    stride: Option<usize>,
    /// Stop after this many windows (0 = whole file)
    #[arg(long, default_value_t = 0)]
    chunks: usize,
    /// KV cache type: f16, q8_0, q4 or f32
    #[arg(long = "cache-type", alias = "ctk", default_value = "f16")]
    cache_type: String,
    /// ALiBi position interpolation when the model has none: none, dynamic, or fixed:FACTOR
    #[arg(long = "alibi-scaling", default_value = "none")]
    alibi_scaling: String,
    /// Training length for --alibi-scaling dynamic (default: the model's context length)
    #[arg(long = "alibi-train-len")]
    alibi_train_len: Option<usize>,
    /// Worker threads (0 = one per performance core)
    #[arg(short = 't', long, default_value_t = 0)]
    threads: usize,
    /// Save every scored prediction (f16 log-probabilities) as a reference for --kl-divergence
    #[arg(long = "save-logits")]
    save_logits: Option<PathBuf>,
    /// Compare against a reference saved with --save-logits (same text and window settings)
    #[arg(long = "kl-divergence")]
    kl_divergence: Option<PathBuf>,
}

const MAGIC: &[u8; 8] = b"PLMLOGIT";

fn header(vocab: usize, o: &PerplexityOptions, tokens_hash: u64) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    for v in [1u32, vocab as u32, o.n_ctx as u32, o.stride as u32] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&tokens_hash.to_le_bytes());
    h
}

pub fn run(a: Args) -> Result<()> {
    pocketlm_core::threads::pool(a.threads)?.install(|| score(a))
}

fn score(a: Args) -> Result<()> {
    let model = Model::load(&a.model)?;
    let text = std::fs::read_to_string(&a.file).map_err(|e| Error::Io { path: a.file.clone(), source: e })?;
    let tokens = model.tokenizer.encode(&text)?;
    let o = PerplexityOptions {
        n_ctx: a.ctx_size,
        stride: a.stride.unwrap_or(a.ctx_size / 2),
        kv_type: KvType::parse(&a.cache_type)?,
        max_windows: a.chunks,
        alibi_scaling: crate::common::parse_scaling(&a.alibi_scaling, a.alibi_train_len, &model)?,
    };
    let v = model.hparams.n_vocab;
    let hash = tokens.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &t| (h ^ t as u64).wrapping_mul(0x100_0000_01B3));
    let windows = window_count(tokens.len(), &o);
    eprintln!(
        "{}: {} tokens, {windows} windows of {} (scoring {} each)",
        a.file.display(),
        tokens.len(),
        o.n_ctx,
        o.stride
    );

    if let (Some(s), Some(k)) = (&a.save_logits, &a.kl_divergence) {
        let same = s == k || matches!((s.canonicalize(), k.canonicalize()), (Ok(x), Ok(y)) if x == y);
        if same {
            return Err(Error::InvalidArgument(format!(
                "--save-logits and --kl-divergence name the same file {}: saving would replace the reference",
                s.display()
            )));
        }
    }
    // Saved predictions go to a temporary file renamed into place at the end: an existing
    // file survives anything that fails or stops the run before that.
    let mut save = match &a.save_logits {
        Some(p) => {
            let mut f = AtomicFile::create(p)?;
            f.writer().write_all(&header(v, &o, hash)).map_err(|e| Error::Io { path: p.clone(), source: e })?;
            Some((p.clone(), f))
        }
        None => None,
    };
    let mut reference = match &a.kl_divergence {
        Some(p) => {
            let mut r = BufReader::new(std::fs::File::open(p).map_err(|e| Error::Io { path: p.clone(), source: e })?);
            let mut h = vec![0u8; header(v, &o, hash).len()];
            r.read_exact(&mut h).map_err(|e| Error::Io { path: p.clone(), source: e })?;
            if h != header(v, &o, hash) {
                return Err(Error::InvalidArgument(format!(
                    "{}: saved for another text, vocabulary or window settings",
                    p.display()
                )));
            }
            Some((p.clone(), r))
        }
        None => None,
    };
    let (mut kl_sum, mut kl_sq, mut agree, mut compared) = (0f64, 0f64, 0usize, 0usize);
    let mut buf16 = vec![0u8; 2 * v];
    let bar = ProgressBar::with_draw_target(Some(windows as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("[{bar:40}] {pos}/{len} windows {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = perplexity(
        &model,
        &tokens,
        &o,
        &mut |s: Scored| {
            if let Some((p, f)) = &mut save {
                for (c, x) in buf16.chunks_exact_mut(2).zip(s.log_probs) {
                    c.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
                }
                f.writer().write_all(&buf16).map_err(|e| Error::Io { path: p.clone(), source: e })?;
            }
            if let Some((p, r)) = &mut reference {
                r.read_exact(&mut buf16).map_err(|e| Error::Io { path: p.clone(), source: e })?;
                let rl: Vec<f32> = buf16.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
                let kl: f64 = rl.iter().zip(s.log_probs).map(|(&r, &q)| (r as f64).exp() * (r as f64 - q as f64)).sum();
                kl_sum += kl;
                kl_sq += kl * kl;
                agree += (argmax(&rl) == argmax(s.log_probs)) as usize;
                compared += 1;
            }
            Ok(())
        },
        &mut |r| {
            bar.inc(1);
            bar.set_message(format!("ppl {:.3}", r.perplexity()));
        },
    );
    bar.finish_and_clear();
    let report = report?;
    if let Some((p, f)) = save {
        f.commit()?;
        eprintln!("saved {} predictions to {}", report.scored, p.display());
    }
    println!("perplexity: {:.4} over {} tokens ({} windows)", report.perplexity(), report.scored, report.windows);
    if compared > 0 {
        let n = compared as f64;
        let mean = kl_sum / n;
        let sd = ((kl_sq / n - mean * mean).max(0.0) / n).sqrt();
        println!(
            "KL divergence: mean {mean:.6} ± {sd:.6}; top-1 agreement {:.2}% over {compared} tokens",
            100.0 * agree as f64 / n
        );
    }
    Ok(())
}
