//! The punctuation model's weights and forward pass, top to bottom: ternary word projection ->
//! bottleneck (dense + ReLU), acoustic features -> dense + ReLU, concatenated (early fusion) ->
//! bidirectional QRNN layers (width-3 convolutions, fo-pooling) -> per-word classifier.
//!
//! Matrices are Q8_0 (int8 with one scale per 32 weights) and run through the LLM's own int8
//! gemm kernels (scalar reference, AVX2/VNNI/AVX-512, NEON/dotprod/i8mm) with activations
//! rounded to int8 per 32 values; the ternary projection is exact in int8. F32 files run the
//! same pass in float, which is how the quantization's cost is measured.

use super::features::N_ACOUSTIC;
use crate::error::Error;
use crate::error::{GgufError, Result};
use crate::gguf::{GgmlType, GgufHeader, TensorInfo};
use crate::kernels::Kernels;
use crate::quant::{BlockQ8A, BlockQ8_0, QK};
use half::f16;
use std::path::Path;

/// The architecture key a punctuation GGUF carries.
pub const ARCH: &str = "punct-qrnn";

/// A dense layer `y = x Wᵀ + b`, W stored [rows][cols].
pub(crate) struct Linear {
    rows: usize,
    cols: usize,
    w: Weights,
    b: Vec<f32>,
}

enum Weights {
    F32(Vec<f32>),
    Q8(Vec<BlockQ8_0>),
}

impl Linear {
    /// `y[t][r] = x[t] · W[r] + b[r]` for `n` rows of `x`. `xq` and `yt` are scratch.
    ///
    /// The same kernels as `ops::matmul`, called on one thread: these matrices are 64-192 rows,
    /// where splitting them over rayon's workers costs more than it saves, and an utterance
    /// must take well under a millisecond on one core.
    fn forward(&self, k: &Kernels, x: &[f32], n: usize, y: &mut [f32], xq: &mut Vec<BlockQ8A>, yt: &mut Vec<f32>) {
        let (rows, cols) = (self.rows, self.cols);
        debug_assert!(x.len() >= n * cols && y.len() >= n * rows);
        match &self.w {
            Weights::F32(w) => {
                for t in 0..n {
                    let xt = &x[t * cols..(t + 1) * cols];
                    for r in 0..rows {
                        y[t * rows + r] = (k.dot_f32)(&w[r * cols..(r + 1) * cols], xt) + self.b[r];
                    }
                }
            }
            Weights::Q8(w) => {
                let nb = cols / QK;
                xq.clear();
                xq.resize(n * nb, BlockQ8A::ZERO);
                for t in 0..n {
                    (k.quantize_q8a)(&x[t * cols..(t + 1) * cols], &mut xq[t * nb..(t + 1) * nb]);
                }
                yt.clear();
                yt.resize(rows * n, 0.0);
                (k.gemm_q8_0)(w, nb, xq, nb, rows, n, yt, n);
                for t in 0..n {
                    for r in 0..rows {
                        y[t * rows + r] = yt[r * n + t] + self.b[r];
                    }
                }
            }
        }
    }

    pub(crate) fn params(&self) -> usize {
        self.rows * self.cols + self.b.len()
    }
}

/// Hyperparameters, read from the file's `punct.*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PunctHparams {
    pub projection: usize,
    pub bottleneck: usize,
    pub acoustic_width: usize,
    pub state: usize,
    pub layers: usize,
    pub labels: Vec<String>,
}

/// One direction of a QRNN layer: the three gates' convolution as one matrix over the window
/// `[x(t-2), x(t-1), x(t)]` (forward) or `[x(t), x(t+1), x(t+2)]` (backward).
struct QrnnDir {
    gates: Linear,
}

pub(crate) struct PunctModel {
    pub hp: PunctHparams,
    bottleneck: Linear,
    acoustic: Linear,
    acoustic_mean: Vec<f32>,
    acoustic_std: Vec<f32>,
    qrnn: Vec<[QrnnDir; 2]>,
    output: Linear,
    pub weight_type: GgmlType,
}

/// Reusable buffers of one forward pass.
#[derive(Default)]
pub(crate) struct Scratch {
    proj: Vec<f32>,
    x: Vec<f32>,
    h: Vec<f32>,
    win: Vec<f32>,
    gates: Vec<f32>,
    ac: Vec<f32>,
    bn: Vec<f32>,
    xq: Vec<BlockQ8A>,
    yt: Vec<f32>,
    tmp: Vec<f32>,
}

