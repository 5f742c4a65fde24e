//! The quantized engine on the golden fixtures.
//!
//! 1. Against the f32 engine run on the *dequantized* weights of the same file: weight format
//!    error is excluded by construction, so what is left is the int8 quantization of the
//!    activations (per 32-block, error <= max|x|/254 per element) and summation order. This is
//!    the test that catches kernel bugs.
//! 2. Quality against the reference, per fixture and format (printed; sanity bounds only: the
//!    fixtures' random weights are large and their top-1 margins tiny, see issue #3).
//! 3. Zero-padding n_inner is exact.

use pocketlm_core::convert::{requantize, Preset};
use pocketlm_core::kv_cache::{KvCache, KvType};
use pocketlm_core::model::{Logits, Model};
use pocketlm_core::sampling::argmax;
use pocketlm_tests::*;
use std::path::Path;

fn prompt_logits(model: &Model, ids: &[u32]) -> Vec<f32> {
    let mut cache = KvCache::new(&model.hparams, ids.len(), KvType::F32, None).unwrap();
    model.forward(&mut cache, ids, ids.len(), Logits::All, &|| false).unwrap().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn dequantized(q: &Path, tmp: &Path) -> Model {
    let out = tmp.join(format!("{}-deq.gguf", q.file_stem().unwrap().to_string_lossy()));
    requantize(q, &out, Preset::F32, &mut |_| {}).unwrap();
    Model::load(out).unwrap()
}

/// Bound on |quantized - dequantized-f32| logits. Activation rounding is uniform in
/// ±max|x|/254 per element (RMS 0.23% of the block maximum) on every matmul input; on these
/// fixtures (logit RMS 0.18-0.22) first-order propagation through 2-3 layers predicts an RMS
/// logit error near 0.005 and a maximum over 50k x T logits of about 5 sigma ≈ 0.025-0.04.
/// Measured maxima are 0.018-0.041 (printed). 0.08 is twice the worst: a real kernel bug (a
/// dropped block, a wrong scale, a wrong nibble order) moves logits by 0.2 or more.
const ACT_QUANT_BOUND: f32 = 0.08;

#[test]
fn quantized_engine_matches_f32_engine_on_dequantized_weights() {
    let tmp = tempfile::tempdir().unwrap();
    for f in all_fixtures() {
        let name = f.name.as_str();
        let g = golden(&f);
        for preset in [Preset::Q8_0, Preset::Q4_0, Preset::Q4_0R16, Preset::Q4K] {
            let q = convert_fixture(&f, preset, None, tmp.path());
            let (mq, md) = (Model::load(&q).unwrap(), dequantized(&q, tmp.path()));
            let (lq, ld) = (prompt_logits(&mq, &g.input_ids), prompt_logits(&md, &g.input_ids));
            let err = max_diff(&lq, &ld);
            let rms = (ld.iter().map(|v| v * v).sum::<f32>() / ld.len() as f32).sqrt();
            println!(
                "{name:<16} {:<6} quantized vs dequantized-f32: max |dlogit| {err:.4} (logit rms {rms:.2})",
                preset.name()
            );
            // The error scales with the logits; the trained model's are 12x the fixtures' (RMS
            // 2.5): 0.08 x RMS = 0.2 for it, 2.3x its measured worst (0.086, q8_0).
            let bound = ACT_QUANT_BOUND.max(0.08 * rms);
            assert!(err <= bound, "{name} {}: {err} (bound {bound})", preset.name());
        }
    }
}

#[test]
fn quality_against_reference_per_fixture_and_format() {
    let tmp = tempfile::tempdir().unwrap();
    println!("{:<16} {:<7} {:>10} {:>14}", "fixture", "format", "top-1 agr.", "max |dlogit|");
    for f in all_fixtures() {
        let name = f.name.as_str();
        let g = golden(&f);
        for preset in [Preset::F16, Preset::Q8_0, Preset::Q4KM, Preset::Q4K, Preset::Q4_0] {
            let model = Model::load(convert_fixture(&f, preset, None, tmp.path())).unwrap();
            let v = model.hparams.n_vocab;
            let logits = prompt_logits(&model, &g.input_ids);
            let agree = logits.chunks_exact(v).zip(&g.argmax_all).filter(|(l, &a)| argmax(l) as u32 == a).count();
            let agreement = agree as f64 / g.argmax_all.len() as f64;
            let t = g.input_ids.len();
            let err = max_abs_diff(&logits[(t - 4) * v..], &g.logits_last4.data);
            println!("{name:<16} {:<7} {agreement:>10.2} {err:>14.4}", preset.name());
            // Sanity bounds in the spirit of the float64 simulation quoted in issue #3 (Q8_0:
            // agreement 0.88-1.00, |dlogit| <= 0.07; Q4_0: 0.15-0.50, <= 0.98), widened for
            // activation quantization. Q4_K falls back to Q8_0 where rows are not 256-wide.
            //
            // The trained btlm-mini (logit RMS 2.5, not 0.2) has its own bounds, from its
            // measured figures (top-1 / max |dlogit|: q8_0 1.00 / 0.061, q4_k_m 0.90 / 0.32,
            // q4_k 0.88 / 0.47, q4_0 0.93 / 0.54) with about 2x headroom on the error.
            let trained = name == PRIMARY;
            let (min_agree, max_err) = match (preset, trained) {
                (Preset::F16, _) => (1.0, 0.02),
                (Preset::Q8_0, true) => (0.95, 0.15),
                (_, true) => (0.8, 1.0),
                (Preset::Q8_0 | Preset::Q4KM, false) => (0.7, 0.25),
                (_, false) => (0.05, 2.0),
            };
            assert!(agreement >= min_agree && err <= max_err, "{name} {}: {agreement} {err}", preset.name());
        }
    }
}

#[test]
fn padding_n_inner_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let g = golden(&primary());
    let base =
        prompt_logits(&Model::load(convert_fixture(&primary(), Preset::F32, None, tmp.path())).unwrap(), &g.input_ids);
    for pad in [32, 256] {
        let model = Model::load(convert_fixture(&primary(), Preset::F32, Some(pad), tmp.path())).unwrap();
        assert_eq!(model.hparams.n_inner, 682usize.div_ceil(pad) * pad);
        assert_eq!(model.hparams.n_inner_original, 682);
        let err = max_diff(&prompt_logits(&model, &g.input_ids), &base);
        println!("n_inner 682 padded to {}: max |dlogit| {err:.2e}", model.hparams.n_inner);
        assert!(err <= 1e-5, "padding to {pad} changed logits by {err}");
    }
}

