//! Every SIMD kernel set against the scalar reference, on random data with awkward sizes and
//! extreme values. The activation quantizer must be bit-exact (integer codes and scales); the
//! dot products sum the same exact integer block products in another order, so they must agree
//! to float rounding of the sum: |simd - scalar| <= 1e-5 * Σ|terms| (f32 has 24 bits, sums of
//! up to 80 blocks x 8 lanes lose far fewer than 7 of them).

use super::*;
use crate::quant::{QK, QK_K};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn simd_sets() -> Vec<&'static Kernels> {
    let sets: Vec<_> = available().into_iter().filter(|k| k.isa != "scalar").collect();
    let names: Vec<&str> = sets.iter().map(|k| k.isa).collect();
    println!("kernel sets tested against the scalar reference on this CPU: {names:?}");
    if sets.is_empty() {
        println!("NOTICE: no SIMD kernel set on this CPU ({}); only the scalar reference runs", std::env::consts::ARCH);
    }
    assert!(names.iter().all(|n| DISPATCHED.contains(n)), "{names:?} missing from kernels::DISPATCHED");
    // Each set this build has but this CPU cannot run, in the form scripts/test.sh collects
    // into its summary, so untested kernels are never silent.
    for isa in DISPATCHED.iter().filter(|isa| !names.contains(isa)) {
        println!("skipped: {isa} kernels (this CPU lacks the instructions)");
    }
    sets
}

fn extreme_f32(rng: &mut ChaCha8Rng) -> f32 {
    match rng.random_range(0..10) {
        0 => 0.0,
        1 => rng.random_range(-1e-30f32..1e-30),
        2 => rng.random_range(-3e4f32..3e4),
        _ => rng.random_range(-2.0f32..2.0),
    }
}

fn f16_scale(rng: &mut ChaCha8Rng) -> f16 {
    match rng.random_range(0..8) {
        0 => f16::from_f32(rng.random_range(-65000.0f32..65000.0)),
        1 => f16::from_bits(rng.random_range(1u16..0x400)), // subnormal
        2 => f16::ZERO,
        _ => f16::from_f32(rng.random_range(-0.1f32..0.1)),
    }
}

fn random_acts(rng: &mut ChaCha8Rng, n_blocks: usize) -> Vec<BlockQ8A> {
    let x: Vec<f32> = (0..n_blocks * QK).map(|_| extreme_f32(rng) * rng.random_range(0.0f32..1.0)).collect();
    let mut b = vec![BlockQ8A::ZERO; n_blocks];
    generic::quantize_q8a(&x, &mut b);
    b
}

#[test]
fn quantize_q8a_is_bit_exact() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for k in simd_sets() {
        for n_blocks in [1, 2, 3, 7, 80, 213] {
            for _ in 0..20 {
                let scale = [1e-30f32, 1e-3, 1.0, 1e4, 3e38][rng.random_range(0..5)];
                let x: Vec<f32> = (0..n_blocks * QK).map(|_| extreme_f32(&mut rng) * scale.min(1e4)).collect();
                let (mut a, mut b) = (vec![BlockQ8A::ZERO; n_blocks], vec![BlockQ8A::ZERO; n_blocks]);
                generic::quantize_q8a(&x, &mut a);
                (k.quantize_q8a)(&x, &mut b);
                assert_eq!(a, b, "{}: {n_blocks} blocks", k.isa);
            }
        }
    }
}

fn check_close(isa: &str, what: &str, got: f32, want: f32, mag: f64) {
    let tol = 1e-5 * mag + 1e-30;
    assert!(((got - want) as f64).abs() <= tol, "{isa} {what}: {got} vs {want} (magnitude {mag})");
}

