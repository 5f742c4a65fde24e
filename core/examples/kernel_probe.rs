//! Decode kernel probe: the Q4_0 gemv on one core, on a 64-row chunk that stays in L2 (the
//! kernel's own speed) and streamed over 1.5 GB (what DRAM latency leaves of it). The
//! README's "Kernels" section quotes it for the decode plan by CPU family.
//!
//!     cargo run --release -p pocketlm-core --example kernel_probe [stream]
//!
//! `POCKETLM_KERNELS`, `POCKETLM_PREFETCH`, `POCKETLM_PREFETCH_TO` and `POCKETLM_DECODE_ROWS`
//! pick the variant to measure. This is a benchmark, not a test.
use pocketlm_core::kernels;
use pocketlm_core::quant::{as_blocks, BlockQ4_0, BlockQ8A};
use std::time::Instant;

fn main() {
    let k = kernels::best();
    let nbw = 80; // a 2560-wide row
    let stream = std::env::args().nth(1).is_some_and(|a| a == "stream");
    let n_rows = if stream { 1 << 20 } else { 64 };
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    // xorshift bytes, with every block's f16 scale set to a small normal value
    let bytes: Vec<u8> = (0..n_rows * nbw * 18)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            if i % 18 == 1 {
                0x1c
            } else {
                s as u8
            }
        })
        .collect();
    let w: &[BlockQ4_0] = as_blocks(&bytes).expect("18-byte blocks");
    let x: Vec<f32> = (0..nbw * 32).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
    let mut a = vec![BlockQ8A::ZERO; nbw];
    (k.quantize_q8a)(&x, &mut a);
    let mut out = [0f32; 64];
    let reps = if stream { 3 } else { 100_000 };
    let t = Instant::now();
    for _ in 0..reps {
        for c in (0..n_rows).step_by(64) {
            (k.gemm_q4_0)(&w[c * nbw..(c + 64) * nbw], nbw, &a, nbw, 64, 1, &mut out, 1);
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let groups = (reps * n_rows * nbw / 8) as f64;
    println!(
        "{} {}: {:.2} GB/s of weights, {:.1} ns per 8-block group (checksum {})",
        k.isa,
        if stream { "streamed from DRAM" } else { "L2-resident" },
        groups * 144.0 / dt / 1e9,
        dt * 1e9 / groups,
        out.iter().sum::<f32>()
    );
}
