//! LayerNorm (with bias, population variance), as GPT-2/BTLM use it.

/// Normalises each `w.len()`-wide row of `x` into `out`. Sums run in f64: LayerNorm is cheap
/// next to the matmuls and this removes it as a source of drift against the reference.
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for i in 0..n {
            or[i] = ((xr[i] as f64 - mean) * inv) as f32 * w[i] + b[i];
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalises_to_zero_mean_unit_variance() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut o = [0.0; 4];
        super::layer_norm(&x, &[1.0; 4], &[0.0; 4], 0.0, &mut o);
        let mean: f32 = o.iter().sum::<f32>() / 4.0;
        let var: f32 = o.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{o:?}");
    }
}
