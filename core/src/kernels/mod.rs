//! The hot kernels, one module per instruction set behind one table chosen once at runtime
//! from CPU features: a binary built for x86_64 or aarch64 runs everywhere and uses the best
//! instructions the CPU has. Kernels see slices and blocks only, never the model.

// Tile loops index several register arrays in lockstep (rows x tokens), and gemm entry points
// take the full geometry; the lints' suggested rewrites would obscure both.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

#[cfg(target_arch = "aarch64")]
pub mod arm;
pub mod generic;
pub mod kv_q4;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use crate::quant::{BlockQ4K, BlockQ4_0, BlockQ8A, BlockQ8_0};
use half::f16;
use std::sync::OnceLock;

/// `out[r * ldo + t] = dot(weight row r, token t)` for `rows` weight rows of `nbw` blocks and
/// `toks` token rows of `nbx` activation blocks (`nbx` = 32-wide blocks per row).
pub type GemmFn<B> =
    fn(w: &[B], nbw: usize, x: &[BlockQ8A], nbx: usize, rows: usize, toks: usize, out: &mut [f32], ldo: usize);

/// Single-token product over Q4_0_R16 weights (`quant::interleave`): `out[r * ldo] = row r ·
/// x` for every row of the whole 16-row groups in `w` (bytes), `nbw` blocks per row.
pub type GemvR16Fn = fn(w: &[u8], nbw: usize, x: &[BlockQ8A], out: &mut [f32], ldo: usize);

/// 4-bit KV cache key scores: int8 query, tiles' codes and scales, 16 scores per tile.
pub type DotTilesFn = fn(q8: &[i8], codes: &[u8], scales: &[f16], out: &mut [f32]);
/// 4-bit KV cache weighted value sums: 16 weights per tile, tiles' codes and scales, output.
pub type AxpyTilesFn = fn(p: &[f32], codes: &[u8], scales: &[f16], o: &mut [f32]);

/// Bounds every SIMD gemm checks once before its unchecked block accesses.
pub(crate) fn check_gemm(
    wl: usize,
    nbw: usize,
    xl: usize,
    nbx: usize,
    rows: usize,
    toks: usize,
    ol: usize,
    ldo: usize,
) {
    assert!(rows == 0 || wl >= rows * nbw, "weight rows out of range");
    assert!(toks == 0 || xl >= toks * nbx, "activation rows out of range");
    assert!(rows == 0 || toks == 0 || ol >= (rows - 1) * ldo + toks, "output out of range");
    assert!(toks <= ldo || rows <= 1);
}

/// One instruction set's implementation of every kernel.
pub struct Kernels {
    pub isa: &'static str,
    pub quantize_q8a: fn(&[f32], &mut [BlockQ8A]),
    pub gemm_q4_0: GemmFn<BlockQ4_0>,
    pub gemm_q8_0: GemmFn<BlockQ8_0>,
    pub gemm_q4k: GemmFn<BlockQ4K>,
    /// Tokens per gemm call in prefill. The row-major tiles want 64, whose activations stay in
    /// L2 while a chunk of rows streams past them; the packed AVX-512 gemm wants all of them,
    /// since it unpacks its rows once per call.
    pub prefill_tokens: usize,
    /// Decode over Q4_0_R16 weights where the set has a kernel for that layout; without one,
    /// matmul de-interleaves each task's rows into plain blocks and runs `gemm_q4_0`.
    pub gemv_q4_0r16: Option<GemvR16Fn>,
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub dot_f16: fn(&[f16], &[f32]) -> f32,
    pub axpy_f32: fn(f32, &[f32], &mut [f32]),
    pub axpy_f16: fn(f32, &[f16], &mut [f32]),
    /// Cross-correlation `out[l] = Σ_i a[i]·x[l + i]` for every lag `l < out.len()` (the
    /// punctuation model's pitch tracker: one call per frame instead of one dot per lag).
    pub xcorr_f32: fn(a: &[f32], x: &[f32], out: &mut [f32]),
    /// Σ a·b with int8 `a` (q8_0 KV cache rows; the caller applies the row scale).
    pub dot_i8: fn(&[i8], &[f32]) -> f32,
    /// y += alpha · x with int8 `x`.
    pub axpy_i8: fn(f32, &[i8], &mut [f32]),
    /// Decode attention over a tile of f16 key rows: `out[j] = row j · q` (see
    /// [`generic::dot_rows_with`]).
    pub dot_rows_f16: fn(q: &[f32], rows: &[f16], out: &mut [f32]),
    /// `o += Σ_j p[j] · row j` over a tile of f16 value rows.
    pub axpy_rows_f16: fn(p: &[f32], rows: &[f16], o: &mut [f32]),
    /// [`Kernels::dot_rows_f16`] for int8 rows (the caller applies the row scales).
    pub dot_rows_i8: fn(q: &[f32], rows: &[i8], out: &mut [f32]),
    /// [`Kernels::axpy_rows_f16`] for int8 rows (`p` already carries the row scales).
    pub axpy_rows_i8: fn(p: &[f32], rows: &[i8], o: &mut [f32]),
    /// 4-bit KV cache key scores, 16 rows per tile (see [`kv_q4::dot_tiles`]).
    pub dot_tiles_q4: DotTilesFn,
    /// 4-bit KV cache weighted value sums (see [`kv_q4::axpy_tiles`]).
    pub axpy_tiles_q4: AxpyTilesFn,
    /// Softmax numerators of a tile in place, returning their sum (see [`generic::exp_sum`]).
    pub exp_sum: fn(s: &mut [f32], m: f32) -> f32,
    /// Prefill attention scores, a block of queries x a tile of transposed keys
    /// (see [`generic::qk_tile`]).
    pub qk_tile: fn(q: &[f32], kt: &[f32], d: usize, nk: usize, s: &mut [f32]),
    /// Prefill attention weighted values (see [`generic::pv_tile`]).
    pub pv_tile: fn(p: &[f32], v: &[f32], d: usize, nk: usize, o: &mut [f32]),
}

