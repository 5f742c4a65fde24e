//! Numeric building blocks of the forward pass. They see slices and weight views, never the
//! model or an ISA: the kernels behind them are chosen elsewhere.

pub mod attention;
pub mod matmul;
pub mod norm;

/// The first NaN or infinity in `xs` (index and value): weights, caches and logits must be
/// finite, and one that is not spreads to every later result.
/// A branch-free pass over the exponent bits first, which the compiler vectorizes (a plain
/// scan cost as much as the punctuator's whole pitch tracker over 10 s of audio), then the
/// position only when there is one.
pub fn first_non_finite(xs: &[f32]) -> Option<(usize, f32)> {
    const EXP: u32 = 0x7f80_0000;
    let any = xs.chunks(64).map(|c| c.iter().fold(0u32, |acc, v| acc | u32::from(v.to_bits() & EXP == EXP)));
    if any.fold(0, |a, b| a | b) == 0 {
        return None;
    }
    xs.iter().copied().enumerate().find(|(_, x)| !x.is_finite())
}

/// SiLU(gate) * up, in place into `up` (BTLM's SwiGLU: c_fc2 is the gate, c_fc the linear branch).
pub fn swiglu(up: &mut [f32], gate: &[f32]) {
    for (u, &g) in up.iter_mut().zip(gate) {
        *u *= g / (1.0 + (-g).exp());
    }
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}
