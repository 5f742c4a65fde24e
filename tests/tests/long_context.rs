//! Long context: KV cache types, ALiBi position interpolation beyond the training length,
//! context shifting, memory budgets, and session save/restore.

use pocketlm_core::convert::{synth::synth, Preset};
use pocketlm_core::error::Error;
use pocketlm_core::kv_cache::KvType;
use pocketlm_core::model::AlibiScaling;
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{ContextPolicy, GenerateOptions, Session, SessionOptions, StopReason};
use pocketlm_core::tokenizer::TokenizerSpec;
use pocketlm_core::Model;
use pocketlm_tests::*;
use std::sync::Arc;

fn load(f: &Fixture, tmp: &std::path::Path) -> Arc<Model> {
    Arc::new(Model::load(convert_fixture(f, Preset::F32, None, tmp)).unwrap())
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: n, sampling: SamplingParams::greedy(), stop_at_eos: false, ..Default::default() }
}

fn opts(n_ctx: usize, kv: KvType) -> SessionOptions {
    SessionOptions { n_ctx, kv_type: kv, ..Default::default() }
}

fn run_ids(s: &mut Session, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    s.generate_ids(prompt, &greedy(n), &mut |id| {
        ids.push(id);
        true
    })
    .unwrap();
    ids
}

/// q8_0 stores each head row as int8 with one scale: relative error <= 1/254 per value. On the
/// fixtures (logit RMS ~0.2) that moves logits by at most ~0.02 (measured 0.003-0.009, printed);
/// f16 keeps every greedy token. q4 rounds each value to 1/16 of its group's largest (and
/// scores an int8 query): about 16x q8_0's error per value, so its bound is 16x as wide.
#[test]
fn quantized_caches_track_the_f32_cache() {
    let tmp = tempfile::tempdir().unwrap();
    for f in all_fixtures() {
        let name = f.name.as_str();
        let model = load(&f, tmp.path());
        let g = golden(&f);
        let v = model.hparams.n_vocab;
        for (kv, bound) in [(KvType::F16, 2e-3), (KvType::Q8_0, 3e-2), (KvType::Q4, 0.5)] {
            let mut s = Session::new(model.clone(), &opts(128, kv)).unwrap();
            let last = s.prefill(&g.input_ids).unwrap().to_vec();
            let err = max_abs_diff(&last, &g.logits_last4.data[3 * v..]);
            println!("{name:<16} {:<5} cache: last prompt logits within {err:.2e} of the reference", kv.name());
            assert!(err <= bound, "{name} {}: {err}", kv.name());
            if kv == KvType::F16 {
                s.reset();
                assert_eq!(run_ids(&mut s, &g.input_ids, 16), g.greedy_ids, "{name}: f16 cache greedy ids");
            }
        }
    }
}

/// 3x the training length on a tiny model with dynamic interpolation: runs, stays finite, and
/// uses slope / (K / train_len) — different logits from no interpolation at the same point.
#[test]
fn dynamic_interpolation_runs_past_three_times_the_training_length() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TokenizerSpec::from_hf_json(&std::fs::read_to_string(tokenizer_json()).unwrap()).unwrap();
    let path = tmp.path().join("tiny.gguf");
    synth("btlm-tiny", Preset::F32, 3, &spec, &path, &mut |_| {}).unwrap();
    let model = Arc::new(Model::load(&path).unwrap());
    let train = model.hparams.n_ctx_train; // 128
    let prompt: Vec<u32> = (0..2 * train as u32).map(|i| (i * 7919) % 50000).collect();
    let mut logits = Vec::new();
    for scaling in [AlibiScaling::Dynamic { train_seq_len: train }, AlibiScaling::None] {
        let o = SessionOptions { n_ctx: 3 * train, alibi_scaling: scaling, ..opts(0, KvType::F16) };
        let mut s = Session::new(model.clone(), &o).unwrap();
        assert_eq!(s.alibi_scaling(), scaling);
        let stats = s.generate_ids(&prompt, &greedy(train), &mut |_| true).unwrap();
        assert_eq!(stats.generated_tokens, train);
        assert_eq!(s.tokens().len(), 3 * train);
        let l = s.prefill(&[]).unwrap().to_vec();
        assert!(l.iter().all(|v| v.is_finite()));
        logits.push(l);
    }
    assert_eq!(AlibiScaling::Dynamic { train_seq_len: train }.scale(3 * train), 3.0);
    let diff = logits[0].iter().zip(&logits[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff > 1e-3, "interpolation had no effect ({diff})");
}

