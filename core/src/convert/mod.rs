//! Hugging Face BTLM folder -> one self-contained GGUF (weights, hyperparameters, tokenizer).

pub(crate) mod checkpoint;
pub mod encode;
pub mod hf_config;
pub mod preset;
pub mod requantize;
pub mod synth;
mod tokenizer_files;
pub mod writer;

pub use checkpoint::Checkpoint;
pub use hf_config::{parse_config, HfConfig};
pub use preset::Preset;
pub use requantize::requantize;
pub use writer::{tensor_names, write_model, ModelSpec, Progress};

use crate::error::{ConvertError, Error, Result};
use crate::model::{names, HParams};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub model_dir: PathBuf,
    pub out: PathBuf,
    pub preset: Preset,
    /// tokenizer.json to use when the folder has none.
    pub tokenizer: Option<PathBuf>,
    /// Zero-pad n_inner up to a multiple of this (exact). Quantized presets always pad to
    /// their block size so the FFN matrices stay quantized.
    pub pad_inner_to: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub hparams: HParams,
    pub n_tensors: usize,
    pub file_bytes: u64,
    /// The weight files read, in shard order.
    pub weights: Vec<PathBuf>,
    /// Where the tokenizer came from (`tokenizer.json`, `vocab.json + merges.txt`, a path).
    pub tokenizer: String,
    /// What the user should know about how the folder was read (e.g. safetensors chosen over
    /// a .bin beside it).
    pub notes: Vec<String>,
}

/// Where one GGUF tensor comes from.
struct Source {
    gguf_name: String,
    hf_name: String,
    /// GGUF-order dims before n_inner padding.
    unpadded: Vec<u64>,
    /// Conv1D weight stored [in, out]: transpose to GGUF's [out, in].
    transpose: bool,
}

/// Reads the model folder and writes the GGUF.
/// Largest `pad_inner_to` accepted: padding exists to reach a whole number of quantization
/// blocks (32, or Q4_K's 256), so a multiple past a few blocks only wastes memory, and an
/// absurd one would allocate without bound.
pub const MAX_PAD_INNER: usize = 4096;

pub fn convert(opts: &ConvertOptions, progress: &mut dyn FnMut(Progress)) -> Result<ConvertReport> {
    if let Some(p) = opts.pad_inner_to.filter(|&p| p == 0 || p > MAX_PAD_INNER) {
        return Err(Error::InvalidArgument(format!(
            "--pad-inner {p}: n_inner can be padded to a multiple of 1..={MAX_PAD_INNER} (a block size such as 32 or 256)"
        )));
    }
    let dir = &opts.model_dir;
    let cfg_path = dir.join("config.json");
    let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg = parse_config(&cfg_text).map_err(|e| match e {
        ConvertError::ConfigKey { key, why } => {
            ConvertError::Config { path: cfg_path.clone(), why: format!("key {key:?}: {why}") }
        }
        other => other,
    })?;
    let mut hp = cfg.hparams.clone();
    let (spec, tokenizer_source) = tokenizer_files::load(dir, opts.tokenizer.as_deref(), &cfg)?;
    // The vocabulary size comes from the files; config.json must agree with them.
    if spec.tokens.len() != hp.n_vocab {
        return Err(ConvertError::ConfigKey {
            key: "vocab_size".into(),
            why: format!(
                "config says {} but the tokenizer ({tokenizer_source}) has {} tokens",
                hp.n_vocab,
                spec.tokens.len()
            ),
        }
        .into());
    }

    let ckpt = Checkpoint::open(dir)?;
    let prefix = if ckpt.shape("transformer.wte.weight").is_some() { "transformer." } else { "" };
    // Slopes stored in the checkpoint win over the formula: a bf16 checkpoint rounds them,
    // and the reference code uses the stored values.
    let slopes_name = format!("{prefix}relative_pe.slopes");
    if ckpt.shape(&slopes_name).is_some() {
        let s = ckpt.read_f32(&slopes_name)?;
        if s.len() != hp.n_head {
            return Err(ConvertError::TensorShape {
                tensor: slopes_name,
                expected: vec![hp.n_head, 1],
                found: ckpt.shape(&format!("{prefix}relative_pe.slopes")).unwrap_or(&[]).to_vec(),
            }
            .into());
        }
        hp.alibi_slopes = s;
    }
    let sources = hf_sources(&hp, prefix);
    check_checkpoint_names(&ckpt, &sources, prefix)?;
    for s in &sources {
        let want = s.hf_shape();
        let found = ckpt.shape(&s.hf_name).ok_or_else(|| ConvertError::MissingTensor(s.hf_name.clone()))?;
        if found != want.as_slice() {
            return Err(
                ConvertError::TensorShape { tensor: s.hf_name.clone(), expected: want, found: found.to_vec() }.into()
            );
        }
    }
    hp.name = model_name(dir, &hp);
    let spec = ModelSpec { hp: &hp, tokenizer: &spec, preset: opts.preset, pad_inner_to: opts.pad_inner_to };
    let by_name: std::collections::HashMap<&str, &Source> = sources.iter().map(|s| (s.gguf_name.as_str(), s)).collect();
    let written = write_model(
        &opts.out,
        &spec,
        &mut |name| {
            let s = by_name.get(name).ok_or_else(|| ConvertError::MissingTensor(name.into()))?;
            let data = ckpt.read_f32(&s.hf_name)?;
            if let Some((index, value)) = crate::ops::first_non_finite(&data) {
                return Err(ConvertError::NonFinite { tensor: s.hf_name.clone(), index, value }.into());
            }
            let hf = s.hf_shape();
            Ok(if s.transpose { encode::transpose(&data, hf[0], hf[1]) } else { data })
        },
        progress,
    )?;
    let file_bytes = std::fs::metadata(&opts.out).map(|m| m.len()).unwrap_or(0);
    Ok(ConvertReport {
        n_tensors: sources.len(),
        hparams: written,
        file_bytes,
        weights: ckpt.files().map(Path::to_path_buf).collect(),
        tokenizer: tokenizer_source,
        notes: ckpt.notes().to_vec(),
    })
}