/// QRNN convolution width.
pub const KWIDTH: usize = 3;

impl PunctModel {
    /// Reads a model from a parsed GGUF: `bytes` is the whole file (mapped or embedded),
    /// `path` names it in errors.
    pub(crate) fn load(header: &GgufHeader, bytes: &[u8], path: &Path) -> Result<Self> {
        let f = &Source { header, bytes, path };
        let h = &f.header;
        let arch = h.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
        if arch != ARCH {
            return Err(f.err(GgufError::InvalidValue {
                key: "general.architecture".into(),
                why: format!("is {arch:?}: not a punctuation model (expected {ARCH:?})"),
            }));
        }
        let num = |key: &str, max: usize| -> Result<usize> {
            let v = h.get(key).ok_or_else(|| f.err(GgufError::MissingKey(key.into())))?;
            let n = v.as_u64().ok_or_else(|| {
                f.err(GgufError::WrongKeyType {
                    key: key.into(),
                    expected: "integer".into(),
                    found: v.type_name().into(),
                })
            })?;
            if n == 0 || n as usize > max {
                return Err(
                    f.err(GgufError::InvalidValue { key: key.into(), why: format!("{n} is outside 1..={max}") })
                );
            }
            Ok(n as usize)
        };
        let labels_key = "punct.labels";
        let labels: Vec<String> = h
            .get(labels_key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| f.err(GgufError::MissingKey(labels_key.into())))?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| f.err(GgufError::InvalidValue { key: labels_key.into(), why: "not strings".into() }))?;
        if labels.is_empty() || labels.len() > 16 || labels[0] != "none" {
            return Err(f.err(GgufError::InvalidValue {
                key: labels_key.into(),
                why: "must list 1 to 16 labels, the first \"none\"".into(),
            }));
        }
        let hp = PunctHparams {
            projection: num("punct.projection_features", 4096)?,
            bottleneck: num("punct.bottleneck", 4096)?,
            acoustic_width: num("punct.acoustic_width", 4096)?,
            state: num("punct.qrnn.state", 4096)?,
            layers: num("punct.qrnn.layers", 16)?,
            labels,
        };
        let mut weight_type = GgmlType::F32;
        let mut linear = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
            let w = tensor(f, &format!("{name}.weight"), &[cols, rows])?;
            let b = f32s(f, tensor(f, &format!("{name}.bias"), &[rows])?)?;
            let weights = match w.ty {
                GgmlType::F32 => Weights::F32(f32s(f, w)?),
                GgmlType::Q8_0 => {
                    weight_type = GgmlType::Q8_0;
                    // Copied out block by block: embedded bytes have no alignment guarantee.
                    let blocks: Vec<BlockQ8_0> = f
                        .tensor_bytes(w)
                        .chunks_exact(std::mem::size_of::<BlockQ8_0>())
                        .map(|c| BlockQ8_0 {
                            delta: f16::from_le_bytes([c[0], c[1]]),
                            quants: std::array::from_fn(|i| c[2 + i] as i8),
                        })
                        .collect();
                    if let Some(i) = blocks.iter().position(|b| !b.delta.to_f32().is_finite()) {
                        let value = blocks[i].delta.to_f32();
                        return Err(f.err(GgufError::NonFiniteTensor { tensor: w.name.clone(), index: i * QK, value }));
                    }
                    Weights::Q8(blocks)
                }
                other => {
                    return Err(
                        f.err(GgufError::UnsupportedTensorType { tensor: w.name.clone(), ty: other.name().into() })
                    )
                }
            };
            Ok(Linear { rows, cols, w: weights, b })
        };
        let d_in = hp.bottleneck + hp.acoustic_width;
        let bottleneck = linear("bottleneck", hp.bottleneck, hp.projection)?;
        let acoustic = linear("acoustic", hp.acoustic_width, N_ACOUSTIC)?;
        let mut qrnn = Vec::new();
        for l in 0..hp.layers {
            let cols = KWIDTH * if l == 0 { d_in } else { 2 * hp.state };
            let mut dir = |d: &str| linear(&format!("qrnn.{l}.{d}"), 3 * hp.state, cols).map(|gates| QrnnDir { gates });
            qrnn.push([dir("fwd")?, dir("bwd")?]);
        }
        let output = linear("output", hp.labels.len(), 2 * hp.state)?;
        let acoustic_mean = f32s(f, tensor(f, "acoustic.mean", &[N_ACOUSTIC])?)?;
        let acoustic_std = f32s(f, tensor(f, "acoustic.std", &[N_ACOUSTIC])?)?;
        if let Some(i) = acoustic_std.iter().position(|s| *s <= 0.0) {
            return Err(f.err(GgufError::InvalidValue {
                key: "acoustic.std".into(),
                why: format!("element {i} is not positive"),
            }));
        }
        Ok(PunctModel { hp, bottleneck, acoustic, acoustic_mean, acoustic_std, qrnn, output, weight_type })
    }

    pub(crate) fn params(&self) -> usize {
        let q: usize = self.qrnn.iter().flatten().map(|d| d.gates.params()).sum();
        self.bottleneck.params() + self.acoustic.params() + q + self.output.params()
    }

    /// Label probabilities [n][labels] of `n` words: their projections `proj` [n][projection]
    /// and acoustic features (None: text-only, all zeros as in training's modality dropout).
    pub(crate) fn forward(
        &self,
        k: &Kernels,
        words: &[String],
        acoustic: Option<&[[f32; N_ACOUSTIC]]>,
        s: &mut Scratch,
    ) -> Vec<f32> {
        let hp = &self.hp;
        let n = words.len();
        let d_in = hp.bottleneck + hp.acoustic_width;

        // Words -> ternary projections -> bottleneck.
        s.proj.resize(n * hp.projection, 0.0);
        let mut tern = vec![0i8; hp.projection];
        for (w, row) in words.iter().zip(s.proj.chunks_exact_mut(hp.projection)) {
            super::projection::project_word(w, &mut tern);
            row.iter_mut().zip(&tern).for_each(|(o, t)| *o = *t as f32);
        }
        s.bn.resize(n * hp.bottleneck, 0.0);
        self.bottleneck.forward(k, &s.proj, n, &mut s.bn, &mut s.xq, &mut s.yt);

        // Acoustic features, standardized, -> dense.
        s.ac.clear();
        match acoustic {
            Some(feats) => feats.iter().for_each(|f| {
                s.ac.extend(f.iter().enumerate().map(|(i, v)| (v - self.acoustic_mean[i]) / self.acoustic_std[i]))
            }),
            None => s.ac.resize(n * N_ACOUSTIC, 0.0),
        }
        let mut ah = vec![0f32; n * hp.acoustic_width];
        self.acoustic.forward(k, &s.ac, n, &mut ah, &mut s.xq, &mut s.yt);

        // Early fusion: x = [relu(bottleneck) | relu(acoustic)].
        s.x.clear();
        for t in 0..n {
            s.x.extend(s.bn[t * hp.bottleneck..(t + 1) * hp.bottleneck].iter().map(|v| v.max(0.0)));
            s.x.extend(ah[t * hp.acoustic_width..(t + 1) * hp.acoustic_width].iter().map(|v| v.max(0.0)));
        }

        let mut width = d_in;
        for layer in &self.qrnn {
            let hs = hp.state;
            s.h.clear();
            s.h.resize(n * 2 * hs, 0.0);
            for (d, dir) in layer.iter().enumerate() {
                // Windows of KWIDTH inputs, zero-padded before (forward) or after (backward).
                s.win.clear();
                s.win.resize(n * KWIDTH * width, 0.0);
                for t in 0..n {
                    for j in 0..KWIDTH {
                        let src =
                            if d == 0 { t as isize + j as isize - (KWIDTH as isize - 1) } else { (t + j) as isize };
                        if src >= 0 && (src as usize) < n {
                            let src = src as usize;
                            let dst = t * KWIDTH * width + j * width;
                            s.win[dst..dst + width].copy_from_slice(&s.x[src * width..(src + 1) * width]);
                        }
                    }
                }
                s.gates.resize(n * 3 * hs, 0.0);
                dir.gates.forward(k, &s.win, n, &mut s.gates, &mut s.xq, &mut s.yt);
                activate_gates(k, &mut s.gates[..n * 3 * hs], hs, &mut s.tmp);
                // fo-pooling: c = f c + (1 - f) z, h = clip(c, -1, 1) o; backward runs t = n-1..0.
                let mut c = vec![0f32; hs];
                for step in 0..n {
                    let t = if d == 0 { step } else { n - 1 - step };
                    let g = &s.gates[t * 3 * hs..(t + 1) * 3 * hs];
                    let out = &mut s.h[t * 2 * hs + d * hs..t * 2 * hs + (d + 1) * hs];
                    for i in 0..hs {
                        let (z, f, o) = (g[i], g[hs + i], g[2 * hs + i]);
                        c[i] = f * c[i] + (1.0 - f) * z;
                        out[i] = c[i].clamp(-1.0, 1.0) * o;
                    }
                }
            }
            std::mem::swap(&mut s.x, &mut s.h);
            width = 2 * hs;
        }

        let nl = hp.labels.len();
        let mut logits = vec![0f32; n * nl];
        self.output.forward(k, &s.x, n, &mut logits, &mut s.xq, &mut s.yt);
        for row in logits.chunks_exact_mut(nl) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row
                .iter_mut()
                .map(|v| {
                    *v = (*v - m).exp();
                    *v
                })
                .sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        logits
    }
}

