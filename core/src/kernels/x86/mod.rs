//! x86_64 kernels: AVX2 (+FMA, F16C) everywhere it exists, AVX-VNNI on top where present, and
//! 512-bit single-token Q4_0, Q4_K and Q8_0 paths where AVX-512 VNNI + VBMI exist.

/// Runs `$tile::<R, T>(w, nbw, r, x, nbx, t, out, ldo, extra..)` over the whole rows x toks
/// rectangle: tiles of 4 weight rows x 2 tokens, with 4x1, 1x2 and 1x1 remainders.
macro_rules! drive_4x2 {
    ($tile:ident, $w:expr, $nbw:expr, $x:expr, $nbx:expr, $rows:expr, $toks:expr, $out:expr, $ldo:expr; $($extra:expr),*) => {{
        let mut r = 0;
        while r < $rows {
            let rm = if $rows - r >= 4 { 4 } else { 1 };
            let mut t = 0;
            while t < $toks {
                let tm = if $toks - t >= 2 { 2 } else { 1 };
                unsafe {
                    match (rm, tm) {
                        (4, 2) => $tile::<4, 2>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                        (4, _) => $tile::<4, 1>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                        (_, 2) => $tile::<1, 2>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                        _ => $tile::<1, 1>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                    }
                }
                t += tm;
            }
            r += rm;
        }
    }};
}

pub mod avx2;
mod kv_q4;
mod q4_0;
mod q4_0_zmm;
mod q4k;
mod q4k_zmm;
mod q8_0;
mod q8_0_zmm;

pub use avx2::{avx2, avx512_vbmi, avx512_vnni, avx_vnni};

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::thread::LocalKey;

/// The decode driver the 512-bit gemv kernels share: `prepare` rearranges the token's
/// activations into `buf` (kept per worker thread, since decode calls this hundreds of times per
/// token), then `row` runs each weight row of `nbw` blocks in memory order into `out[r * ldo]`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn gemv_rows<B, X: 'static>(
    buf: &'static LocalKey<RefCell<Vec<X>>>,
    prepare: impl FnOnce(&mut Vec<X>),
    w: &[B],
    nbw: usize,
    rows: usize,
    out: &mut [f32],
    ldo: usize,
    row: impl Fn(&[B], &[X]) -> f32,
) {
    buf.with_borrow_mut(|xs| {
        xs.clear();
        prepare(xs);
        for r in 0..rows {
            out[r * ldo] = row(&w[r * nbw..(r + 1) * nbw], xs);
        }
    })
}

/// `vpermt2b` indices (into two concatenated 64-byte loads starting at byte `base` of a group)
/// that gather the `quants`-byte quant arrays of consecutive `block`-byte blocks from `first`
/// on; each block's quants follow its 2-byte f16 scale.
const fn quant_index(block: usize, quants: usize, first: usize, base: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        idx[i] = (block * (first + i / quants) + 2 + i % quants - base) as u8;
        i += 1;
    }
    idx
}

/// `vpermt2w` indices of the f16 scales of `n` consecutive `block`-byte blocks (at bytes
/// `block * i`), into the first `n` words.
const fn scale_index(block: usize, n: usize) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut i = 0;
    while i < n {
        idx[i] = (block / 2 * i) as u16;
        i += 1;
    }
    idx
}

/// A byte mask of the first `n` (≤ 64) lanes, for masked loads that stop at a row's end.
#[inline]
fn byte_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The 8 block sums of a group, in block order, from the two results of two rounds of
/// `vphaddd` over 8 per-block i32x8 products (`g1` = hadd(hadd(b0, b1), hadd(b2, b3)), `g2` the
/// same for blocks 4-7): each 128-bit half of `g1`/`g2` holds one partial sum per block.
#[inline]
#[target_feature(enable = "avx2")]
fn block_sums8(g1: __m256i, g2: __m256i) -> __m256i {
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(g1, g2), _mm256_permute2x128_si256::<0x31>(g1, g2))
}
