//! Helpers shared by the subcommands.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pocketlm_core::convert::Progress;
use pocketlm_core::model::AlibiScaling;
use pocketlm_core::tokenizer::TokenizerSpec;
use pocketlm_core::{Error, Model};
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

/// `--alibi-scaling none|dynamic|fixed:FACTOR` with `--alibi-train-len N` (default: the model's
/// training context): the interpolation `run` and `perplexity` apply to a model that has none.
pub fn parse_scaling(s: &str, train_len: Option<usize>, model: &Model) -> pocketlm_core::Result<AlibiScaling> {
    let train = train_len.unwrap_or(model.hparams.n_ctx_train);
    if train == 0 {
        return Err(Error::InvalidArgument("--alibi-train-len must be at least 1".into()));
    }
    match s {
        "none" => Ok(AlibiScaling::None),
        "dynamic" => Ok(AlibiScaling::Dynamic { train_seq_len: train }),
        f if f.starts_with("fixed:") => {
            f[6..].parse::<f32>().ok().filter(|v| v.is_finite() && *v > 0.0).map(AlibiScaling::Fixed).ok_or_else(|| {
                Error::InvalidArgument(format!("--alibi-scaling {f}: expected fixed:FACTOR with a finite FACTOR > 0"))
            })
        }
        other => Err(Error::InvalidArgument(format!("--alibi-scaling {other:?}: use none, dynamic or fixed:FACTOR"))),
    }
}
