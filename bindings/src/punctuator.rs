//! `Punctuator`: punctuation and capitals for speech-recognition text, from the words alone or
//! with the utterance's audio and the word timings the app's ASR returned. Small and fast
//! (about 290 KB, well under a millisecond per utterance), so one instance serves a whole app.

use crate::error::PocketLmError;
use crate::guard;
use pocketlm_core::punct::{self, Audio, WordTiming};
use std::sync::Arc;

/// When a word was spoken, in seconds from the start of the audio.
#[derive(Debug, Clone, uniffi::Record)]
pub struct WordTime {
    pub start_seconds: f32,
    pub end_seconds: f32,
}

/// Mono audio of the utterance and one timing per word.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PunctuationAudio {
    /// Samples in [-1, 1] (use `punctuation_audio_from_pcm16` for 16-bit PCM).
    pub samples: Vec<f32>,
    /// 8000 to 48000 Hz (16000 and 22050 are typical).
    pub sample_rate: u32,
    pub timings: Vec<WordTime>,
}

/// One word's prediction.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PunctuatedWord {
    pub word: String,
    /// "none", "comma", "period" or "question".
    pub label: String,
    /// The probability of each of `Punctuator.labels()`, in that order.
    pub probabilities: Vec<f32>,
}

#[derive(Debug, Clone, uniffi::Record)]
pub struct PunctuationResult {
    /// The words with punctuation and sentence capitals: "Hey, Anna. How are you?"
    pub text: String,
    pub words: Vec<PunctuatedWord>,
    /// Whether the audio was used (false: text only).
    pub used_audio: bool,
}

/// 16-bit PCM to the float samples `PunctuationAudio` holds.
#[uniffi::export]
pub fn punctuation_audio_from_pcm16(pcm: Vec<i16>, sample_rate: u32, timings: Vec<WordTime>) -> PunctuationAudio {
    PunctuationAudio { samples: pcm.iter().map(|&v| v as f32 / 32768.0).collect(), sample_rate, timings }
}

#[derive(uniffi::Object)]
pub struct Punctuator {
    inner: punct::Punctuator,
}

#[uniffi::export]
impl Punctuator {
    /// Opens a punctuation model file (GGUF, architecture "punct-qrnn").
    #[uniffi::constructor]
    pub fn load(path: String) -> Result<Arc<Punctuator>, PocketLmError> {
        guard(|| Ok(Arc::new(Punctuator { inner: punct::Punctuator::load(&path)? })))
    }

    /// The English model built into the library: nothing to bundle or download.
    #[uniffi::constructor]
    pub fn builtin() -> Result<Arc<Punctuator>, PocketLmError> {
        guard(|| Ok(Arc::new(Punctuator { inner: punct::Punctuator::builtin()? })))
    }

    /// The labels the probabilities refer to, in order ("none" first).
    pub fn labels(&self) -> Vec<String> {
        self.inner.labels().to_vec()
    }

    /// Punctuates `words` (one per ASR word; case is ignored). With `audio`, its pauses, pitch
    /// and timing are used; without, the text alone decides. Errors name the problem: no words,
    /// a word with whitespace, timings that do not match the words or lie outside the audio,
    /// NaN samples, an unsupported sample rate.
    #[uniffi::method(default(audio = None))]
    pub fn punctuate(
        &self,
        words: Vec<String>,
        audio: Option<PunctuationAudio>,
    ) -> Result<PunctuationResult, PocketLmError> {
        guard(|| {
            let timings: Vec<WordTiming> = audio
                .iter()
                .flat_map(|a| &a.timings)
                .map(|t| WordTiming { start: t.start_seconds, end: t.end_seconds })
                .collect();
            let input =
                audio.as_ref().map(|a| (Audio { samples: &a.samples, sample_rate: a.sample_rate }, timings.as_slice()));
            let out = self.inner.punctuate(&words, input)?;
            Ok(PunctuationResult {
                text: out.text,
                words: out
                    .words
                    .into_iter()
                    .map(|w| PunctuatedWord { word: w.word, label: w.label, probabilities: w.probabilities })
                    .collect(),
                used_audio: audio.is_some(),
            })
        })
    }

    /// Splits `text` on whitespace and punctuates it (text only).
    pub fn punctuate_text(&self, text: String) -> Result<PunctuationResult, PocketLmError> {
        self.punctuate(punct::split_words(&text), None)
    }
}