/// Q4_K needs rows of 256: the fixtures (64/96 wide) fall back to Q8_0, so the Q4_K kernels
/// are checked end to end on a synthetic model of btlm-small's shape (n_embd 256, n_inner 682
/// padded to 768), against its own dequantized weights.
#[test]
fn q4_k_engine_matches_dequantized_on_a_256_wide_model() {
    use pocketlm_core::convert::synth::synth;
    use pocketlm_core::tokenizer::TokenizerSpec;
    let tmp = tempfile::tempdir().unwrap();
    let spec = TokenizerSpec::from_hf_json(&std::fs::read_to_string(tokenizer_json()).unwrap()).unwrap();
    let ids: Vec<u32> = (0..40).map(|i| (i * 977 + 13) % 50257).collect();
    for preset in [Preset::Q4K, Preset::Q4_0, Preset::Q8_0] {
        let q = tmp.path().join(format!("small-{}.gguf", preset.name()));
        synth("btlm-small", preset, 5, &spec, &q, &mut |_| {}).unwrap();
        let mq = Model::load(&q).unwrap();
        let types: std::collections::BTreeSet<_> = mq.file.header.tensors.iter().map(|t| t.ty.name()).collect();
        assert!(types.contains(preset.name().to_uppercase().as_str()), "{types:?}");
        let md = dequantized(&q, tmp.path());
        let (lq, ld) = (prompt_logits(&mq, &ids), prompt_logits(&md, &ids));
        let err = max_diff(&lq, &ld);
        let rms = (ld.iter().map(|v| v * v).sum::<f32>() / ld.len() as f32).sqrt();
        println!(
            "btlm-small {:<6} quantized vs dequantized-f32: max |dlogit| {err:.4} (logit rms {rms:.3})",
            preset.name()
        );
        // Relative to this model's logit scale, the same budget as the fixtures (0.08 / 0.2).
        assert!(err <= 0.4 * rms, "{}: {err} vs rms {rms}", preset.name());
    }
}

