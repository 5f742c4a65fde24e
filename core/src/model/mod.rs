//! A BTLM model: hyperparameters, tokenizer and weight views into the memory-mapped GGUF.

mod forward;
pub mod hparams;
pub mod names;
pub mod vocab;

pub use forward::{Cancelled, Logits};
pub use hparams::{alibi_slopes, AlibiScaling, HParams};

use crate::constraint::ConstraintEngine;
use crate::error::{Error, GgufError, Result};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use crate::ops::matmul::MatRef;
use crate::tokenizer::Tokenizer;
use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A 2-D weight: byte range in the map plus geometry.
#[derive(Debug, Clone)]
struct Matrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: Range<usize>,
}

/// A learned vector (bias or norm gain), always f32 in the file.
#[derive(Debug, Clone)]
struct Vector(Range<usize>);

#[derive(Debug, Clone)]
struct Linear {
    w: Matrix,
    b: Vector,
}

#[derive(Debug, Clone)]
struct Norm {
    w: Vector,
    b: Vector,
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Norm,
    qkv: Linear,
    attn_out: Linear,
    ffn_norm: Norm,
    up: Linear,
    gate: Linear,
    down: Linear,
}

/// Weight types the forward pass can compute with.
pub fn is_supported_weight_type(ty: GgmlType) -> bool {
    crate::quant::is_weight_type(ty)
}

pub struct Model {
    pub file: GgufFile,
    pub hparams: HParams,
    pub tokenizer: Tokenizer,
    tok_embd: Matrix,
    out_norm: Norm,
    layers: Vec<Layer>,
    /// Built on the first constrained generation (a few tens of milliseconds), then shared.
    constraints: OnceLock<std::result::Result<Arc<ConstraintEngine>, String>>,
}

impl Model {
    /// Opens and validates a BTLM GGUF: every tensor present, of the right shape and a
    /// supported type, and nothing else. Tensor data stays in the map (no copy).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let mut hparams = HParams::from_gguf(&file.header).map_err(|e| file.err(e))?;
        let spec = vocab::from_gguf(&file.header).map_err(|e| file.err(e))?;
        hparams.n_vocab = spec.tokens.len();
        let tokenizer = Tokenizer::from_spec(&spec)?;
        let (tok_embd, out_norm, layers) = Loader::new(&file, &hparams).load().map_err(|e| file.err(e))?;
        Ok(Model { file, hparams, tokenizer, tok_embd, out_norm, layers, constraints: OnceLock::new() })
    }

    /// The vocabulary indexed for constrained decoding (JSON schemas, grammars).
    pub fn constraint_engine(&self) -> Result<Arc<ConstraintEngine>> {
        let built = self.constraints.get_or_init(|| {
            ConstraintEngine::new(&self.tokenizer).map(Arc::new).map_err(|e| match e {
                Error::Constraint(why) => why,
                other => other.to_string(),
            })
        });
        built.clone().map_err(Error::Constraint)
    }

    fn mat(&self, m: &Matrix) -> MatRef<'_> {
        MatRef { ty: m.ty, rows: m.rows, cols: m.cols, data: &self.map()[m.bytes.clone()] }
    }

    fn vector(&self, v: &Vector) -> &[f32] {
        bytemuck::cast_slice(&self.map()[v.0.clone()])
    }

    fn map(&self) -> &[u8] {
        self.file.bytes()
    }

    pub fn n_layer(&self) -> usize {
        self.layers.len()
    }

    /// Bytes of weights read per generated token (all matrices except the embedding, which is
    /// read one row per token, plus the LM head, which is the embedding read in full).
    pub fn weight_bytes(&self) -> u64 {
        self.file.header.tensors.iter().map(|t| t.n_bytes).sum()
    }
}

/// Looks up tensors by name, checks shape and type, and records which ones were used so that a
/// file with extra tensors is rejected rather than half-understood.
struct Loader<'a> {
    file: &'a GgufFile,
    hp: &'a HParams,
    seen: HashSet<&'a str>,
}