/// Runs a gemm against the scalar one on all (rows, toks) shapes of interest.
fn check_gemm<B>(
    name: &str,
    make_row: &mut dyn FnMut(&mut ChaCha8Rng, usize) -> Vec<B>,
    blocks_per_row: &[usize],
    acts_per_block: usize,
    pick: fn(&Kernels) -> GemmFn<B>,
    magnitude: &dyn Fn(&[B], &[BlockQ8A]) -> f64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for k in simd_sets() {
        for &nbw in blocks_per_row {
            let nbx = nbw * acts_per_block;
            // Up to 5 tokens: the row-major tiles; 16 and more: the packed AVX-512 prefill gemm
            // (row groups of 16 with a partial last group, token tiles of 8 with remainders).
            let shapes = [(1, 1), (4, 1), (7, 1), (9, 1), (13, 1), (4, 2), (5, 3), (7, 5), (9, 2), (3, 4)];
            let packed = [(16, 16), (19, 23), (33, 17), (5, 20), (1, 21)];
            for (rows, toks) in shapes.into_iter().chain(packed) {
                let w: Vec<B> = (0..rows).flat_map(|_| make_row(&mut rng, nbw)).collect();
                let x = random_acts(&mut rng, toks * nbx);
                let ldo = toks + 1; // a gap between rows must be left alone
                let (mut want, mut got) = (vec![f32::NAN; rows * ldo], vec![f32::NAN; rows * ldo]);
                (pick(&SCALAR))(&w, nbw, &x, nbx, rows, toks, &mut want, ldo);
                (pick(k))(&w, nbw, &x, nbx, rows, toks, &mut got, ldo);
                for r in 0..rows {
                    assert!(got[r * ldo + toks].is_nan(), "{}: wrote past the tile", k.isa);
                    for t in 0..toks {
                        let mag = magnitude(&w[r * nbw..(r + 1) * nbw], &x[t * nbx..(t + 1) * nbx]);
                        let what = format!("{name} {rows}x{toks} nb {nbw} [{r},{t}]");
                        check_close(k.isa, &what, got[r * ldo + t], want[r * ldo + t], mag);
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_q4_0_matches_scalar() {
    let mut make = |rng: &mut ChaCha8Rng, n: usize| {
        (0..n).map(|_| BlockQ4_0 { delta: f16_scale(rng), quants: rng.random() }).collect::<Vec<_>>()
    };
    let mag = |w: &[BlockQ4_0], x: &[BlockQ8A]| {
        w.iter().zip(x).map(|(w, x)| (w.delta.to_f32().abs() * x.d.abs()) as f64 * 32.0 * 15.0 * 127.0).sum()
    };
    check_gemm("q4_0", &mut make, &[1, 3, 4, 13, 15, 80], 1, |k| k.gemm_q4_0, &mag);
}

/// The interleaved-layout decode kernels against the reference (each row de-interleaved, then
/// the scalar Q4_0 dot), over 1-3 groups of 16 rows and odd block counts, with a gap between
/// outputs that must stay untouched. Sets without such a kernel de-interleave and run their
/// plain gemm, which `gemm_q4_0_matches_scalar` covers.
#[test]
fn gemv_q4_0r16_matches_scalar() {
    use crate::quant::interleave::{interleave, ROWS};
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let reference = SCALAR.gemv_q4_0r16.expect("scalar reference");
    for k in simd_sets() {
        let Some(gemv) = k.gemv_q4_0r16 else {
            println!("{}: no Q4_0_R16 gemv (decode de-interleaves into its plain gemm)", k.isa);
            continue;
        };
        for nbw in [1, 3, 7, 13, 80, 216] {
            for groups in 1..=3 {
                let plain: Vec<BlockQ4_0> = (0..groups * ROWS * nbw)
                    .map(|_| BlockQ4_0 { delta: f16_scale(&mut rng), quants: rng.random() })
                    .collect();
                let mut w = Vec::new();
                interleave(&plain, nbw, &mut w);
                let x = random_acts(&mut rng, nbw);
                let rows = groups * ROWS;
                let (mut want, mut got) = (vec![f32::NAN; rows * 2], vec![f32::NAN; rows * 2]);
                reference(&w, nbw, &x, &mut want, 2);
                gemv(&w, nbw, &x, &mut got, 2);
                for r in 0..rows {
                    assert!(got[2 * r + 1].is_nan(), "{}: wrote between rows", k.isa);
                    let row = &plain[r * nbw..(r + 1) * nbw];
                    let mag: f64 = row
                        .iter()
                        .zip(&x)
                        .map(|(w, x)| (w.delta.to_f32().abs() * x.d.abs()) as f64 * 32.0 * 15.0 * 127.0)
                        .sum();
                    assert_eq!(want[2 * r], generic::dot_q4_0(row, &x), "reference row {r}");
                    check_close(k.isa, &format!("q4_0_r16 nb {nbw} row {r}"), got[2 * r], want[2 * r], mag);
                }
            }
        }
    }
}

#[test]
fn gemm_q8_0_matches_scalar() {
    let mut make = |rng: &mut ChaCha8Rng, n: usize| {
        (0..n)
            .map(|_| BlockQ8_0 {
                delta: f16_scale(rng),
                quants: std::array::from_fn(|_| rng.random_range(-128i16..=127) as i8),
            })
            .collect::<Vec<_>>()
    };
    let mag = |w: &[BlockQ8_0], x: &[BlockQ8A]| {
        w.iter().zip(x).map(|(w, x)| (w.delta.to_f32().abs() * x.d.abs()) as f64 * 32.0 * 128.0 * 127.0).sum()
    };
    check_gemm("q8_0", &mut make, &[1, 2, 3, 4, 5, 7, 13, 80], 1, |k| k.gemm_q8_0, &mag);
}

#[test]
fn gemm_q4k_matches_scalar() {
    let mut make = |rng: &mut ChaCha8Rng, n: usize| {
        (0..n)
            .map(|_| BlockQ4K {
                d: f16_scale(rng),
                dmin: f16_scale(rng),
                scales: rng.random(),
                qs: std::array::from_fn(|_| rng.random()),
            })
            .collect::<Vec<_>>()
    };
    let mag = |w: &[BlockQ4K], x: &[BlockQ8A]| {
        w.iter()
            .zip(x.chunks_exact(8))
            .map(|(w, xs)| {
                let (d, m) = (w.d.to_f32().abs() as f64, w.dmin.to_f32().abs() as f64);
                xs.iter()
                    .map(|x| (d * 63.0 * 32.0 * 15.0 * 127.0 + m * 63.0 * 32.0 * 127.0) * x.d.abs() as f64)
                    .sum::<f64>()
            })
            .sum()
    };
    check_gemm("q4_k", &mut make, &[1, 2, 10], QK_K / QK, |k| k.gemm_q4k, &mag);
}

#[test]
fn xcorr_matches_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for k in simd_sets() {
        for (w, lags) in [(0, 5), (1, 1), (7, 0), (100, 59), (101, 33), (13, 8), (9, 31), (64, 45), (3, 70)] {
            let a: Vec<f32> = (0..w).map(|_| extreme_f32(&mut rng)).collect();
            let x: Vec<f32> = (0..w + lags).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let (mut got, mut want) = (vec![f32::NAN; lags], vec![0f32; lags]);
            (k.xcorr_f32)(&a, &x, &mut got);
            generic::xcorr_f32(&a, &x, &mut want);
            for l in 0..lags {
                let mag: f64 = (0..w).map(|i| (a[i] * x[l + i]).abs() as f64).sum();
                check_close(k.isa, &format!("xcorr_f32 w={w} lag={l}/{lags}"), got[l], want[l], mag);
            }
        }
    }
}

#[test]
fn float_kernels_match_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for k in simd_sets() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 80, 127, 2561] {
            let a: Vec<f32> = (0..n).map(|_| extreme_f32(&mut rng)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v.clamp(-6e4, 6e4))).collect();
            let mag: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).abs() as f64).sum();
            check_close(k.isa, &format!("dot_f32 n={n}"), (k.dot_f32)(&a, &b), generic::dot_f32(&a, &b), mag);
            let magh: f64 = h.iter().zip(&b).map(|(x, y)| (x.to_f32() * y).abs() as f64).sum();
            check_close(k.isa, &format!("dot_f16 n={n}"), (k.dot_f16)(&h, &b), generic::dot_f16(&h, &b), magh);
            let alpha = rng.random_range(-2.0f32..2.0);
            let (mut y1, mut y2) = (b.clone(), b.clone());
            (k.axpy_f32)(alpha, &a, &mut y1);
            generic::axpy_f32(alpha, &a, &mut y2);
            for i in 0..n {
                check_close(k.isa, "axpy_f32", y1[i], y2[i], (alpha * a[i]).abs() as f64 + b[i].abs() as f64);
            }
            let q: Vec<i8> = (0..n).map(|_| rng.random_range(-128i16..=127) as i8).collect();
            let magq: f64 = q.iter().zip(&b).map(|(&x, y)| (x as f32 * y).abs() as f64).sum();
            check_close(k.isa, &format!("dot_i8 n={n}"), (k.dot_i8)(&q, &b), generic::dot_i8(&q, &b), magq);
            let (mut y1, mut y2) = (b.clone(), b.clone());
            (k.axpy_i8)(alpha, &q, &mut y1);
            generic::axpy_i8(alpha, &q, &mut y2);
            for i in 0..n {
                check_close(k.isa, "axpy_i8", y1[i], y2[i], (alpha * q[i] as f32).abs() as f64 + b[i].abs() as f64);
            }
            let (mut y1, mut y2) = (b.clone(), b.clone());
            (k.axpy_f16)(alpha, &h, &mut y1);
            generic::axpy_f16(alpha, &h, &mut y2);
            for i in 0..n {
                check_close(k.isa, "axpy_f16", y1[i], y2[i], (alpha * h[i].to_f32()).abs() as f64 + b[i].abs() as f64);
            }
        }
    }
}

