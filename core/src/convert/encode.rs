//! Element layout changes used while writing tensors: transposition and zero-padding.

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
