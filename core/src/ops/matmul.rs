//! y = x · Wᵀ (+ b) for a weight matrix stored row-major [out, in] (GGUF order).
//!
//! Quantized weights: the activations are quantized once per call to int8 blocks, then rows
//! are split across rayon workers. Each worker owns a chunk of rows and walks the tokens in
//! tiles, so a chunk of weights is fetched from memory once and reused from cache for every
//! token of a prefill; single-token decode degenerates to a row-parallel matrix-vector product.

use crate::gguf::GgmlType;
use crate::kernels::{self, GemmFn, Kernels};
use crate::quant::{as_blocks, Block, BlockQ8A, QK};
use half::f16;
use rayon::prelude::*;

/// A borrowed weight matrix: `rows` outputs, each a row of `cols` inputs.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl MatRef<'_> {
    fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols as u64).unwrap_or(0) as usize
    }

    /// Row `r` as f32 into `out` (`cols` long): embedding lookups and reference paths.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let n = self.row_bytes();
        crate::quant::dequantize_row(self.ty, &self.data[r * n..(r + 1) * n], out);
    }
}

/// Weight rows per parallel task: a 16-row chunk of a 2560-wide Q4_0 matrix is 23 KB, which
/// stays in L1/L2 while every token tile streams past it.
const ROWS_PER_TASK: usize = 16;
/// Weight rows per task for single-token decode, where nothing is reused across tokens and a
/// kernel call's fixed cost (rearranging the activations) is better spread over more rows.
const DECODE_ROWS_PER_TASK: usize = 64;

/// Calls of at most this many tokens run the single-token kernel once per token over each
/// chunk of rows (the chunk read from memory for the first token, from cache for the rest):
/// a speculative draft's verification batch (up to `session::MAX_DRAFT` + 1 tokens) then costs
/// little more than one token while decode is bound by memory, and gives bit for bit the
/// products one-token decoding gives. `POCKETLM_SMALL_BATCH=N` overrides it (A/B runs).
fn small_batch() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("POCKETLM_SMALL_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(crate::session::MAX_DRAFT + 1)
    })
}

/// `y[t][r] = x[t] · W[r] (+ bias[r])` for `n_tok` tokens; `x` is [n_tok][cols], `y` [n_tok][rows].
pub fn matmul(w: MatRef, bias: Option<&[f32]>, x: &[f32], n_tok: usize, y: &mut [f32]) {
    let k = kernels::best();
    let (rows, cols) = (w.rows, w.cols);
    debug_assert_eq!(x.len(), n_tok * cols);
    debug_assert_eq!(y.len(), n_tok * rows);
    // Work in [rows][n_tok] so each task owns a contiguous output chunk, then transpose.
    let mut yt = vec![0f32; rows * n_tok];
    match w.ty {
        GgmlType::F32 | GgmlType::F16 => float_rows(k, w, x, n_tok, &mut yt),
        GgmlType::Q4_0 => quant_rows(w, x, n_tok, &mut yt, k, k.gemm_q4_0),
        GgmlType::Q8_0 => quant_rows(w, x, n_tok, &mut yt, k, k.gemm_q8_0),
        GgmlType::Q4K => quant_rows(w, x, n_tok, &mut yt, k, k.gemm_q4k),
        other => unreachable!("weight type {other} is rejected at load"),
    }
    for t in 0..n_tok {
        let yr = &mut y[t * rows..(t + 1) * rows];
        for (r, v) in yr.iter_mut().enumerate() {
            *v = yt[r * n_tok + t] + bias.map_or(0.0, |b| b[r]);
        }
    }
}

fn float_rows(k: &Kernels, w: MatRef, x: &[f32], n_tok: usize, yt: &mut [f32]) {
    let cols = w.cols;
    let rb = w.row_bytes();
    yt.par_chunks_mut(ROWS_PER_TASK * n_tok).enumerate().for_each(|(ci, chunk)| {
        for (i, out) in chunk.chunks_exact_mut(n_tok).enumerate() {
            let r = ci * ROWS_PER_TASK + i;
            let row = &w.data[r * rb..(r + 1) * rb];
            for (t, o) in out.iter_mut().enumerate() {
                let xt = &x[t * cols..(t + 1) * cols];
                *o = match w.ty {
                    GgmlType::F32 => (k.dot_f32)(bytemuck::cast_slice(row), xt),
                    _ => (k.dot_f16)(bytemuck::cast_slice::<u8, f16>(row), xt),
                };
            }
        }
    });
}

/// Quantizes activations once, then runs the ISA's gemm over row chunks x token tiles.
fn quant_rows<B: Block + Sync>(w: MatRef, x: &[f32], n_tok: usize, yt: &mut [f32], k: &Kernels, gemm: GemmFn<B>) {
    let nbx = w.cols / QK;
    let mut acts = vec![BlockQ8A::ZERO; n_tok * nbx];
    if n_tok == 1 {
        (k.quantize_q8a)(x, &mut acts); // not worth waking a worker for
    } else {
        acts.par_chunks_mut(nbx).zip(x.par_chunks(w.cols)).for_each(|(a, xr)| (k.quantize_q8a)(xr, a));
    }
    let blocks: &[B] = as_blocks(w.data).unwrap_or(&[]);
    let nbw = blocks.len() / w.rows.max(1);
    let per_token = n_tok <= small_batch();
    let per_task = if per_token { DECODE_ROWS_PER_TASK } else { ROWS_PER_TASK };
    yt.par_chunks_mut(per_task * n_tok).enumerate().for_each(|(ci, chunk)| {
        let r0 = ci * per_task;
        let rows = chunk.len() / n_tok;
        let wchunk = &blocks[r0 * nbw..(r0 + rows) * nbw];
        if per_token {
            for t in 0..n_tok {
                gemm(wchunk, nbw, &acts[t * nbx..(t + 1) * nbx], nbx, rows, 1, &mut chunk[t..], n_tok);
            }
            return;
        }
        for t0 in (0..n_tok).step_by(k.prefill_tokens) {
            let toks = k.prefill_tokens.min(n_tok - t0);
            gemm(wchunk, nbw, &acts[t0 * nbx..(t0 + toks) * nbx], nbx, rows, toks, &mut chunk[t0..], n_tok);
        }
    });
}
