//! x86_64 kernels: AVX2 (+FMA, F16C) everywhere it exists, AVX-VNNI on top where present, and
//! 512-bit single-token Q4_0 and Q4_K paths where AVX-512 VNNI + VBMI exist.

pub mod avx2;
mod q4_0;
mod q4_0_zmm;
mod q4k_zmm;

pub use avx2::{avx2, avx512_vbmi, avx512_vnni, avx_vnni};