/// The scalar gemm itself against dequantize-then-dot in f64: pins the reference to the
/// format definitions (activations dequantized too, so only summation error remains).
#[test]
fn scalar_reference_matches_dequantized_math() {
    use crate::gguf::GgmlType;
    use crate::quant::{blocks_as_bytes, dequantize_row};
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let n = QK_K * 2;
    let xs: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut acts = vec![BlockQ8A::ZERO; n / QK];
    generic::quantize_q8a(&xs, &mut acts);
    let xd: Vec<f64> = acts.iter().flat_map(|b| b.qs.map(|q| q as f64 * b.d as f64)).collect();
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4K] {
        let wv: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut bytes = Vec::new();
        crate::quant::quantize_row(ty, &wv, &mut bytes);
        let mut wd = vec![0f32; n];
        dequantize_row(ty, &bytes, &mut wd);
        let want: f64 = wd.iter().zip(&xd).map(|(&a, &b)| a as f64 * b).sum();
        let got = match ty {
            GgmlType::Q4_0 => generic::dot_q4_0(crate::quant::as_blocks(&bytes).unwrap(), &acts),
            GgmlType::Q8_0 => generic::dot_q8_0(crate::quant::as_blocks(&bytes).unwrap(), &acts),
            _ => generic::dot_q4k(crate::quant::as_blocks(&bytes).unwrap(), &acts),
        };
        let _ = blocks_as_bytes::<BlockQ4_0>(&[]);
        assert!((got as f64 - want).abs() < 1e-4, "{ty}: {got} vs {want}");
    }
}

