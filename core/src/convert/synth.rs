//! Random-weight BTLM models of real shapes (`pocketlm synth`): benchmark the full-size model
//! without the checkpoint, or run quick tests on small ones. Weights are seeded and generated
//! in fixed-size chunks, so the same seed gives the same file whatever the thread count.

use super::preset::Preset;
use super::writer::{write_model, ModelSpec, Progress};
use crate::error::{Error, Result};
use crate::model::{alibi_slopes, AlibiScaling, HParams};
use crate::tokenizer::TokenizerSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::Path;

/// Model shapes `synth` knows.
pub const SHAPES: [(&str, usize, usize, usize, usize, usize); 3] = [
    // name, n_embd, n_layer, n_head, n_inner, n_ctx_train
    ("btlm-3b-8k", 2560, 32, 32, 6826, 8192),
    ("btlm-small", 256, 4, 8, 682, 2048),
    ("btlm-tiny", 64, 2, 4, 170, 128),
];

/// Hyperparameters of a named shape, with BTLM-3B's muP constants.
pub fn shape(name: &str, n_vocab: usize) -> Result<HParams> {
    let &(_, e, l, h, f, ctx) = SHAPES.iter().find(|s| s.0 == name).ok_or_else(|| {
        let names: Vec<&str> = SHAPES.iter().map(|s| s.0).collect();
        Error::InvalidArgument(format!("unknown preset {name:?} (one of: {})", names.join(", ")))
    })?;
    Ok(HParams {
        name: format!("{name}-synthetic"),
        n_vocab,
        n_ctx_train: ctx,
        n_embd: e,
        n_layer: l,
        n_head: h,
        n_inner: f,
        n_inner_original: f,
        ln_eps: 1e-5,
        qk_scale: 1.0 / (e / h) as f32,
        emb_scale: 14.6,
        out_scale: 0.222,
        alibi_slopes: alibi_slopes(h),
        alibi_scaling: AlibiScaling::None,
    })
}

const CHUNK: usize = 1 << 16;

/// Uniform values with standard deviation `std` (uniform is as good as normal for timing and
/// several times cheaper to draw), offset by `mean`.
fn random_tensor(seed: u64, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let a = std * 3f32.sqrt();
    let mut v = vec![0f32; n];
    v.par_chunks_mut(CHUNK).enumerate().for_each(|(i, c)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        c.iter_mut().for_each(|x| *x = mean + rng.random_range(-a..a));
    });
    v
}

fn name_seed(seed: u64, name: &str) -> u64 {
    name.bytes().fold(seed ^ 0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01B3))
}

/// Writes a random-weight model of `shape_name` with `preset` types.
pub fn synth(
    shape_name: &str,
    preset: Preset,
    seed: u64,
    tokenizer: &TokenizerSpec,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<HParams> {
    let hp = shape(shape_name, tokenizer.tokens.len())?;
    let spec = ModelSpec { hp: &hp, tokenizer, preset, pad_inner_to: None };
    let (e, f, v) = (hp.n_embd, hp.n_inner, hp.n_vocab);
    write_model(
        out,
        &spec,
        &mut |name| {
            let s = name_seed(seed, name);
            let n = crate::model::names::expected_dims(name, e as u64, f as u64, v as u64)
                .map(|d| d.iter().product::<u64>() as usize)
                .unwrap_or(0);
            // Scales of a trained muP model: unit-gain norms, small biases, matrices whose
            // outputs stay O(1) after LayerNorm.
            Ok(if name.ends_with("norm.weight") {
                random_tensor(s, n, 1.0, 0.05)
            } else if name.ends_with(".bias") {
                random_tensor(s, n, 0.0, 0.01)
            } else if name == crate::model::names::TOKEN_EMBD {
                random_tensor(s, n, 0.0, 0.05)
            } else {
                random_tensor(s, n, 0.0, 1.0 / (e as f32).sqrt())
            })
        },
        progress,
    )
}
