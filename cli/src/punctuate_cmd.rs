//! `pocketlm punctuate`: punctuation and capitals for speech-recognition text, from the words
//! alone or with their audio (a WAV file) and word timings (JSON, as an ASR returns them).

use pocketlm_core::punct::{split_words, Audio, Punctuator, WordTiming};
use pocketlm_core::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Punctuation model (GGUF); default: the English model built into pocketlm
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The words, as the ASR gives them ("hey anna how are you")
    #[arg(long, conflicts_with = "words")]
    text: Option<String>,
    /// Mono WAV (16-bit PCM or 32-bit float; 8-48 kHz) of the utterance
    #[arg(long, requires = "words")]
    audio: Option<PathBuf>,
    /// JSON array of {"word", "start", "end"} (seconds), one per word: the words and their timings
    #[arg(long)]
    words: Option<PathBuf>,
    /// Print labels and probabilities as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Deserialize)]
struct TimedWord {
    word: String,
    start: f32,
    end: f32,
}

pub fn run(a: Args) -> Result<()> {
    let p = match &a.model {
        Some(m) => Punctuator::load(m)?,
        None => Punctuator::builtin()?,
    };
    let (words, timings) = match (&a.text, &a.words) {
        (Some(t), None) => (split_words(t), None),
        (None, Some(path)) => {
            let tw = read_words(path)?;
            let words = tw.iter().map(|w| w.word.clone()).collect();
            (words, Some(tw.iter().map(|w| WordTiming { start: w.start, end: w.end }).collect::<Vec<_>>()))
        }
        _ => return Err(Error::InvalidArgument("give the words with --text, or --words FILE (with --audio)".into())),
    };
    let audio = a.audio.as_deref().map(read_wav).transpose()?;
    let input = match (&audio, &timings) {
        (Some((samples, rate)), Some(t)) => Some((Audio { samples, sample_rate: *rate }, t.as_slice())),
        _ => None,
    };
    let out = p.punctuate(&words, input)?;
    if a.json {
        let labels = p.labels();
        let words: Vec<serde_json::Value> = out
            .words
            .iter()
            .map(|w| {
                let probs: serde_json::Map<String, serde_json::Value> =
                    labels.iter().zip(&w.probabilities).map(|(l, v)| (l.clone(), serde_json::json!(v))).collect();
                serde_json::json!({"word": w.word, "label": w.label, "probabilities": probs})
            })
            .collect();
        let doc = serde_json::json!({"text": out.text, "audio": audio.is_some(), "words": words});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        println!("{}", out.text);
    }
    Ok(())
}

fn read_words(path: &Path) -> Result<Vec<TimedWord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
    serde_json::from_str(&text).map_err(|e| {
        Error::InvalidArgument(format!(
            "{}: {e} (expected a JSON array of {{\"word\": \"...\", \"start\": s, \"end\": s}})",
            path.display()
        ))
    })
}

/// Mono samples as f32 in [-1, 1], and the sample rate.
pub fn read_wav(path: &Path) -> Result<(Vec<f32>, u32)> {
    let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", path.display()));
    let r = hound::WavReader::open(path).map_err(|e| bad(format!("not a readable WAV file ({e})")))?;
    let spec = r.spec();
    if spec.channels != 1 {
        return Err(bad(format!("{} channels: give mono audio", spec.channels)));
    }
    let samples: std::result::Result<Vec<f32>, _> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => r.into_samples::<i16>().map(|s| s.map(|v| v as f32 / 32768.0)).collect(),
        (hound::SampleFormat::Float, 32) => r.into_samples::<f32>().collect(),
        (f, b) => return Err(bad(format!("{b}-bit {f:?} samples: expected 16-bit PCM or 32-bit float"))),
    };
    Ok((samples.map_err(|e| bad(format!("bad sample data ({e})")))?, spec.sample_rate))
}