impl<'a> Loader<'a> {
    fn new(file: &'a GgufFile, hp: &'a HParams) -> Self {
        Loader { file, hp, seen: HashSet::new() }
    }

    fn find(&mut self, name: &str) -> Result<&'a TensorInfo, GgufError> {
        let t = self.file.header.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.into()))?;
        let (e, f, v) = (self.hp.n_embd as u64, self.hp.n_inner as u64, self.hp.n_vocab as u64);
        let expected = names::expected_dims(name, e, f, v).unwrap_or_default();
        if t.dims != expected {
            return Err(GgufError::ShapeMismatch { tensor: name.into(), expected, found: t.dims.clone() });
        }
        self.seen.insert(&t.name);
        Ok(t)
    }

    fn range(&self, t: &TensorInfo) -> Range<usize> {
        self.file.header.tensor_range(t)
    }

    fn matrix(&mut self, name: &str) -> Result<Matrix, GgufError> {
        let t = self.find(name)?;
        if !is_supported_weight_type(t.ty) {
            return Err(GgufError::UnsupportedTensorType { tensor: name.into(), ty: t.ty.name().into() });
        }
        if t.ty == GgmlType::Q4_0R16 {
            if let Some(ty) = crate::quant::interleave::refusal(t.dims[1], name == names::TOKEN_EMBD) {
                return Err(GgufError::UnsupportedTensorType { tensor: name.into(), ty });
            }
        }
        Ok(Matrix { ty: t.ty, cols: t.dims[0] as usize, rows: t.dims[1] as usize, bytes: self.range(t) })
    }

    fn vector(&mut self, name: &str) -> Result<Vector, GgufError> {
        let t = self.find(name)?;
        if t.ty != GgmlType::F32 {
            return Err(GgufError::UnsupportedTensorType {
                tensor: name.into(),
                ty: format!("{} (vectors must be F32)", t.ty),
            });
        }
        let range = self.range(t);
        // Cheap (vectors are a few KB) and worth it: one NaN in a norm or bias turns every
        // output into NaN. The big matrices are checked when they are written (convert,
        // quantize) and, at run time, through the logits.
        let floats: Vec<f32> = self.file.bytes()[range.clone()]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some((index, value)) = crate::ops::first_non_finite(&floats) {
            return Err(GgufError::NonFiniteTensor { tensor: name.into(), index, value });
        }
        Ok(Vector(range))
    }

    fn linear(&mut self, i: usize, what: &str) -> Result<Linear, GgufError> {
        let w = self.matrix(&names::layer(i, &format!("{what}.weight")))?;
        let b = self.vector(&names::layer(i, &format!("{what}.bias")))?;
        Ok(Linear { w, b })
    }

    fn norm(&mut self, prefix: &str) -> Result<Norm, GgufError> {
        Ok(Norm { w: self.vector(&format!("{prefix}.weight"))?, b: self.vector(&format!("{prefix}.bias"))? })
    }

    fn load(mut self) -> Result<(Matrix, Norm, Vec<Layer>), GgufError> {
        let tok_embd = self.matrix(names::TOKEN_EMBD)?;
        let out_norm = self.norm(names::OUTPUT_NORM)?;
        let mut layers = Vec::with_capacity(self.hp.n_layer);
        for i in 0..self.hp.n_layer {
            layers.push(Layer {
                attn_norm: self.norm(&format!("blk.{i}.attn_norm"))?,
                qkv: self.linear(i, "attn_qkv")?,
                attn_out: self.linear(i, "attn_output")?,
                ffn_norm: self.norm(&format!("blk.{i}.ffn_norm"))?,
                up: self.linear(i, "ffn_up")?,
                gate: self.linear(i, "ffn_gate")?,
                down: self.linear(i, "ffn_down")?,
            });
        }
        if let Some(extra) = self.file.header.tensors.iter().find(|t| !self.seen.contains(t.name.as_str())) {
            return Err(GgufError::UnexpectedTensor(extra.name.clone()));
        }
        Ok((tok_embd, out_norm, layers))
    }
}
