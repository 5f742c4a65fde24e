//! llama-bench-style measurements: prompt processing (ppN) and generation (tgN) tokens/s, mean
//! ± sd over repetitions after a warm-up, plus peak resident memory, model open time, the
//! machine's measured memory read bandwidth, and decode speed against the bandwidth ceiling.

use crate::common::mib;
use pocketlm_core::kv_cache::{KvCache, KvType};
use pocketlm_core::model::{Logits, Model};
use pocketlm_core::threads;
use pocketlm_core::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model file
    #[arg(short, long, required_unless_present = "bandwidth_only")]
    model: Option<PathBuf>,
    /// Prompt lengths to test (comma-separated)
    #[arg(short = 'p', long = "n-prompt", default_value = "128,512", value_delimiter = ',')]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated)
    #[arg(short = 'n', long = "n-gen", default_value = "64", value_delimiter = ',')]
    n_gen: Vec<usize>,
    /// Repetitions per test
    #[arg(short = 'r', long, default_value_t = 3)]
    repetitions: usize,
    /// Thread counts (comma-separated; 0 = physical cores)
    #[arg(short = 't', long, default_value = "0", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Context size of the session (default: 2048, or depth + the longest test if larger)
    #[arg(short = 'c', long = "ctx-size")]
    ctx_size: Option<usize>,
    /// KV cache type: f16, q8_0, q4 or f32
    #[arg(long = "cache-type", alias = "ctk", default_value = "f16")]
    cache_type: String,
    /// Tokens already in the context when each test starts (comma-separated)
    #[arg(short = 'd', long = "depth", default_value = "0", value_delimiter = ',')]
    depth: Vec<usize>,
    /// One JSON object per test line instead of the table
    #[arg(long)]
    json: bool,
    /// Only measure the memory read bandwidth with the first -t thread count (what
    /// scripts/bench-vs-llamacpp.sh runs beside llama-bench to give it a ceiling too)
    #[arg(long)]
    bandwidth_only: bool,
}

struct Line {
    test: String,
    threads: usize,
    samples: Vec<f64>,
    depth: usize,
}

impl Line {
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64
    }
    fn sd(&self) -> f64 {
        let m = self.mean();
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        (self.samples.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    }
}

/// Pseudo-random prompt ids (content does not change the cost of a forward pass).
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i as u64 * 2_654_435_761 + 17) % vocab as u64) as u32).collect()
}

/// Fills the cache to `depth` tokens (untimed), reusing what a previous call filled.
fn fill_to(model: &Model, cache: &mut KvCache, depth: usize) -> Result<()> {
    if cache.len() >= depth {
        cache.truncate(depth);
        return Ok(());
    }
    let ids = prompt_ids(depth, model.hparams.n_vocab);
    cache.clear();
    for chunk in ids.chunks(256) {
        let k = cache.len() + chunk.len();
        let _ = model.forward(cache, chunk, k, Logits::None, &|| false)?;
    }
    Ok(())
}