/// Prefill attention tiles (scores and weighted values) against the plain loops, on block
/// shapes around the 4 x 16 register tile.
#[test]
fn attention_tiles_match_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for k in simd_sets() {
        for d in [1, 16, 17, 80] {
            for nq in [1, 3, 4, 5, 13] {
                for nk in [1, 15, 16, 17, 64] {
                    let q: Vec<f32> = (0..nq * d).map(|_| extreme_f32(&mut rng)).collect();
                    let kt: Vec<f32> = (0..d * nk).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                    let (mut s1, mut s2) = (vec![0f32; nq * nk], vec![0f32; nq * nk]);
                    (k.qk_tile)(&q, &kt, d, nk, &mut s1);
                    generic::qk_tile(&q, &kt, d, nk, &mut s2);
                    for i in 0..nq {
                        for j in 0..nk {
                            let mag: f64 = (0..d).map(|c| (q[i * d + c] * kt[c * nk + j]).abs() as f64).sum();
                            let what = format!("qk_tile d {d} nq {nq} nk {nk} [{i},{j}]");
                            check_close(k.isa, &what, s1[i * nk + j], s2[i * nk + j], mag);
                        }
                    }
                    let p: Vec<f32> = (0..nq * nk).map(|_| rng.random_range(0.0f32..1.0)).collect();
                    let v: Vec<f32> = (0..nk * d).map(|_| extreme_f32(&mut rng)).collect();
                    let o0: Vec<f32> = (0..nq * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                    let (mut o1, mut o2) = (o0.clone(), o0.clone());
                    (k.pv_tile)(&p, &v, d, nk, &mut o1);
                    generic::pv_tile(&p, &v, d, nk, &mut o2);
                    for i in 0..nq {
                        for c in 0..d {
                            let mag = o0[i * d + c].abs() as f64
                                + (0..nk).map(|j| (p[i * nk + j] * v[j * d + c]).abs() as f64).sum::<f64>();
                            let what = format!("pv_tile d {d} nq {nq} nk {nk} [{i},{c}]");
                            check_close(k.isa, &what, o1[i * d + c], o2[i * d + c], mag);
                        }
                    }
                }
            }
        }
    }
}

