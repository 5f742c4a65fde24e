//! x86_64 kernels: AVX2 (+FMA, F16C) everywhere it exists, AVX-VNNI on top where present, and
//! 512-bit single-token Q4_0, Q4_K and Q8_0 paths where AVX-512 VNNI + VBMI exist.

pub mod avx2;
mod q4_0;
mod q4_0_zmm;
mod q4k_zmm;
mod q8_0_zmm;

pub use avx2::{avx2, avx512_vbmi, avx512_vnni, avx_vnni};

/// A byte mask of the first `n` (≤ 64) lanes, for masked loads that stop at a row's end.
#[inline]
fn byte_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}
