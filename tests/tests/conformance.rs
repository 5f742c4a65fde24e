//! The golden-fixture conformance suite: converted fixtures must reproduce the reference BTLM
//! implementation's logits (1e-4 for f32, 2e-2 for f16), argmaxes and greedy continuations.

use pocketlm_core::convert::Preset;
use pocketlm_core::kv_cache::{KvCache, KvType};
use pocketlm_core::model::{Logits, Model};
use pocketlm_core::sampling::argmax;
use pocketlm_tests::*;

struct Errors {
    last4: f64,
    steps: f64,
}

/// Runs one fixture: prompt in one call, then 16 greedy steps through the KV cache.
fn run_fixture(f: &Fixture, ty: Preset, kv: KvType) -> Errors {
    let name = &f.name;
    let tmp = tempfile::tempdir().unwrap();
    let path = convert_fixture(f, ty, None, tmp.path());
    let model = Model::load(&path).unwrap();
    let g = golden(f);
    let v = model.hparams.n_vocab;
    let t = g.input_ids.len();
    let mut cache = KvCache::new(&model.hparams, t + 32, kv, None).unwrap();

    let logits = model.forward(&mut cache, &g.input_ids, t, Logits::All, &|| false).unwrap().unwrap();
    assert_eq!(logits.len(), t * v);
    let argmax_all: Vec<u32> = logits.chunks_exact(v).map(|r| argmax(r) as u32).collect();
    assert_eq!(argmax_all, g.argmax_all, "{name} {ty:?}: argmax over the prompt");
    let last4 = max_abs_diff(&logits[(t - 4) * v..], &g.logits_last4.data);

    let mut steps = 0f64;
    let mut next = argmax(&logits[(t - 1) * v..]) as u32;
    for (i, &want) in g.greedy_ids.iter().enumerate() {
        assert_eq!(next, want, "{name} {ty:?}: greedy token {i}");
        let n_keys = cache.len() + 1;
        let l = model.forward(&mut cache, &[next], n_keys, Logits::Last, &|| false).unwrap().unwrap();
        steps = steps.max(max_abs_diff(&l, &g.greedy_step_logits.data[i * v..(i + 1) * v]));
        next = argmax(&l) as u32;
    }
    Errors { last4, steps }
}

#[test]
fn f32_matches_reference_on_every_fixture() {
    for f in all_fixtures() {
        let name = f.name.as_str();
        let e = run_fixture(&f, Preset::F32, KvType::F32);
        println!("{name:<16} f32: max |dlogit| prompt-last4 {:.2e}, greedy steps {:.2e}", e.last4, e.steps);
        assert!(e.last4 <= 1e-4, "{name}: logits_last4 error {}", e.last4);
        assert!(e.steps <= 1e-4, "{name}: greedy_step_logits error {}", e.steps);
    }
}

#[test]
fn f16_weights_keep_argmax_and_greedy() {
    for f in all_fixtures() {
        let name = f.name.as_str();
        let e = run_fixture(&f, Preset::F16, KvType::F32);
        println!("{name:<16} f16: max |dlogit| prompt-last4 {:.2e}, greedy steps {:.2e}", e.last4, e.steps);
        assert!(e.last4 <= 2e-2, "{name}: logits_last4 error {}", e.last4);
        assert!(e.steps <= 2e-2, "{name}: greedy_step_logits error {}", e.steps);
    }
}