/// Decode attention's per-tile kernels (many rows per call) against the plain loops.
#[test]
fn row_tile_kernels_match_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for k in simd_sets() {
        for d in [1, 8, 17, 80] {
            for n in [1, 5, 128] {
                let q: Vec<f32> = (0..d).map(|_| extreme_f32(&mut rng)).collect();
                let h: Vec<f16> = (0..n * d).map(|_| f16::from_f32(rng.random_range(-8.0f32..8.0))).collect();
                let b: Vec<i8> = (0..n * d).map(|_| rng.random_range(-128i16..=127) as i8).collect();
                let p: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..1.0)).collect();
                let (mut o1, mut o2) = (vec![0f32; n], vec![0f32; n]);
                (k.dot_rows_f16)(&q, &h, &mut o1);
                generic::dot_rows_f16(&q, &h, &mut o2);
                (k.dot_rows_i8)(&q, &b, &mut o1[..0]); // empty output: nothing read or written
                for j in 0..n {
                    let mag: f64 = (0..d).map(|c| (q[c] * h[j * d + c].to_f32()).abs() as f64).sum();
                    check_close(k.isa, &format!("dot_rows_f16 d {d} n {n} [{j}]"), o1[j], o2[j], mag);
                }
                (k.dot_rows_i8)(&q, &b, &mut o1);
                generic::dot_rows_i8(&q, &b, &mut o2);
                for j in 0..n {
                    let mag: f64 = (0..d).map(|c| (q[c] * b[j * d + c] as f32).abs() as f64).sum();
                    check_close(k.isa, &format!("dot_rows_i8 d {d} n {n} [{j}]"), o1[j], o2[j], mag);
                }
                let (mut y1, mut y2) = (q.clone(), q.clone());
                (k.axpy_rows_f16)(&p, &h, &mut y1);
                generic::axpy_rows_f16(&p, &h, &mut y2);
                let (mut z1, mut z2) = (q.clone(), q.clone());
                (k.axpy_rows_i8)(&p, &b, &mut z1);
                generic::axpy_rows_i8(&p, &b, &mut z2);
                for c in 0..d {
                    let magh =
                        q[c].abs() as f64 + (0..n).map(|j| (p[j] * h[j * d + c].to_f32()).abs() as f64).sum::<f64>();
                    check_close(k.isa, &format!("axpy_rows_f16 d {d} n {n} [{c}]"), y1[c], y2[c], magh);
                    let magb =
                        q[c].abs() as f64 + (0..n).map(|j| (p[j] * b[j * d + c] as f32).abs() as f64).sum::<f64>();
                    check_close(k.isa, &format!("axpy_rows_i8 d {d} n {n} [{c}]"), z1[c], z2[c], magb);
                }
            }
        }
    }
}

