//! Writes a complete BTLM GGUF from any source of f32 tensors (a Hugging Face checkpoint, an
//! existing GGUF being requantized, or random weights), applying the type preset and the exact
//! zero-padding of n_inner. Tensors are produced, encoded and written one at a time.

use super::preset::Preset;
use crate::error::{Error, Result};
use crate::gguf::{write_gguf, MetaValue, TensorPlan};
use crate::model::{hparams::keys, hparams::ARCH, names, vocab, HParams};
use crate::quant::quantize_matrix;
use crate::tokenizer::TokenizerSpec;
use std::path::Path;

/// Progress of a write, one event per tensor.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub index: usize,
    pub total: usize,
    pub tensor: &'a str,
}

/// Every tensor name of a model with `n_layer` layers, in file order.
pub fn tensor_names(n_layer: usize) -> Vec<String> {
    let mut v = vec![names::TOKEN_EMBD.to_string()];
    for i in 0..n_layer {
        v.extend(names::LAYER_TENSORS.iter().map(|(g, _, _)| names::layer(i, g)));
    }
    v.push("output_norm.weight".into());
    v.push("output_norm.bias".into());
    v
}

/// What to write: `hp.n_inner` is the width the source delivers; the file gets it rounded up
/// to `pad_inner_to` (and to the preset's block when quantizing).
pub struct ModelSpec<'a> {
    pub hp: &'a HParams,
    pub tokenizer: &'a TokenizerSpec,
    pub preset: Preset,
    pub pad_inner_to: Option<usize>,
}

/// Writes the model; `source(name)` returns the tensor's values in GGUF order (row-major
/// [dims[1]][dims[0]]) at the source width. Returns the hyperparameters as written.
pub fn write_model(
    out: &Path,
    spec: &ModelSpec,
    source: &mut dyn FnMut(&str) -> Result<Vec<f32>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<HParams> {
    let src = spec.hp;
    let pad = spec.pad_inner_to.into_iter().chain(spec.preset.inner_block()).max().unwrap_or(1).max(1);
    let mut hp = src.clone();
    hp.n_inner = src.n_inner.div_ceil(pad) * pad;
    let (e, v) = (hp.n_embd as u64, hp.n_vocab as u64);

    let names = tensor_names(hp.n_layer);
    let mut plans = Vec::with_capacity(names.len());
    let mut src_dims = Vec::with_capacity(names.len());
    for name in &names {
        let dims = names::expected_dims(name, e, hp.n_inner as u64, v).unwrap_or_default();
        src_dims.push(names::expected_dims(name, e, src.n_inner as u64, v).unwrap_or_default());
        let ty = spec.preset.tensor_type(name, &dims);
        plans.push(TensorPlan { name: name.clone(), dims, ty });
    }

    let mut metadata: Vec<(String, MetaValue)> = vec![
        (keys::ARCHITECTURE.into(), MetaValue::Str(ARCH.into())),
        (keys::NAME.into(), MetaValue::Str(hp.name.clone())),
        (keys::FILE_TYPE.into(), MetaValue::U32(spec.preset.file_type())),
        (keys::QUANT_VERSION.into(), MetaValue::U32(2)),
    ];
    metadata.extend(hp.to_metadata());
    metadata.extend(vocab::to_metadata(spec.tokenizer));

    let total = plans.len();
    write_gguf(out, &metadata, &plans, |i, w| {
        let p = &plans[i];
        progress(Progress { index: i, total, tensor: &p.name });
        let data = source(&p.name)?;
        let sd = &src_dims[i];
        let expected: u64 = sd.iter().product();
        if data.len() as u64 != expected {
            return Err(Error::InvalidArgument(format!(
                "source gave {} values for {:?}, expected {expected} ({sd:?})",
                data.len(),
                p.name
            )));
        }
        let rows_of = |d: &[u64]| d.get(1).copied().unwrap_or(1) as usize;
        let data = super::encode::pad(&data, rows_of(sd), sd[0] as usize, rows_of(&p.dims), p.dims[0] as usize);
        let bytes = quantize_matrix(p.ty, &data, p.dims[0] as usize);
        w.write_all(&bytes).map_err(|e| Error::io(out, e))
    })?;
    Ok(hp)
}
