//! Trained weights (a folder with `model.safetensors` and `punct_config.json`, as
//! `scripts/punct/train.py` writes them) to a punctuation GGUF: matrices in Q8_0 (or F32, to
//! measure what int8 costs), vectors in F32. Tensor names are the GGUF names; safetensors
//! holds PyTorch's [out, in] order, which is GGUF's [in, out].

use super::features::N_ACOUSTIC;
use super::model::{ARCH, KWIDTH};
use crate::convert::checkpoint::Checkpoint;
use crate::error::{ConvertError, Error, Result};
use crate::gguf::{write_gguf, GgmlType, MetaValue, TensorPlan};
use crate::quant::{quantize_row, QK};
use serde::Deserialize;
use std::path::Path;

/// `punct_config.json`.
#[derive(Deserialize)]
pub struct PackConfig {
    pub projection_features: u32,
    pub bottleneck: u32,
    pub acoustic_width: u32,
    pub state: u32,
    pub layers: u32,
    pub labels: Vec<String>,
    #[serde(default)]
    pub name: String,
}

/// Writes `out` from the training folder `dir`; `ty` is Q8_0 or F32. Returns the tensor count.
pub fn pack(dir: &Path, out: &Path, ty: GgmlType) -> Result<usize> {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::F32) {
        return Err(Error::InvalidArgument(format!("--type {}: a punctuation model is q8_0 or f32", ty.name())));
    }
    let cfg_path = dir.join("punct_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg: PackConfig = serde_json::from_str(&text)
        .map_err(|e| ConvertError::Checkpoint { path: cfg_path.clone(), why: e.to_string() })?;
    let ck = Checkpoint::open(dir)?;

    let (p, b, a, s) =
        (cfg.projection_features as u64, cfg.bottleneck as u64, cfg.acoustic_width as u64, cfg.state as u64);
    let nl = cfg.labels.len() as u64;
    // (name, GGUF dims)
    let mut shapes: Vec<(String, Vec<u64>)> = vec![
        ("bottleneck.weight".into(), vec![p, b]),
        ("bottleneck.bias".into(), vec![b]),
        ("acoustic.weight".into(), vec![N_ACOUSTIC as u64, a]),
        ("acoustic.bias".into(), vec![a]),
        ("acoustic.mean".into(), vec![N_ACOUSTIC as u64]),
        ("acoustic.std".into(), vec![N_ACOUSTIC as u64]),
    ];
    for l in 0..cfg.layers as u64 {
        let cols = KWIDTH as u64 * if l == 0 { b + a } else { 2 * s };
        for d in ["fwd", "bwd"] {
            shapes.push((format!("qrnn.{l}.{d}.weight"), vec![cols, 3 * s]));
            shapes.push((format!("qrnn.{l}.{d}.bias"), vec![3 * s]));
        }
    }
    shapes.push(("output.weight".into(), vec![2 * s, nl]));
    shapes.push(("output.bias".into(), vec![nl]));

    let mut plans = Vec::new();
    let mut data = Vec::new();
    for (name, dims) in &shapes {
        let want: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        let got = ck.shape(name).ok_or_else(|| ConvertError::MissingTensor(name.clone()))?;
        if got != want.as_slice() {
            return Err(ConvertError::Checkpoint {
                path: dir.join("model.safetensors"),
                why: format!("tensor {name} has shape {got:?}, the config needs {want:?}"),
            }
            .into());
        }
        let v = ck.read_f32(name)?;
        if let Some((index, value)) = crate::ops::first_non_finite(&v) {
            let source = crate::error::GgufError::NonFiniteTensor { tensor: name.clone(), index, value };
            return Err(Error::Gguf { path: dir.join("model.safetensors"), source });
        }
        let t = if dims.len() == 2 && (dims[0] as usize).is_multiple_of(QK) { ty } else { GgmlType::F32 };
        let mut bytes = Vec::new();
        for row in v.chunks_exact(dims[0] as usize) {
            quantize_row(t, row, &mut bytes);
        }
        plans.push(TensorPlan { name: name.clone(), dims: dims.clone(), ty: t });
        data.push(bytes);
    }
    let u = |v: u32| MetaValue::U32(v);
    let meta = vec![
        ("general.architecture".to_string(), MetaValue::Str(ARCH.into())),
        (
            "general.name".to_string(),
            MetaValue::Str(if cfg.name.is_empty() { "punct".into() } else { cfg.name.clone() }),
        ),
        ("punct.projection_features".to_string(), u(cfg.projection_features)),
        ("punct.bottleneck".to_string(), u(cfg.bottleneck)),
        ("punct.acoustic_width".to_string(), u(cfg.acoustic_width)),
        ("punct.qrnn.state".to_string(), u(cfg.state)),
        ("punct.qrnn.layers".to_string(), u(cfg.layers)),
        ("punct.labels".to_string(), MetaValue::Array(cfg.labels.iter().map(|l| MetaValue::Str(l.clone())).collect())),
    ];
    write_gguf(out, &meta, &plans, |i, w| w.write_all(&data[i]).map_err(|e| Error::io(out, e)))?;
    Ok(plans.len())
}