/// The vectorized softmax exponentials against libm's, relative to each value (plus the sum),
/// over the range softmax sees: 0 down to far below e^-87 and −∞ (masked keys).
#[test]
fn exp_sum_matches_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for k in simd_sets() {
        for n in [0, 1, 7, 8, 9, 64, 131] {
            let m = rng.random_range(-5.0f32..5.0);
            let s: Vec<f32> = (0..n)
                .map(|i| match i % 7 {
                    0 => f32::NEG_INFINITY,
                    1 => m - rng.random_range(80.0f32..200.0),
                    2 => m,
                    _ => m - rng.random_range(0.0f32..30.0),
                })
                .collect();
            let (mut a, mut b) = (s.clone(), s.clone());
            let (sa, sb) = ((k.exp_sum)(&mut a, m), generic::exp_sum(&mut b, m));
            for i in 0..n {
                let tol = 3e-7 * b[i] + 1e-38;
                assert!((a[i] - b[i]).abs() <= tol, "{} exp n {n} [{i}] of {}: {} vs {}", k.isa, s[i] - m, a[i], b[i]);
            }
            assert!((sa - sb).abs() <= 1e-6 * sb.abs() + 1e-37, "{} exp sum n {n}: {sa} vs {sb}", k.isa);
        }
    }
}

/// Random 4-bit KV tiles: codes anywhere in 0..16, scales of both signs with some all-zero.
fn q4_tiles(rng: &mut ChaCha8Rng, d: usize, nt: usize) -> (Vec<u8>, Vec<f16>) {
    let codes: Vec<u8> = (0..nt * kv_q4::tile_bytes(d)).map(|_| rng.random()).collect();
    let scales = (0..nt * d)
        .map(|_| if rng.random_range(0..8) == 0 { f16::ZERO } else { f16::from_f32(rng.random_range(-0.5f32..0.5)) })
        .collect();
    (codes, scales)
}

/// The 4-bit cache kernels use the same integer products and the same rounding of the weights
/// as the scalar reference, in the same order of float operations, so they must agree exactly.
#[test]
fn kv_q4_tiles_match_scalar() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    for k in simd_sets() {
        for d in [16, 48, 80, 128] {
            for nt in [1, 2, 9] {
                let (codes, scales) = q4_tiles(&mut rng, d, nt);
                let q8: Vec<i8> = (0..d).map(|_| rng.random_range(-127i16..=127) as i8).collect();
                let (mut a, mut b) = (vec![0f32; nt * 16], vec![0f32; nt * 16]);
                (k.dot_tiles_q4)(&q8, &codes, &scales, &mut a);
                kv_q4::dot_tiles(&q8, &codes, &scales, &mut b);
                assert_eq!(a, b, "{}: dot_tiles_q4 d {d} tiles {nt}", k.isa);
                // Softmax weights: mostly tiny, some exactly 0 (padding rows), one tile all 0.
                let p: Vec<f32> = (0..nt * 16)
                    .map(|i| match (i / 16 == 1, rng.random_range(0..6)) {
                        (true, _) | (_, 0) => 0.0,
                        (_, 1) => 1.0,
                        _ => rng.random_range(0.0f32..1.0).powi(8),
                    })
                    .collect();
                let o0: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                let (mut y1, mut y2) = (o0.clone(), o0.clone());
                (k.axpy_tiles_q4)(&p, &codes, &scales, &mut y1);
                kv_q4::axpy_tiles(&p, &codes, &scales, &mut y2);
                assert_eq!(y1, y2, "{}: axpy_tiles_q4 d {d} tiles {nt}", k.isa);
            }
        }
    }
}