#[allow(clippy::too_many_arguments)]
fn scalar_gemm_q4_0(
    w: &[BlockQ4_0],
    nbw: usize,
    x: &[BlockQ8A],
    nbx: usize,
    r: usize,
    t: usize,
    o: &mut [f32],
    ldo: usize,
) {
    generic::gemm(generic::dot_q4_0, w, nbw, x, nbx, r, t, o, ldo)
}
#[allow(clippy::too_many_arguments)]
fn scalar_gemm_q8_0(
    w: &[BlockQ8_0],
    nbw: usize,
    x: &[BlockQ8A],
    nbx: usize,
    r: usize,
    t: usize,
    o: &mut [f32],
    ldo: usize,
) {
    generic::gemm(generic::dot_q8_0, w, nbw, x, nbx, r, t, o, ldo)
}
#[allow(clippy::too_many_arguments)]
fn scalar_gemm_q4k(
    w: &[BlockQ4K],
    nbw: usize,
    x: &[BlockQ8A],
    nbx: usize,
    r: usize,
    t: usize,
    o: &mut [f32],
    ldo: usize,
) {
    generic::gemm(generic::dot_q4k, w, nbw, x, nbx, r, t, o, ldo)
}

pub static SCALAR: Kernels = Kernels {
    isa: "scalar",
    quantize_q8a: generic::quantize_q8a,
    gemm_q4_0: scalar_gemm_q4_0,
    gemm_q8_0: scalar_gemm_q8_0,
    gemm_q4k: scalar_gemm_q4k,
    prefill_tokens: 64,
    gemv_q4_0r16: Some(generic::gemv_q4_0r16),
    dot_f32: generic::dot_f32,
    dot_f16: generic::dot_f16,
    axpy_f32: generic::axpy_f32,
    axpy_f16: generic::axpy_f16,
    xcorr_f32: generic::xcorr_f32,
    dot_i8: generic::dot_i8,
    axpy_i8: generic::axpy_i8,
    dot_rows_f16: generic::dot_rows_f16,
    axpy_rows_f16: generic::axpy_rows_f16,
    dot_rows_i8: generic::dot_rows_i8,
    axpy_rows_i8: generic::axpy_rows_i8,
    dot_tiles_q4: kv_q4::dot_tiles,
    axpy_tiles_q4: kv_q4::axpy_tiles,
    exp_sum: generic::exp_sum,
    qk_tile: generic::qk_tile,
    pv_tile: generic::pv_tile,
};

/// The SIMD kernel sets this build can dispatch to on its architecture, worst first.
pub const DISPATCHED: &[&str] = if cfg!(target_arch = "x86_64") {
    &["avx2", "avx-vnni", "avx512-vnni", "avx512-vbmi"]
} else if cfg!(target_arch = "aarch64") {
    &["neon", "neon-dotprod", "neon-i8mm"]
} else {
    &[]
};

/// Every kernel set this CPU can run, best last (the scalar reference first).
pub fn available() -> Vec<&'static Kernels> {
    let mut v = vec![&SCALAR];
    #[cfg(target_arch = "x86_64")]
    v.extend([x86::avx2(), x86::avx_vnni(), x86::avx512_vnni(), x86::avx512_vbmi()].into_iter().flatten());
    #[cfg(target_arch = "aarch64")]
    v.extend([arm::neon(), arm::dotprod(), arm::i8mm()].into_iter().flatten());
    v
}

/// The kernel set used by the engine, chosen once. `POCKETLM_KERNELS=scalar` (or another ISA
/// name) forces a set, for debugging and for comparing paths on one machine.
pub fn best() -> &'static Kernels {
    static BEST: OnceLock<&'static Kernels> = OnceLock::new();
    BEST.get_or_init(|| {
        let all = available();
        if let Ok(want) = std::env::var("POCKETLM_KERNELS") {
            if let Some(k) = all.iter().find(|k| k.isa == want) {
                return k;
            }
        }
        all.last().copied().unwrap_or(&SCALAR)
    })
}

#[cfg(test)]
mod tests;
