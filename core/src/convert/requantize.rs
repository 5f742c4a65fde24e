//! GGUF -> GGUF with another type preset (`pocketlm quantize`): every tensor is decoded to f32
//! and re-encoded. Metadata (hyperparameters, tokenizer) carries over unchanged.

use super::preset::Preset;
use super::writer::{write_model, ModelSpec, Progress};
use crate::error::{GgufError, Result};
use crate::gguf::{GgmlType, GgufFile};
use crate::model::{vocab, HParams};
use crate::quant::dequantize_tensor_row;
use std::path::Path;

pub fn requantize(input: &Path, out: &Path, preset: Preset, progress: &mut dyn FnMut(Progress)) -> Result<HParams> {
    let file = GgufFile::open(input)?;
    let mut hp = HParams::from_gguf(&file.header).map_err(|e| file.err(e))?;
    let spec = vocab::from_gguf(&file.header).map_err(|e| file.err(e))?;
    hp.n_vocab = spec.tokens.len();
    let model_spec = ModelSpec { hp: &hp, tokenizer: &spec, preset, pad_inner_to: None };
    write_model(
        out,
        &model_spec,
        &mut |name| {
            let t = file.header.tensor(name).ok_or_else(|| file.err(GgufError::MissingTensor(name.into())))?;
            let cols = t.dims[0] as usize;
            let rows = (t.n_elements() / t.dims[0]) as usize;
            if !crate::quant::is_weight_type(t.ty) {
                return Err(file.err(GgufError::UnsupportedTensorType { tensor: name.into(), ty: t.ty.name().into() }));
            }
            if t.ty == GgmlType::Q4_0R16 {
                if let Some(ty) = crate::quant::interleave::refusal(rows as u64, false) {
                    return Err(file.err(GgufError::UnsupportedTensorType { tensor: name.into(), ty }));
                }
            }
            let bytes = file.tensor_bytes(t);
            let mut data = vec![0f32; rows * cols];
            for (r, o) in data.chunks_exact_mut(cols).enumerate() {
                dequantize_tensor_row(t.ty, bytes, cols, r, o);
            }
            if let Some((index, value)) = crate::ops::first_non_finite(&data) {
                return Err(file.err(GgufError::NonFiniteTensor { tensor: name.into(), index, value }));
            }
            Ok(data)
        },
        progress,
    )
}
