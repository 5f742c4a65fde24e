//! `pocketlm punct-data`: the punctuation model's data and training tools.
//!   features DIR      per-word acoustic features of a synthetic-speech dataset made by
//!                     scripts/punct/gen_data.py, computed by the same code as on the device
//!   pack DIR OUT      trained weights (scripts/punct/train.py) to a GGUF (q8_0 or f32)
//!   eval -m M DATA    micro-F1 and per-class F1, with audio and text-only, clean and with
//!                     perturbed pauses

use crate::common::tensor_bar;
use pocketlm_core::gguf::GgmlType;
use pocketlm_core::punct::eval::{perturb_pauses, read_examples, read_jsonl, score};
use pocketlm_core::punct::{features, Audio, Punctuator, WordTiming};
use pocketlm_core::{Error, Result};
use rayon::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Compute features.jsonl from a dataset folder's shard-*.jsonl + shard-*.pcm
    Features { dir: PathBuf },
    /// Pack trained weights (model.safetensors + punct_config.json) into a GGUF
    Pack {
        dir: PathBuf,
        out: PathBuf,
        #[arg(long, default_value = "q8_0")]
        r#type: String,
    },
    /// Score a model on features.jsonl files
    Eval {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(required = true)]
        data: Vec<PathBuf>,
        /// Seed of the pause perturbation in the "noisy pauses" rows
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Latency of one utterance (feature extraction from the audio + the model), one thread
    Bench {
        /// Model (default: the built-in one)
        #[arg(short, long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 32)]
        words: usize,
        /// Seconds of audio
        #[arg(long, default_value_t = 10.0)]
        seconds: f32,
        #[arg(long, default_value_t = 16000)]
        sample_rate: u32,
        #[arg(short = 'r', long, default_value_t = 200)]
        repetitions: usize,
    },
}

pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Cmd::Features { dir } => features_cmd(&dir),
        Cmd::Pack { dir, out, r#type } => {
            let ty = match r#type.as_str() {
                "q8_0" => GgmlType::Q8_0,
                "f32" => GgmlType::F32,
                other => return Err(Error::InvalidArgument(format!("--type {other}: expected q8_0 or f32"))),
            };
            let n = pocketlm_core::punct::pack::pack(&dir, &out, ty)?;
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            let p = Punctuator::load(&out)?;
            eprintln!("wrote {} ({n} tensors, {size} bytes, {} parameters)", out.display(), p.n_params());
            Ok(())
        }
        Cmd::Eval { model, data, seed } => eval_cmd(&model, &data, seed),
        Cmd::Bench { model, words, seconds, sample_rate, repetitions } => {
            bench_cmd(model.as_deref(), words, seconds, sample_rate, repetitions)
        }
    }
}

/// Times `punctuate` on a synthetic utterance: `n` words spread over `seconds` of a voiced,
/// gliding harmonic signal with silent gaps, so the pitch tracker does its full work.
fn bench_cmd(model: Option<&Path>, n: usize, seconds: f32, sr: u32, reps: usize) -> Result<()> {
    if n == 0 || reps == 0 || seconds.is_nan() || seconds <= 0.0 {
        return Err(Error::InvalidArgument("--words, --seconds and -r must be positive".into()));
    }
    let p = match model {
        Some(m) => Punctuator::load(m)?,
        None => Punctuator::builtin()?,
    };
    let slot = seconds / n as f32;
    let timings: Vec<WordTiming> =
        (0..n).map(|i| WordTiming { start: i as f32 * slot, end: i as f32 * slot + 0.8 * slot }).collect();
    let mut phase = 0f32;
    let samples: Vec<f32> = (0..(seconds * sr as f32) as usize)
        .map(|i| {
            let t = i as f32 / sr as f32;
            let voiced = (t % slot) < 0.8 * slot;
            phase += 2.0 * std::f32::consts::PI * (120.0 + 40.0 * (t * 0.7).sin()) / sr as f32;
            if voiced {
                0.4 * phase.sin() + 0.2 * (2.0 * phase).sin()
            } else {
                0.0
            }
        })
        .collect();
    let words: Vec<String> =
        (0..n).map(|i| ["so", "what", "do", "you", "think", "about", "it"][i % 7].to_string()).collect();
    let time = |audio: bool| -> Result<Vec<f64>> {
        let mut v = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t0 = std::time::Instant::now();
            let input = audio.then(|| (Audio { samples: &samples, sample_rate: sr }, timings.as_slice()));
            std::hint::black_box(p.punctuate(&words, input)?);
            v.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        v.sort_by(f64::total_cmp);
        Ok(v)
    };
    let kernels = pocketlm_core::kernels::best().isa;
    for (what, audio) in [("text + audio", true), ("text only", false)] {
        let v = time(audio)?;
        println!(
            "{n} words, {what:<12} ({seconds} s at {sr} Hz): median {:.3} ms, p90 {:.3} ms, min {:.3} ms ({reps} runs, one thread, {kernels} kernels)",
            v[v.len() / 2],
            v[v.len() * 9 / 10],
            v[0]
        );
    }
    Ok(())
}