/// `q4_0_r16` files store the matrices whose row count is a multiple of 16 as Q4_0_R16 (16
/// rows interleaved for the decode kernels). The layout is a permutation: every tensor dequantizes
/// to exactly the values of the plain layout, prefill (which de-interleaves into the plain
/// gemm) gives bit-identical logits, and decode through the interleaved kernel agrees to the
/// float rounding of another summation order.
#[test]
fn interleaved_q4_0_matches_plain_layout() {
    use pocketlm_core::gguf::GgmlType;
    use pocketlm_core::quant::dequantize_tensor_row;
    let tmp = tempfile::tempdir().unwrap();
    for f in all_fixtures() {
        let g = golden(&f);
        let (r16, plain) = (
            Model::load(convert_fixture(&f, Preset::Q4_0R16, None, tmp.path())).unwrap(),
            Model::load(convert_fixture(&f, Preset::Q4_0, None, tmp.path())).unwrap(),
        );
        let mut interleaved = 0;
        for t in &r16.file.header.tensors {
            let p = plain.file.header.tensor(&t.name).unwrap();
            assert_ne!(p.ty, GgmlType::Q4_0R16, "{}: the plain preset interleaved", t.name);
            if t.ty != GgmlType::Q4_0R16 {
                assert_eq!(r16.file.tensor_bytes(t), plain.file.tensor_bytes(p), "{}", t.name);
                continue;
            }
            interleaved += 1;
            assert_eq!((p.ty, &p.dims), (GgmlType::Q4_0, &t.dims), "{}", t.name);
            assert_ne!(r16.file.tensor_bytes(t), plain.file.tensor_bytes(p), "{}: not permuted", t.name);
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..rows {
                dequantize_tensor_row(t.ty, r16.file.tensor_bytes(t), cols, r, &mut a);
                dequantize_tensor_row(p.ty, plain.file.tensor_bytes(p), cols, r, &mut b);
                assert_eq!(a, b, "{} row {r}", t.name);
            }
        }
        assert!(interleaved >= 4 * r16.hparams.n_layer, "{}: {interleaved} interleaved tensors", f.name);
        // Prefill of the whole prompt (more tokens than a draft batch): same gemm, same bits.
        let ids = &g.input_ids;
        assert_eq!(prompt_logits(&r16, ids), prompt_logits(&plain, ids), "{}: prefill", f.name);
        // Decode token by token: the interleaved gemv where the CPU has one.
        let step_logits = |m: &Model| {
            let mut cache = KvCache::new(&m.hparams, ids.len(), KvType::F32, None).unwrap();
            let mut all = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                all.extend(m.forward(&mut cache, &[*id], i + 1, Logits::Last, &|| false).unwrap().unwrap());
            }
            all
        };
        let (da, db) = (step_logits(&r16), step_logits(&plain));
        let rms = (db.iter().map(|v| v * v).sum::<f32>() / db.len() as f32).sqrt();
        let err = max_diff(&da, &db);
        println!("{:<16} q4_0 interleaved vs plain, decode: max |dlogit| {err:.2e} (logit rms {rms:.2})", f.name);
        // Float rounding alone gives ~1e-7, but a last-bit difference can flip one int8
        // activation code on a rounding tie at the next matmul: measured 0.008 (tiny-pi, RMS
        // 0.18) and 0.02 (btlm-mini, RMS 2.5). That is the activation-quantization budget of
        // the test above; a wrong row, scale or nibble moves logits by 0.2 or more (and the
        // kernel itself is checked against the scalar reference in the core's kernel tests).
        let bound = ACT_QUANT_BOUND.max(0.08 * rms);
        assert!(err <= bound, "{}: decode differs by {err} (bound {bound})", f.name);
    }
}