/// Where each GGUF tensor comes from in the checkpoint.
fn hf_sources(hp: &HParams, prefix: &str) -> Vec<Source> {
    let (e, f, v) = (hp.n_embd as u64, hp.n_inner as u64, hp.n_vocab as u64);
    let mut out = Vec::new();
    let mut add = |gguf: String, hf: String, transpose: bool| {
        let unpadded = names::expected_dims(&gguf, e, f, v).unwrap_or_default();
        out.push(Source { gguf_name: gguf, hf_name: hf, unpadded, transpose });
    };
    add(names::TOKEN_EMBD.into(), format!("{prefix}wte.weight"), false);
    for i in 0..hp.n_layer {
        for (g, h, t) in names::LAYER_TENSORS {
            add(names::layer(i, g), format!("{prefix}h.{i}.{h}"), t);
        }
    }
    add("output_norm.weight".into(), format!("{prefix}ln_f.weight"), false);
    add("output_norm.bias".into(), format!("{prefix}ln_f.bias"), false);
    out
}

impl Source {
    /// The shape the checkpoint stores: Conv1D weights are [in, out], i.e. GGUF order.
    fn hf_shape(&self) -> Vec<usize> {
        let d: Vec<usize> = self.unpadded.iter().map(|&x| x as usize).collect();
        match (d.len(), self.transpose) {
            (2, false) => vec![d[1], d[0]],
            _ => d,
        }
    }
}

/// Every checkpoint tensor must be one we convert or one we know to skip.
fn check_checkpoint_names(ckpt: &Checkpoint, sources: &[Source], prefix: &str) -> Result<()> {
    let wanted: std::collections::HashSet<&str> = sources.iter().map(|s| s.hf_name.as_str()).collect();
    for name in ckpt.names() {
        let known_extra = name == format!("{prefix}relative_pe.slopes")
            || name.ends_with(".attn.bias")
            || name.ends_with(".attn.masked_bias")
            || name == "lm_head.weight";
        if !wanted.contains(name) && !known_extra {
            return Err(ConvertError::UnknownTensor(name.into()).into());
        }
    }
    // A tied head is stored twice in sharded saves and once, sharing wte's storage, in single
    // files; either way it must equal the embedding.
    if ckpt.shape("lm_head.weight").is_some() && !ckpt.same_data("lm_head.weight", &format!("{prefix}wte.weight"))? {
        return Err(ConvertError::UnknownTensor(
            "lm_head.weight (differs from wte: untied heads are not supported)".into(),
        )
        .into());
    }
    Ok(())
}

fn model_name(dir: &Path, hp: &HParams) -> String {
    if hp.name != "btlm" && !hp.name.is_empty() && !hp.name.starts_with('/') {
        return hp.name.clone();
    }
    dir.file_name().and_then(|n| n.to_str()).unwrap_or("btlm").to_string()
}
