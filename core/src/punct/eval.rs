//! Scoring a punctuation model on labelled utterances: micro-F1 over the punctuation classes
//! (every label but "none") and F1 per class, as the punctuation literature reports them; and
//! the pause perturbation that stands in for human pausing (used by evaluation here and, the
//! same family, by training's augmentation).

use super::features::N_ACOUSTIC;
use super::Punctuator;
use crate::error::Result;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// One labelled utterance with its measured acoustic features (a line of `features.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct Example {
    pub words: Vec<String>,
    pub labels: Vec<usize>,
    pub feats: Vec<[f32; N_ACOUSTIC]>,
}

/// True/false positives and false negatives per class.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    pub tp: Vec<u64>,
    pub fp: Vec<u64>,
    pub fn_: Vec<u64>,
    pub words: u64,
}

fn f1(tp: u64, fp: u64, fn_: u64) -> f64 {
    if tp == 0 {
        return 0.0;
    }
    let p = tp as f64 / (tp + fp) as f64;
    let r = tp as f64 / (tp + fn_) as f64;
    2.0 * p * r / (p + r)
}

impl Scores {
    fn new(n: usize) -> Self {
        Scores { tp: vec![0; n], fp: vec![0; n], fn_: vec![0; n], words: 0 }
    }

    fn add(&mut self, gold: usize, pred: usize) {
        self.words += 1;
        if gold == pred {
            self.tp[gold] += 1;
        } else {
            self.fp[pred] += 1;
            self.fn_[gold] += 1;
        }
    }

    /// Micro-F1 over the punctuation classes (class 0, "none", is not counted).
    pub fn micro_f1(&self) -> f64 {
        let s = |v: &[u64]| v[1..].iter().sum::<u64>();
        f1(s(&self.tp), s(&self.fp), s(&self.fn_))
    }

    pub fn class_f1(&self, c: usize) -> f64 {
        f1(self.tp[c], self.fp[c], self.fn_[c])
    }
}

/// Scores `p` on `data`: with the acoustic features or text-only, over every word and over
/// every word but each utterance's last (whose label is trivially a sentence end here).
pub fn score(p: &Punctuator, data: &[Example], text_only: bool) -> Result<(Scores, Scores)> {
    let n = p.labels().len();
    let (mut all, mut inner) = (Scores::new(n), Scores::new(n));
    for ex in data {
        let feats = (!text_only).then_some(ex.feats.as_slice());
        let out = p.punctuate_features(&ex.words, feats)?;
        for (i, (w, &gold)) in out.words.iter().zip(&ex.labels).enumerate() {
            let pred = p.labels().iter().position(|l| *l == w.label).unwrap_or(0);
            let gold = gold.min(n - 1);
            all.add(gold, pred);
            if i + 1 < ex.words.len() {
                inner.add(gold, pred);
            }
        }
    }
    Ok((all, inner))
}

/// Pause features are ln(1 + seconds / 0.1): slot 0 is the pause after a word, slot 1 the
/// pause before it.
fn pause_of(f: f32) -> f32 {
    f.exp_m1() * 0.1
}
fn feature_of(pause: f32) -> f32 {
    (pause.clamp(0.0, 2.0) / 0.1).ln_1p()
}

/// Human-like pause noise: every pause scaled by U(0.5, 1.5), the pause removed at half of the
/// commas and 30 % of the sentence ends, and a 0.1-0.4 s hesitation added after 5 % of the
/// other words. Seeded, so an evaluation is repeatable.
pub fn perturb_pauses(data: &mut [Example], seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for ex in data {
        let n = ex.feats.len().min(ex.labels.len());
        for i in 0..n {
            let mut p = pause_of(ex.feats[i][0]) * rng.random_range(0.5..1.5);
            match ex.labels[i] {
                1 if rng.random_bool(0.5) => p = 0.0,
                2 if rng.random_bool(0.3) => p = 0.0,
                0 if rng.random_bool(0.05) => p += rng.random_range(0.1..0.4),
                _ => {}
            }
            ex.feats[i][0] = feature_of(p);
            if i + 1 < n {
                ex.feats[i + 1][1] = feature_of(p);
            }
        }
    }
}

/// Reads a JSON-lines file (one `T` per non-empty line); errors name the file and line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| crate::Error::InvalidArgument(format!("{} line {}: {e}", path.display(), i + 1)))
        })
        .collect()
}

/// Reads a `features.jsonl` (one [`Example`] per line).
pub fn read_examples(path: &std::path::Path) -> Result<Vec<Example>> {
    let examples: Vec<Example> = read_jsonl(path)?;
    for (i, ex) in examples.iter().enumerate() {
        if ex.words.len() != ex.labels.len() || ex.words.len() != ex.feats.len() {
            return Err(crate::Error::InvalidArgument(format!(
                "{} example {}: {} words, {} labels, {} feature rows",
                path.display(),
                i + 1,
                ex.words.len(),
                ex.labels.len(),
                ex.feats.len()
            )));
        }
    }
    Ok(examples)
}