/// The file a model is read from.
struct Source<'a> {
    header: &'a GgufHeader,
    bytes: &'a [u8],
    path: &'a Path,
}

impl Source<'_> {
    fn err(&self, source: GgufError) -> Error {
        Error::Gguf { path: self.path.to_path_buf(), source }
    }

    fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.bytes[self.header.tensor_range(t)]
    }
}

/// The QRNN gates of every word in place: z = tanh, f and o = sigmoid, through the kernel
/// set's vectorized exp (within 2 ulp of libm): per element libm calls were half the time of a
/// whole utterance. tanh(x) = 2 sigmoid(2x) - 1; arguments are clamped where exp saturates.
fn activate_gates(k: &Kernels, g: &mut [f32], hs: usize, tmp: &mut Vec<f32>) {
    tmp.clear();
    for row in g.chunks_exact(3 * hs) {
        tmp.extend(row[..hs].iter().map(|v| (-2.0 * v).clamp(-80.0, 80.0)));
        tmp.extend(row[hs..].iter().map(|v| (-v).clamp(-80.0, 80.0)));
    }
    (k.exp_sum)(tmp, 0.0);
    for (row, e) in g.chunks_exact_mut(3 * hs).zip(tmp.chunks_exact(3 * hs)) {
        for (v, e) in row[..hs].iter_mut().zip(&e[..hs]) {
            *v = 2.0 / (1.0 + e) - 1.0;
        }
        for (v, e) in row[hs..].iter_mut().zip(&e[hs..]) {
            *v = 1.0 / (1.0 + e);
        }
    }
}