/// The scalar 4-bit reference against plain float math on the dequantized rows: the layout
/// round trip is within half a quantization step, every row lands where it was written, and the
/// scores and weighted sums are off only by the query's and the weights' int8 rounding.
#[test]
fn kv_q4_reference_matches_dequantized_math() {
    use kv_q4::Kind;
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for d in [16, 80] {
        let nt = 3;
        let rows: Vec<Vec<f32>> =
            (0..nt * 16).map(|_| (0..d).map(|_| rng.random_range(-2.0f32..2.0)).collect()).collect();
        for kind in [Kind::Keys, Kind::Values] {
            let mut codes = vec![0u8; nt * kv_q4::tile_bytes(d)];
            let mut scales = vec![f16::ZERO; nt * d];
            // Written in a scrambled order: each write must leave the other rows' codes alone.
            for j in (0..nt * 16).map(|i| (i * 7) % (nt * 16)) {
                let (t, r) = (j / 16, j % 16);
                let tb = kv_q4::tile_bytes(d);
                kv_q4::quantize_row(
                    kind,
                    &rows[j],
                    &mut codes[t * tb..(t + 1) * tb],
                    &mut scales[t * d..(t + 1) * d],
                    r,
                );
            }
            let deq: Vec<Vec<f32>> = (0..nt * 16)
                .map(|j| {
                    let (t, r, tb) = (j / 16, j % 16, kv_q4::tile_bytes(d));
                    let mut o = vec![0f32; d];
                    kv_q4::dequantize_row(kind, &codes[t * tb..(t + 1) * tb], &scales[t * d..(t + 1) * d], r, &mut o);
                    o
                })
                .collect();
            for t in 0..nt {
                let tb = kv_q4::tile_bytes(d);
                let (tile, sc) = (&codes[t * tb..(t + 1) * tb], &scales[t * d..(t + 1) * d]);
                let mut whole = vec![0f32; 16 * d];
                for r in 0..16 {
                    let want = &deq[t * 16 + r];
                    if kind == Kind::Values {
                        kv_q4::dequantize_values(tile, sc, &mut whole);
                        assert_eq!(&whole[r * d..(r + 1) * d], want.as_slice(), "d {d}: dequantize_values row {r}");
                    } else {
                        kv_q4::dequantize_keys_t(tile, sc, d, &mut whole, 16);
                        let got: Vec<f32> = (0..d).map(|i| whole[i * 16 + r]).collect();
                        assert_eq!(&got, want, "d {d}: dequantize_keys_t row {r}");
                    }
                }
            }
            for (x, y) in rows.iter().zip(&deq) {
                for (g, (xs, ys)) in x.chunks(16).zip(y.chunks(16)).enumerate() {
                    let step = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 8.0;
                    for (a, b) in xs.iter().zip(ys) {
                        // As in ggml's q4_0, the largest magnitude maps to code −8 exactly and
                        // the other sign's top value clips at +7: up to one step off there.
                        let clipped = step > 0.0 && (b.abs() / step - 7.0).abs() < 0.01 && a.abs() > 7.0 * step;
                        let tol = if clipped { step * 1.002 } else { step * 0.502 };
                        assert!((a - b).abs() <= tol + 1e-6, "{kind:?} d {d} group {g}: {a} vs {b}");
                    }
                }
            }
            if kind == Kind::Keys {
                let q: Vec<f32> = (0..d).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                let mut q8 = vec![0i8; d];
                let qs = kv_q4::quantize_query(&q, &mut q8);
                let mut out = vec![0f32; nt * 16];
                kv_q4::dot_tiles(&q8, &codes, &scales, &mut out);
                for (j, k) in deq.iter().enumerate() {
                    let exact: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                    let bound = qs * 0.5 * k.iter().map(|v| v.abs()).sum::<f32>() + 1e-4;
                    assert!((out[j] * qs - exact).abs() <= bound, "score {j}: {} vs {exact}", out[j] * qs);
                }
            } else {
                let p: Vec<f32> = (0..nt * 16).map(|_| rng.random_range(0.0f32..1.0)).collect();
                let mut o = vec![0f32; d];
                kv_q4::axpy_tiles(&p, &codes, &scales, &mut o);
                for i in 0..d {
                    let exact: f32 = (0..nt * 16).map(|j| p[j] * deq[j][i]).sum();
                    // Per (tile, group) the weights round by ≤ max|w| / 254; |n − 8| ≤ 8.
                    let bound: f32 = (0..nt)
                        .map(|t| {
                            let g = i / 16;
                            let wmax = (0..16).map(|r| (p[t * 16 + r] * scales[t * d + g * 16 + r].to_f32()).abs());
                            16.0 * 8.0 * wmax.fold(0f32, f32::max) / 254.0
                        })
                        .sum::<f32>()
                        + 1e-4;
                    assert!((o[i] - exact).abs() <= bound, "value dim {i}: {} vs {exact}", o[i]);
                }
            }
        }
    }
}
