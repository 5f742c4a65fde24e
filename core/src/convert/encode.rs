//! Element conversions used while writing tensors: transposition, zero-padding, and encoding
//! f32 values into the on-disk type.

use crate::gguf::GgmlType;
use half::f16;
use std::io::Write;

/// [rows, cols] row-major -> [cols, rows] row-major.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    // Blocked so both sides stay in cache for the 2560 x 6826 matrices.
    const B: usize = 64;
    for r0 in (0..rows).step_by(B) {
        for c0 in (0..cols).step_by(B) {
            for r in r0..(r0 + B).min(rows) {
                for c in c0..(c0 + B).min(cols) {
                    out[c * rows + r] = data[r * cols + c];
                }
            }
        }
    }
    out
}

/// Zero-pads a [rows, cols] matrix to [new_rows, new_cols] (exact for the FFN: zero weights
/// and biases give silu(0) * 0 = 0 and contribute nothing downstream).
pub fn pad(data: &[f32], rows: usize, cols: usize, new_rows: usize, new_cols: usize) -> Vec<f32> {
    if rows == new_rows && cols == new_cols {
        return data.to_vec();
    }
    let mut out = vec![0f32; new_rows * new_cols];
    for r in 0..rows {
        out[r * new_cols..r * new_cols + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
    }
    out
}

/// Writes values in the given float type.
pub fn write_as(data: &[f32], ty: GgmlType, w: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(data.len() * 4);
    match ty {
        GgmlType::F32 => data.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => data.iter().for_each(|v| buf.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        other => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("cannot encode {other} here")))
        }
    }
    w.write_all(&buf)
}