/// A tensor that must exist with these GGML dims (`dims[0]` contiguous); weights must be F32
/// or Q8_0 with whole blocks per row, vectors F32.
fn tensor<'a>(f: &Source<'a>, name: &str, dims: &[usize]) -> Result<&'a TensorInfo> {
    let t = f.header.tensor(name).ok_or_else(|| f.err(GgufError::MissingTensor(name.into())))?;
    let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if t.dims != want {
        return Err(f.err(GgufError::ShapeMismatch { tensor: name.into(), expected: want, found: t.dims.clone() }));
    }
    let ok = match t.ty {
        GgmlType::F32 => true,
        GgmlType::Q8_0 => dims.len() == 2 && dims[0].is_multiple_of(QK),
        _ => false,
    };
    if !ok {
        return Err(f.err(GgufError::UnsupportedTensorType { tensor: name.into(), ty: t.ty.name().into() }));
    }
    Ok(t)
}

/// An F32 tensor's values, refused if any is NaN or infinite.
fn f32s(f: &Source, t: &TensorInfo) -> Result<Vec<f32>> {
    if t.ty != GgmlType::F32 {
        return Err(f.err(GgufError::UnsupportedTensorType { tensor: t.name.clone(), ty: t.ty.name().into() }));
    }
    let v: Vec<f32> = f.tensor_bytes(t).chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some((index, value)) = crate::ops::first_non_finite(&v) {
        return Err(f.err(GgufError::NonFiniteTensor { tensor: t.name.clone(), index, value }));
    }
    Ok(v)
}