fn prefill_tps(model: &Model, cache: &mut KvCache, depth: usize, n: usize, batch: usize) -> Result<f64> {
    fill_to(model, cache, depth)?;
    let ids = prompt_ids(n, model.hparams.n_vocab);
    let t0 = Instant::now();
    for (i, chunk) in ids.chunks(batch).enumerate() {
        let want = if (i + 1) * batch >= n { Logits::Last } else { Logits::None };
        let _ = model.forward(cache, chunk, depth + n, want, &|| false)?;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn decode_tps(model: &Model, cache: &mut KvCache, depth: usize, n: usize) -> Result<f64> {
    fill_to(model, cache, depth)?;
    let mut id = 50256 % model.hparams.n_vocab as u32;
    let t0 = Instant::now();
    for _ in 0..n {
        let k = cache.len() + 1;
        let logits = model.forward(cache, &[id], k, Logits::Last, &|| false)?.unwrap_or_default();
        id = pocketlm_core::sampling::argmax(&logits) as u32;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

pub fn run(a: Args) -> Result<()> {
    let Some(path) = a.model.as_ref().filter(|_| !a.bandwidth_only) else {
        let t = a.threads.first().copied().unwrap_or(0);
        let pool = threads::pool(t)?;
        let bandwidth = pool.install(measure_read_bandwidth);
        let nt = pool.current_num_threads();
        if a.json {
            println!("{}", serde_json::json!({"threads": nt, "bandwidth_gbs": round2(bandwidth / 1e9)}));
        } else {
            println!("memory read bandwidth: {:.1} GB/s ({nt} threads)", bandwidth / 1e9);
        }
        return Ok(());
    };
    let t_open = Instant::now();
    let model = Model::load(path)?;
    let open_ms = t_open.elapsed().as_secs_f64() * 1e3;
    let hp = &model.hparams;
    let kv = KvType::parse(&a.cache_type)?;
    let longest = a.n_prompt.iter().chain(&a.n_gen).copied().max().unwrap_or(0);
    let max_depth = a.depth.iter().copied().max().unwrap_or(0);
    let need = max_depth.checked_add(longest).ok_or_else(|| {
        Error::InvalidArgument(format!("-d {max_depth} with a {longest}-token test: the context size overflows"))
    })?;
    let ctx_size = a.ctx_size.unwrap_or(2048.max(need));
    // Every option must mean a measurement: no repetitions would print rows of nothing, and
    // a context too small for the tests would print an empty table.
    if a.repetitions == 0 {
        return Err(Error::InvalidArgument("-r 0: at least one repetition is needed".into()));
    }
    if need > ctx_size {
        return Err(Error::InvalidArgument(format!(
            "-c {ctx_size}: the longest test needs {need} tokens of context (depth {max_depth} + {longest})"
        )));
    }
    let mut cache = KvCache::new(hp, ctx_size, kv, None)?;
    let weight_bytes = model.weight_bytes();
    let n_params: u64 = model.file.header.tensors.iter().map(|t| t.n_elements()).sum();
    let ty = dominant_type(&model);
    let mut lines = Vec::new();

    for &t in &a.threads {
        let pool = threads::pool(t)?;
        let nt = pool.current_num_threads();
        pool.install(|| -> Result<()> {
            for &d in &a.depth {
                let at = if d > 0 { format!(" @ d{d}") } else { String::new() };
                for &p in &a.n_prompt {
                    if p == 0 || d + p > ctx_size {
                        continue;
                    }
                    prefill_tps(&model, &mut cache, d, p.min(64), 256)?; // warm-up
                    let samples = (0..a.repetitions)
                        .map(|_| prefill_tps(&model, &mut cache, d, p, 256))
                        .collect::<Result<_>>()?;
                    lines.push(Line { test: format!("pp{p}{at}"), threads: nt, samples, depth: d });
                }
                for &n in &a.n_gen {
                    if n == 0 || d + n > ctx_size {
                        continue;
                    }
                    decode_tps(&model, &mut cache, d, 4)?; // warm-up: touches every weight page once
                    let samples =
                        (0..a.repetitions).map(|_| decode_tps(&model, &mut cache, d, n)).collect::<Result<_>>()?;
                    lines.push(Line { test: format!("tg{n}{at}"), threads: nt, samples, depth: d });
                }
            }
            Ok(())
        })?;
    }

    // Peak memory is read before the bandwidth probe, whose buffer would otherwise count.
    let mem = MemStatus::read();
    let max_threads = lines.iter().map(|l| l.threads).max().unwrap_or(1);
    let bandwidth = threads::pool(max_threads)?.install(measure_read_bandwidth);
    let kv_bytes_per_tok = KvCache::bytes_per_token(hp, kv);

    let name = hp.name.clone();
    let size = model.file.file_size();
    if a.json {
        for l in &lines {
            let mut obj = serde_json::json!({
                "model": name, "type": ty, "size_bytes": size, "n_params": n_params,
                "threads": l.threads, "test": l.test, "depth": l.depth, "n_ctx": ctx_size, "cache_type": kv.name(),
                "tokens_per_s": round2(l.mean()), "stddev": round2(l.sd()),
                "samples_ts": l.samples.iter().map(|&s| round2(s)).collect::<Vec<_>>(),
                "peak_rss_bytes": mem.peak_rss, "rss_anon_bytes": mem.rss_anon, "rss_file_bytes": mem.rss_file,
                "model_open_ms": round2(open_ms), "bandwidth_gbs": round2(bandwidth / 1e9),
                "kernels": pocketlm_core::kernels::best().isa,
            });
            if l.test.starts_with("tg") {
                let bytes = weight_bytes + l.depth as u64 * kv_bytes_per_tok;
                let ceiling = bandwidth / bytes as f64;
                obj["bytes_per_token"] = serde_json::json!(bytes);
                obj["bandwidth_ceiling_tps"] = serde_json::json!(round2(ceiling));
                obj["ceiling_pct"] = serde_json::json!(round2(100.0 * l.mean() / ceiling));
            }
            println!("{obj}");
        }
        return Ok(());
    }

    println!("| model | type | size | params | threads | test | t/s |");
    println!("| --- | --- | ---: | ---: | ---: | --- | ---: |");
    for l in &lines {
        println!(
            "| {name} | {ty} | {:.2} GiB | {:.2} B | {} | {} | {:.2} ± {:.2} |",
            size as f64 / (1u64 << 30) as f64,
            n_params as f64 / 1e9,
            l.threads,
            l.test,
            l.mean(),
            l.sd()
        );
    }
    println!();
    println!("model open: {open_ms:.1} ms (memory-mapped, no copy); kernels: {}", pocketlm_core::kernels::best().isa);
    println!(
        "peak RSS: {:.0} MiB (now: {:.0} MiB anonymous + {:.0} MiB file-backed), context {} tokens, {} KV cache ({:.0} KiB/token)",
        mib(mem.peak_rss),
        mib(mem.rss_anon),
        mib(mem.rss_file),
        ctx_size,
        kv.name(),
        kv_bytes_per_tok as f64 / 1024.0
    );
    println!("memory read bandwidth: {:.1} GB/s ({max_threads} threads, measured now)", bandwidth / 1e9);
    for l in lines.iter().filter(|l| l.test.starts_with("tg")) {
        // A decoded token reads every weight once, plus the whole KV cache at most (the ALiBi
        // cut-off in attention reads less: this ceiling is conservative at depth).
        let bytes = weight_bytes + l.depth as u64 * kv_bytes_per_tok;
        let ceiling = bandwidth / bytes as f64;
        println!(
            "{} with {} threads: {:.2} tok/s = {:.0}% of the bandwidth ceiling ({:.2} tok/s = {:.1} GB/s / {:.0} MiB per token)",
            l.test,
            l.threads,
            l.mean(),
            100.0 * l.mean() / ceiling,
            ceiling,
            bandwidth / 1e9,
            mib(bytes)
        );
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The weight type most of the model's bytes are in.
fn dominant_type(model: &Model) -> String {
    let mut by: std::collections::BTreeMap<&str, u64> = Default::default();
    for t in &model.file.header.tensors {
        *by.entry(t.ty.name()).or_default() += t.n_bytes;
    }
    by.into_iter().max_by_key(|&(_, b)| b).map(|(n, _)| n.to_string()).unwrap_or_default()
}

#[derive(Default)]
struct MemStatus {
    peak_rss: u64,
    rss_anon: u64,
    rss_file: u64,
}

impl MemStatus {
    /// From /proc/self/status (Linux/Android); zeros elsewhere.
    fn read() -> Self {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |k: &str| {
            text.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        MemStatus { peak_rss: field("VmHWM:"), rss_anon: field("RssAnon:"), rss_file: field("RssFile:") }
    }
}

/// Read bandwidth with the current pool's threads: each sums its share of a 1 GiB buffer
/// (larger than any cache); best of 5 passes.
fn measure_read_bandwidth() -> f64 {
    use rayon::prelude::*;
    const BYTES: usize = 1 << 30;
    let buf: Vec<u64> = (0..BYTES / 8).into_par_iter().map(|i| i as u64).collect();
    let per = buf.len() / rayon::current_num_threads().max(1);
    let mut best = 0f64;
    for _ in 0..5 {
        let t0 = Instant::now();
        let s: u64 = buf.par_chunks(per.max(1)).map(|c| c.iter().fold(0u64, |a, &x| a.wrapping_add(x))).sum();
        let dt = t0.elapsed().as_secs_f64();
        std::hint::black_box(s);
        best = best.max(BYTES as f64 / dt);
    }
    best
}