/// One utterance of a shard: words, labels, timings and where its samples are.
#[derive(Deserialize)]
struct Utterance {
    words: Vec<String>,
    labels: Vec<usize>,
    start: Vec<f32>,
    end: Vec<f32>,
    offset: usize,
    samples: usize,
    sample_rate: u32,
    voice: String,
}

fn features_cmd(dir: &Path) -> Result<()> {
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io { path: dir.into(), source: e })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "jsonl")
                && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("shard-"))
        })
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no shard-*.jsonl files", dir.display())));
    }
    let out_path = dir.join("features.jsonl");
    let mut lines = Vec::new();
    for shard in &shards {
        let pcm_path = shard.with_extension("pcm");
        let pcm = std::fs::read(&pcm_path).map_err(|e| Error::Io { path: pcm_path.clone(), source: e })?;
        let utts: Vec<Utterance> = read_jsonl(shard)?;
        let bar = tensor_bar();
        bar.set_length(utts.len() as u64);
        bar.set_message(shard.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let done: Vec<Result<String>> = utts
            .par_iter()
            .map(|u| {
                bar.inc(1);
                let bytes = pcm.get(u.offset * 2..(u.offset + u.samples) * 2).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{}: samples {}..{} missing",
                        pcm_path.display(),
                        u.offset,
                        u.offset + u.samples
                    ))
                })?;
                let samples: Vec<f32> =
                    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect();
                let timings: Vec<WordTiming> =
                    u.start.iter().zip(&u.end).map(|(&s, &e)| WordTiming { start: s, end: e }).collect();
                let audio = Audio { samples: &samples, sample_rate: u.sample_rate };
                features::validate(&audio, &timings, u.words.len())?;
                let feats: Vec<Vec<f32>> = features::word_features(&audio, &timings)
                    .iter()
                    .map(|f| f.iter().map(|v| (v * 1e4).round() / 1e4).collect())
                    .collect();
                Ok(serde_json::json!({"words": u.words, "labels": u.labels, "feats": feats, "voice": u.voice})
                    .to_string())
            })
            .collect();
        bar.finish_and_clear();
        for (i, l) in done.into_iter().enumerate() {
            match l {
                Ok(l) => lines.push(l),
                Err(e) => eprintln!("skipped {} utterance {}: {e}", shard.display(), i + 1),
            }
        }
    }
    let mut f = pocketlm_core::atomic_file::AtomicFile::create(&out_path)?;
    for l in &lines {
        writeln!(f.writer(), "{l}").map_err(|e| Error::Io { path: out_path.clone(), source: e })?;
    }
    f.commit()?;
    eprintln!("wrote {} ({} utterances)", out_path.display(), lines.len());
    Ok(())
}

fn eval_cmd(model: &Path, data: &[PathBuf], seed: u64) -> Result<()> {
    let p = Punctuator::load(model)?;
    let labels = p.labels().to_vec();
    println!(
        "model {} ({}, {} parameters, {} bytes)",
        model.display(),
        p.weight_type().name(),
        p.n_params(),
        std::fs::metadata(model).map(|m| m.len()).unwrap_or(0)
    );
    print!("{:<34} {:>6} {:>14}", "set", "words", "micro-F1 all/inner");
    for l in &labels[1..] {
        print!(" {l:>9}");
    }
    println!();
    for path in data {
        let clean = read_examples(path)?;
        let mut noisy = clean.clone();
        perturb_pauses(&mut noisy, seed);
        let name =
            path.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (what, set, text_only) in
            [("text+audio", &clean, false), ("text+audio, noisy pauses", &noisy, false), ("text only", &clean, true)]
        {
            let (all, inner) = score(&p, set, text_only)?;
            print!(
                "{:<34} {:>6} {:>7.3} /{:>6.3}",
                format!("{name}: {what}"),
                all.words,
                all.micro_f1(),
                inner.micro_f1()
            );
            for c in 1..labels.len() {
                print!(" {:>9.3}", all.class_f1(c));
            }
            println!();
        }
    }
    Ok(())
}
