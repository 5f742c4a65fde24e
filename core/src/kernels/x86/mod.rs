//! x86_64 kernels: AVX2 (+FMA, F16C) everywhere it exists, AVX-VNNI on top where present.

pub mod avx2;
mod q4_0;

pub use avx2::{avx2, avx512_vnni, avx_vnni};
