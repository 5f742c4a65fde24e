//! aarch64 kernels: plain NEON (every ARMv8-A core), SDOT (dotprod: Cortex-A55/A75 and later,
//! Apple A11+) and SMMLA (i8mm: Cortex-A510/A710/X2 and later, Apple A15+), each selected at
//! runtime, so one binary runs on a 2017 phone and uses the best instructions on a 2024 one.
//!
//! SDOT and SMMLA are emitted with `asm!` because their intrinsics are still unstable on the
//! Rust versions we support; the functions carry the matching `target_feature`, so they are
//! only reachable after `is_aarch64_feature_detected!` said yes.

mod kv_q4;
pub mod neon;
mod q4_0r16;

pub use neon::{dotprod, i8mm, neon};