#[test]
fn context_shift_keeps_the_head_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(&primary(), tmp.path());
    let g = golden(&primary());
    // q4 too: its rows move inside and across 16-position tiles.
    for kv in [KvType::F16, KvType::Q4] {
        let o = SessionOptions { context_policy: ContextPolicy::Shift { keep: 4 }, ..opts(40, kv) };
        let mut s = Session::new(model.clone(), &o).unwrap();
        let stats = s.generate_ids(&g.input_ids, &greedy(100), &mut |_| true).unwrap();
        assert_eq!(stats.stop_reason, StopReason::MaxTokens);
        assert_eq!(stats.generated_tokens, 100);
        assert!(s.tokens().len() <= 40);
        assert_eq!(&s.tokens()[..4], &g.input_ids[..4], "{}: the first tokens are kept", kv.name());
    }
    // Without a shift policy the same run stops at the context limit.
    let mut s = Session::new(model, &opts(40, KvType::F16)).unwrap();
    let stats = s.generate_ids(&g.input_ids, &greedy(100), &mut |_| true).unwrap();
    assert_eq!(stats.stop_reason, StopReason::ContextFull);
}

#[test]
fn memory_budget_counts_weights_cache_and_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(&primary(), tmp.path());
    let o = opts(1000, KvType::Q8_0);
    let m = Session::memory_needed(&model, &o);
    let (l, h) = (model.hparams.n_layer as u64, model.hparams.n_head as u64);
    let d = model.hparams.n_embd as u64 / h;
    // tokens x k,v x layers x heads x row: q8_0 rows are d int8 values + one f32 scale.
    assert_eq!(m.kv_cache, 1000 * 2 * l * h * (d + 4));
    // q4: d/2 bytes of codes + one f16 scale per 16 values, for whole 16-position tiles.
    assert_eq!(Session::memory_needed(&model, &opts(1000, KvType::Q4)).kv_cache, 1008 * 2 * l * h * (d / 2 + d / 8));
    assert_eq!(m.weights, model.weight_bytes());
    assert!(m.scratch > 0);
    let over = SessionOptions { mem_budget: Some(m.total() - 1), ..o.clone() };
    match Session::new(model.clone(), &over) {
        Err(Error::OverBudget { needed, detail, .. }) => {
            assert_eq!(needed, m.total());
            assert!(detail.contains("KV cache") && detail.contains("weights"), "{detail}");
        }
        other => panic!("expected OverBudget, got {:?}", other.err()),
    }
    assert!(Session::new(model, &SessionOptions { mem_budget: Some(m.total()), ..o }).is_ok());
}

#[test]
fn save_and_restore_continue_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let model = load(&primary(), tmp.path());
    let g = golden(&primary());
    for kv in [KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q4] {
        let mut a = Session::new(model.clone(), &opts(128, kv)).unwrap();
        run_ids(&mut a, &g.input_ids, 8);
        let file = tmp.path().join(format!("chat-{}.plms", kv.name()));
        a.save(&file).unwrap();
        let before = a.prefill(&[]).unwrap().to_vec();
        let cont_a = run_ids(&mut a, &[], 8);

        let mut b = Session::new(model.clone(), &opts(128, kv)).unwrap();
        b.restore(&file).unwrap();
        assert_eq!(b.prefill(&[]).unwrap(), before.as_slice(), "restored logits are bit-identical");
        let cont_b = run_ids(&mut b, &[], 8);
        assert_eq!(cont_a, cont_b, "{}: continuation after restore", kv.name());
        let la = a.prefill(&[]).unwrap().to_vec();
        let lb = b.prefill(&[]).unwrap().to_vec();
        assert!(la.iter().zip(&lb).all(|(x, y)| x.to_bits() == y.to_bits()), "bit-identical continuation");
    }

    // Corrupted, other model, other cache type, truncated: each refused, session unchanged.
    let file = tmp.path().join("chat-f16.plms");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let bad = tmp.path().join("bad.plms");
    std::fs::write(&bad, &bytes).unwrap();
    let mut s = Session::new(model.clone(), &opts(128, KvType::F16)).unwrap();
    let e = s.restore(&bad).unwrap_err().to_string();
    assert!(e.contains("checksum") && e.contains("bad.plms"), "{e}");
    std::fs::write(&bad, &bytes[..100]).unwrap();
    assert!(s.restore(&bad).is_err());
    assert!(s.tokens().is_empty(), "a failed restore leaves the session alone");
    let e = Session::new(model.clone(), &opts(128, KvType::Q8_0)).unwrap().restore(&file).unwrap_err().to_string();
    assert!(e.contains("KV cache"), "{e}");
    // Another model: the same weights with another logit scale.
    let other_dir = tmp.path().join("other-model");
    std::fs::create_dir_all(&other_dir).unwrap();
    for f in std::fs::read_dir(primary().model_dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), other_dir.join(f.file_name())).unwrap();
    }
    let cfg = std::fs::read_to_string(other_dir.join("config.json")).unwrap();
    std::fs::write(
        other_dir.join("config.json"),
        cfg.replace("\"mup_output_alpha\": 2.22", "\"mup_output_alpha\": 2.5"),
    )
    .unwrap();
    let other = load(&Fixture { name: "other".into(), model_dir: other_dir, ..primary() }, tmp.path());
    let e = Session::new(other, &opts(128, KvType::F16)).unwrap().restore(&file).unwrap_err().to_string();
    assert!(e.contains("different model"), "{e}");
    let e = Session::new(model, &opts(10, KvType::F16)).unwrap().restore(&file).unwrap_err().to_string();
    assert!(e.contains("context"), "{e}");
}
