//! The sampling options `run` and `chat` share, spelled as llama.cpp spells them.

use pocketlm_core::sampling::SamplingParams;

#[derive(clap::Args)]
pub struct SamplingArgs {
    /// Sampling temperature (0 = greedy)
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of each token in the last --repeat-last-n (OpenAI's)
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Subtracted from a logit per occurrence in the last --repeat-last-n (OpenAI's)
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    #[arg(long, default_value_t = 0xC0FFEE)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        }
    }
}

/// Speculative decoding by prompt lookup (`run`, `chat` and `serve`).
#[derive(clap::Args)]
pub struct DraftArgs {
    /// Draft up to N tokens per step from earlier text (prompt lookup) and verify them in one
    /// pass; the output is the same as without
    #[arg(long, default_value_t = pocketlm_core::session::DEFAULT_DRAFT as u64,
          value_parser = clap::value_parser!(u64).range(0..=pocketlm_core::session::MAX_DRAFT as u64))]
    pub draft: u64,
    /// Turn speculative decoding off (same as --draft 0)
    #[arg(long, conflicts_with = "draft")]
    pub no_draft: bool,
}

impl DraftArgs {
    pub fn tokens(&self) -> usize {
        if self.no_draft {
            0
        } else {
            self.draft as usize
        }
    }
}
