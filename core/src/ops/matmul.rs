//! y = x · Wᵀ for a weight matrix stored row-major [out, in] (GGUF order), any supported type.
//! Rows are split across rayon workers; each worker streams its rows once and applies them to
//! every token of the batch, so a prefill reads each weight once per batch, not once per token.

use super::dot_f32;
use crate::gguf::GgmlType;
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
    /// Row `r` as f32 into `out` (`cols` long).
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let bytes = self.ty.row_bytes(self.cols as u64).unwrap_or(0) as usize;
        let row = &self.data[r * bytes..(r + 1) * bytes];
        match self.ty {
            GgmlType::F32 => out.copy_from_slice(bytemuck::cast_slice(row)),
            GgmlType::F16 => {
                let h: &[f16] = bytemuck::cast_slice(row);
                for (o, v) in out.iter_mut().zip(h) {
                    *o = v.to_f32();
                }
            }
            _ => unreachable!("weight types are checked at load"),
        }
    }
}

/// Rows per parallel task: large enough to amortise scheduling, small enough to balance.
const ROWS_PER_TASK: usize = 16;

/// `y[t][r] = x[t] · W[r] (+ bias[r])` for `n_tok` tokens; `x` is [n_tok][cols], `y` [n_tok][rows].
pub fn matmul(w: MatRef, bias: Option<&[f32]>, x: &[f32], n_tok: usize, y: &mut [f32]) {
    let (rows, cols) = (w.rows, w.cols);
    debug_assert_eq!(x.len(), n_tok * cols);
    debug_assert_eq!(y.len(), n_tok * rows);
    // Work in [rows][n_tok] so each task owns a contiguous output chunk, then transpose.
    let mut yt = vec![0f32; rows * n_tok];
    yt.par_chunks_mut(ROWS_PER_TASK * n_tok).enumerate().for_each(|(ci, chunk)| {
        let mut rowbuf = vec![0f32; if w.ty == GgmlType::F32 { 0 } else { cols }];
        for (i, out) in chunk.chunks_exact_mut(n_tok).enumerate() {
            let r = ci * ROWS_PER_TASK + i;
            let row: &[f32] = if w.ty == GgmlType::F32 {
                let bytes = cols * 4;
                bytemuck::cast_slice(&w.data[r * bytes..(r + 1) * bytes])
            } else {
                w.row_to_f32(r, &mut rowbuf);
                &rowbuf
            };
            let b = bias.map_or(0.0, |b| b[r]);
            for (t, o) in out.iter_mut().enumerate() {
                *o = dot_f32(row, &x[t * cols..(t + 1) * cols]) + b;
            }
        }
    });
    for t in 0..n_tok {
        for r in 0..rows {
            y[t * rows + r] = yt[r * n_tok + t];
        }
    }
}
