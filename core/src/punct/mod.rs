//! PocketLM's second model: unspoken punctuation for speech-recognition text. An on-device ASR
//! gives "hey anna how are you"; this gives "Hey, Anna, how are you?" (and per-word labels with
//! probabilities), from the words alone or from the words plus the audio and the word timings
//! the ASR returns. After Soboleva et al., ICASSP 2021 (arXiv 2010.10203): hash projection of
//! the text (no vocabulary), acoustic features fused early, a bidirectional QRNN, trained only
//! on synthetic speech. About 0.27 M parameters in int8; see `model.rs` for the network and
//! `features.rs` for what is measured in the audio.

pub mod eval;
pub mod features;
pub mod model;
pub mod pack;
pub mod projection;

pub use features::{Audio, WordTiming, N_ACOUSTIC};
pub use model::{PunctHparams, ARCH};

use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufFile, GgufHeader};
use crate::kernels::{self, Kernels};
use model::{PunctModel, Scratch};
use std::path::Path;

/// Longest utterance accepted in one call, in words (an ASR segment is far shorter; this
/// bounds memory for hostile input).
pub const MAX_WORDS: usize = 4096;

/// A loaded punctuation model (about 300 KB; its weights are copied out of the file).
pub struct Punctuator {
    model: PunctModel,
}

/// One word's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct WordLabel {
    pub word: String,
    /// The punctuation after the word: "none", "comma", "period", "question".
    pub label: String,
    /// Probability of each of [`Punctuator::labels`], in that order.
    pub probabilities: Vec<f32>,
}

/// What [`Punctuator::punctuate`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Punctuated {
    /// The words with punctuation and sentence capitals.
    pub text: String,
    pub words: Vec<WordLabel>,
}

impl Punctuator {
    /// Opens a punctuation GGUF (`general.architecture = "punct-qrnn"`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let f = GgufFile::open(path)?;
        Ok(Punctuator { model: PunctModel::load(&f.header, f.bytes(), &f.path)? })
    }

    /// The model that ships with PocketLM (English; int8, about 290 KB, compiled in), so
    /// punctuation works with no file to download or bundle.
    pub fn builtin() -> Result<Self> {
        static BYTES: &[u8] = include_bytes!("../../assets/punct-qrnn.gguf");
        Self::from_bytes(BYTES, "<builtin punct-qrnn.gguf>")
    }

    /// A model from the bytes of a GGUF file (an app asset, a download); `name` names it in
    /// errors. Every count and shape is checked against the bytes, never trusted.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let path = Path::new(name);
        let header = GgufHeader::parse(bytes).map_err(|source| Error::Gguf { path: path.into(), source })?;
        Ok(Punctuator { model: PunctModel::load(&header, bytes, path)? })
    }

    pub fn labels(&self) -> &[String] {
        &self.model.hp.labels
    }

    pub fn hparams(&self) -> &PunctHparams {
        &self.model.hp
    }

    /// Trainable parameters.
    pub fn n_params(&self) -> usize {
        self.model.params()
    }

    /// F32 or Q8_0.
    pub fn weight_type(&self) -> GgmlType {
        self.model.weight_type
    }

    /// Punctuates `words` (as an ASR gives them; case is ignored). With `audio`, the words'
    /// timings in it (one per word) let pauses, pitch and timing decide; without, the text
    /// alone does.
    pub fn punctuate(&self, words: &[String], audio: Option<(Audio, &[WordTiming])>) -> Result<Punctuated> {
        let feats = self.check_and_measure(words, audio)?;
        let probs = self.model.forward(kernels::best(), words, feats.as_deref(), &mut Scratch::default());
        Ok(self.render(words, &probs))
    }

    /// The label probabilities [words][labels] computed with one kernel set (for tests that
    /// compare SIMD sets with the scalar reference) from precomputed acoustic features.
    pub fn probabilities_with(
        &self,
        k: &Kernels,
        words: &[String],
        acoustic: Option<&[[f32; N_ACOUSTIC]]>,
    ) -> Vec<f32> {
        self.model.forward(k, words, acoustic, &mut Scratch::default())
    }

    /// Predictions from precomputed acoustic features (what the evaluation command uses).
    pub fn punctuate_features(&self, words: &[String], acoustic: Option<&[[f32; N_ACOUSTIC]]>) -> Result<Punctuated> {
        check_words(words)?;
        if let Some(a) = acoustic {
            if a.len() != words.len() {
                return Err(Error::InvalidArgument(format!("{} words but {} feature rows", words.len(), a.len())));
            }
        }
        Ok(self.render(words, &self.probabilities_with(kernels::best(), words, acoustic)))
    }

    fn check_and_measure(
        &self,
        words: &[String],
        audio: Option<(Audio, &[WordTiming])>,
    ) -> Result<Option<Vec<[f32; N_ACOUSTIC]>>> {
        check_words(words)?;
        Ok(match audio {
            Some((a, timings)) => {
                features::validate(&a, timings, words.len())?;
                Some(features::word_features(&a, timings))
            }
            None => None,
        })
    }

    fn render(&self, words: &[String], probs: &[f32]) -> Punctuated {
        let labels = self.labels();
        let nl = labels.len();
        let mut out = Vec::with_capacity(words.len());
        for (w, p) in words.iter().zip(probs.chunks_exact(nl)) {
            let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |b| b.0);
            out.push(WordLabel { word: w.clone(), label: labels[best].clone(), probabilities: p.to_vec() });
        }
        Punctuated { text: render_text(&out), words: out }
    }
}

/// The punctuation mark a label stands for.
pub fn mark(label: &str) -> &'static str {
    match label {
        "comma" => ",",
        "period" => ".",
        "question" => "?",
        "exclamation" => "!",
        _ => "",
    }
}

/// Joins labelled words into text: the mark after each word, a capital at the start and after
/// a sentence end, and the pronoun "i" (and "i'm", "i'll", ...) capitalized.
pub fn render_text(words: &[WordLabel]) -> String {
    let mut text = String::new();
    let mut capital = true;
    for w in words {
        if !text.is_empty() {
            text.push(' ');
        }
        let lower = w.word.to_lowercase();
        let pronoun = lower == "i" || lower.starts_with("i'");
        let mut chars = w.word.chars();
        if capital || pronoun {
            if let Some(c) = chars.next() {
                text.extend(c.to_uppercase());
            }
        }
        text.push_str(chars.as_str());
        text.push_str(mark(&w.label));
        capital = matches!(w.label.as_str(), "period" | "question" | "exclamation");
    }
    text
}

fn check_words(words: &[String]) -> Result<()> {
    if words.is_empty() {
        return Err(Error::InvalidArgument("no words to punctuate: the text is empty".into()));
    }
    if words.len() > MAX_WORDS {
        return Err(Error::InvalidArgument(format!(
            "{} words: at most {MAX_WORDS} per call (split the text)",
            words.len()
        )));
    }
    if let Some(i) = words.iter().position(|w| w.is_empty() || w.chars().any(char::is_whitespace)) {
        return Err(Error::InvalidArgument(format!("word {i} ({:?}) is empty or contains whitespace", words[i])));
    }
    Ok(())
}

/// Splits text into words on whitespace.
pub fn split_words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}
