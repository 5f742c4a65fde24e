//! Helpers shared by the subcommands.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pocketlm_core::convert::Progress;
use pocketlm_core::tokenizer::TokenizerSpec;
use pocketlm_core::Error;
use std::path::Path;

/// A tensor-count progress bar on stderr (hidden when stderr is not a terminal).
pub fn tensor_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

pub fn on_progress(bar: &ProgressBar) -> impl FnMut(Progress) + '_ {
    move |p| {
        bar.set_length(p.total as u64);
        bar.set_position(p.index as u64);
        bar.set_message(p.tensor.to_string());
    }
}

/// The GPT-2 tokenizer BTLM uses, built into the binary so `synth` works anywhere.
const GPT2_TOKENIZER: &str = include_str!("../assets/gpt2-tokenizer.json");

pub fn tokenizer_spec(path: Option<&Path>) -> pocketlm_core::Result<TokenizerSpec> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| Error::Io { path: p.to_path_buf(), source: e })?,
        None => GPT2_TOKENIZER.to_string(),
    };
    Ok(TokenizerSpec::from_hf_json(&text)?)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}
