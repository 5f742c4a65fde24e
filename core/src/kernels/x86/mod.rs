//! x86_64 kernels.

pub mod avx2;

pub use avx2::avx2;
