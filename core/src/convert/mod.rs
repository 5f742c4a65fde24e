//! Hugging Face BTLM folder -> one self-contained GGUF (weights, hyperparameters, tokenizer).

mod checkpoint;
pub mod encode;
pub mod hf_config;

pub use checkpoint::Checkpoint;
pub use hf_config::{parse_config, HfConfig};

use crate::error::{ConvertError, Error, Result};
use crate::gguf::{write_gguf, GgmlType, MetaValue, TensorPlan};
use crate::model::{hparams::keys, hparams::ARCH, names, vocab, HParams};
use crate::tokenizer::TokenizerSpec;
use std::path::{Path, PathBuf};

/// Weight type of the 2-D matrices in the output (vectors always stay F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
}

impl OutType {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(OutType::F32),
            "f16" => Ok(OutType::F16),
            other => Err(Error::InvalidArgument(format!("unknown output type {other:?} (use f32 or f16)"))),
        }
    }

    pub fn ggml(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 => GgmlType::F16,
        }
    }

    /// llama.cpp's `general.file_type` value for this type.
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub model_dir: PathBuf,
    pub out: PathBuf,
    pub out_type: OutType,
    /// tokenizer.json to use when the folder has none.
    pub tokenizer: Option<PathBuf>,
    /// Zero-pad n_inner up to a multiple of this (exact; lets block formats cover the FFN).
    pub pad_inner_to: Option<usize>,
}

/// Progress of a conversion, one event per tensor written.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub index: usize,
    pub total: usize,
    pub tensor: &'a str,
}

#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub hparams: HParams,
    pub n_tensors: usize,
    pub file_bytes: u64,
}

/// Where one GGUF tensor comes from.
struct Source {
    hf_name: String,
    /// GGUF-order dims before n_inner padding.
    unpadded: Vec<u64>,
    /// Conv1D weight stored [in, out]: transpose to GGUF's [out, in].
    transpose: bool,
}

/// Reads the model folder and writes the GGUF.
pub fn convert(opts: &ConvertOptions, progress: &mut dyn FnMut(Progress)) -> Result<ConvertReport> {
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
    let tok_path = match (dir.join("tokenizer.json"), &opts.tokenizer) {
        (_, Some(p)) => p.clone(),
        (p, None) if p.exists() => p,
        _ => return Err(ConvertError::NoTokenizer(dir.clone()).into()),
    };
    let tok_text = std::fs::read_to_string(&tok_path).map_err(|e| Error::io(&tok_path, e))?;
    let mut spec = TokenizerSpec::from_hf_json(&tok_text)?;
    spec.bos_id = cfg.bos_token_id.or(spec.bos_id);
    spec.eos_id = cfg.eos_token_id.or(spec.eos_id);
    if spec.tokens.len() != hp.n_vocab {
        return Err(ConvertError::ConfigKey {
            key: "vocab_size".into(),
            why: format!("config says {} but {} has {} tokens", hp.n_vocab, tok_path.display(), spec.tokens.len()),
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
    let f_orig = hp.n_inner;
    hp.n_inner = match opts.pad_inner_to {
        Some(m) if m > 1 => f_orig.div_ceil(m) * m,
        _ => f_orig,
    };
    hp.n_inner_original = f_orig;

    // Plan every output tensor and where it comes from.
    let mut plans = Vec::new();
    let mut sources = Vec::new();
    let (e, f, v) = (hp.n_embd as u64, hp.n_inner as u64, hp.n_vocab as u64);
    let mut add = |gguf: String, hf: String, transpose: bool| {
        let dims = names::expected_dims(&gguf, e, f, v).unwrap_or_default();
        let unpadded = names::expected_dims(&gguf, e, f_orig as u64, v).unwrap_or_default();
        let ty = if dims.len() == 2 { opts.out_type.ggml() } else { GgmlType::F32 };
        plans.push(TensorPlan { name: gguf, dims, ty });
        sources.push(Source { hf_name: hf, unpadded, transpose });
    };
    add(names::TOKEN_EMBD.into(), format!("{prefix}wte.weight"), false);
    for i in 0..hp.n_layer {
        for (g, h, t) in names::LAYER_TENSORS {
            add(names::layer(i, g), format!("{prefix}h.{i}.{h}"), t);
        }
    }
    add("output_norm.weight".into(), format!("{prefix}ln_f.weight"), false);
    add("output_norm.bias".into(), format!("{prefix}ln_f.bias"), false);

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

    let mut metadata: Vec<(String, MetaValue)> = vec![
        (keys::ARCHITECTURE.into(), MetaValue::Str(ARCH.into())),
        (keys::NAME.into(), MetaValue::Str(model_name(dir, &hp))),
        (keys::FILE_TYPE.into(), MetaValue::U32(opts.out_type.file_type())),
        (keys::QUANT_VERSION.into(), MetaValue::U32(2)),
    ];
    metadata.extend(hp.to_metadata());
    metadata.extend(vocab::to_metadata(&spec));

    let total = plans.len();
    write_gguf(&opts.out, &metadata, &plans, |i, w| {
        progress(Progress { index: i, total, tensor: &plans[i].name });
        let p = &plans[i];
        let s = &sources[i];
        let mut data = ckpt.read_f32(&s.hf_name)?;
        let hf = s.hf_shape();
        if s.transpose {
            data = encode::transpose(&data, hf[0], hf[1]);
        }
        // Now in GGUF order: unpadded[1] rows of unpadded[0]; zero-pad to the planned dims.
        let rows_of = |d: &[u64]| d.get(1).copied().unwrap_or(1) as usize;
        data = encode::pad(&data, rows_of(&s.unpadded), s.unpadded[0] as usize, rows_of(&p.dims), p.dims[0] as usize);
        encode::write_as(&data, p.ty, w).map_err(|e| Error::io(&opts.out, e))
    })?;
    let file_bytes = std::fs::metadata(&opts.out).map(|m| m.len()).unwrap_or(0);
    Ok(ConvertReport { hparams: hp, n_tensors: total, file_bytes })
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
    if ckpt.shape("lm_head.weight").is_some() {
        let (head, wte) = (ckpt.read_f32("lm_head.weight")?, ckpt.read_f32(&format!("{prefix}wte.weight"))?);
        if head != wte {
            return Err(ConvertError::UnknownTensor(
                "lm_head.weight (differs from wte: untied heads are not supported)".into(),
            )
            .into());
        }
    }
    Ok(())
}

fn model_name(dir: &Path, hp: &HParams) -> String {
    if hp.name != "btlm" && !hp.name.is_empty() && !hp.name.starts_with('/') {
        return hp.name.clone();
    }
    dir.file_name().and_then(|n| n.to_str()).unwrap_or("btlm").to_string()
}
