//! Speculative decoding by prompt lookup is lossless: with drafts on, greedy output is the
//! plain decoding's, seeded sampling draws the very same tokens (one draw per emitted token,
//! from logits that differ only by float rounding), and a cancel while a draft is verified
//! stops at once and leaves a session that continues exactly. (That tokens drawn while walking
//! a draft follow the model's distribution is a chi-square test in core/src/draft.rs.)

use pocketlm_core::convert::Preset;
use pocketlm_core::kv_cache::KvType;
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{CancelHandle, GenerateOptions, GenerationStats, Session, SessionOptions, StopReason};
use pocketlm_core::Model;
use pocketlm_tests::*;
use std::sync::Arc;

/// A passage, then its start again: a model continues by copying, which prompt lookup drafts.
fn rewrite_prompt(model: &Model) -> Vec<u32> {
    let text = std::fs::read_to_string(vendored_dir().join("text/austen_persuasion.txt")).unwrap();
    let passage: String = text.chars().skip(2000).take(300).collect();
    // Cut before a space: the next token (" word") is then the passage's own next token.
    let head = &passage[..passage[..120].rfind(' ').unwrap()];
    let prompt = format!("{passage}\n\nThe same passage again:\n\n{head}");
    model.tokenizer.encode(&prompt).unwrap()
}

fn generate(s: &mut Session, prompt: &[u32], opts: &GenerateOptions) -> (Vec<u32>, GenerationStats) {
    s.reset();
    let mut ids = Vec::new();
    let stats = s
        .generate_ids(prompt, opts, &mut |id| {
            ids.push(id);
            true
        })
        .unwrap();
    (ids, stats)
}

fn opts(n: usize, sampling: SamplingParams, draft: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: n, sampling, stop_at_eos: false, draft, ..Default::default() }
}

fn session(model: &Arc<Model>, kv_type: KvType) -> Session {
    Session::new(model.clone(), &SessionOptions { n_ctx: 1024, kv_type, ..Default::default() }).unwrap()
}

/// Greedy: drafts on (several lengths) give exactly the tokens of plain decoding, on btlm-mini
/// in every weight format and KV cache type, and on the random-weight fixtures; on btlm-mini's
/// rewrite prompt at least 8 of the 64 tokens come from accepted drafts.
#[test]
fn greedy_output_is_plain_decoding() {
    let tmp = tempfile::tempdir().unwrap();
    for f in all_fixtures() {
        let presets: &[Preset] =
            if f.name == PRIMARY { &[Preset::F32, Preset::Q8_0, Preset::Q4_0, Preset::Q4K] } else { &[Preset::F32] };
        for &preset in presets {
            let model = Arc::new(Model::load(convert_fixture(&f, preset, None, tmp.path())).unwrap());
            let prompt = if f.name == PRIMARY { rewrite_prompt(&model) } else { golden(&f).input_ids };
            for kv in [KvType::F16, KvType::Q8_0, KvType::Q4] {
                let mut s = session(&model, kv);
                let (plain, st0) = generate(&mut s, &prompt, &opts(64, SamplingParams::greedy(), 0));
                assert_eq!(st0.drafted_tokens, 0);
                for draft in [1, 4, 8, 16] {
                    let (spec, st) = generate(&mut s, &prompt, &opts(64, SamplingParams::greedy(), draft));
                    assert_eq!(spec, plain, "{} {preset:?} {kv:?} draft {draft}", f.name);
                    assert_eq!(st.generated_tokens, 64);
                    assert_eq!(s.tokens().len(), prompt.len() + 64);
                    if draft == 8 {
                        println!(
                            "{:<16} {preset:?} {kv:?}: {} of {} drafted tokens accepted",
                            f.name, st.accepted_tokens, st.drafted_tokens
                        );
                    }
                    if f.name == PRIMARY {
                        assert!(
                            st.accepted_tokens >= 8,
                            "{preset:?} {kv:?} draft {draft}: {} of {} accepted on a rewrite",
                            st.accepted_tokens,
                            st.drafted_tokens
                        );
                    }
                }
            }
        }
    }
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..SamplingParams::default() }
}

/// Logits of a batched verification pass and of one-token decoding differ by float rounding,
/// and by int8 rounding flips of activations with quantized weights: the bound the README
/// states for greedy ties, measured on a rewrite.
#[test]
fn batched_and_one_token_logits_differ_by_rounding() {
    let tmp = tempfile::tempdir().unwrap();
    for preset in [Preset::F32, Preset::Q8_0, Preset::Q4_0] {
        let model = Arc::new(Model::load(convert_fixture(&primary(), preset, None, tmp.path())).unwrap());
        let prompt = rewrite_prompt(&model);
        let (head, tail) = prompt.split_at(prompt.len() - 9);
        let mut s = session(&model, KvType::F16);
        s.prefill(head).unwrap();
        let mut one = Vec::new();
        for &id in tail {
            one.extend_from_slice(s.decode(id).unwrap());
        }
        let mut cache = pocketlm_core::kv_cache::KvCache::new(&model.hparams, 1024, KvType::F16, None).unwrap();
        let none = pocketlm_core::model::Logits::None;
        model.forward(&mut cache, head, head.len(), none, &|| false).unwrap().unwrap();
        let all = pocketlm_core::model::Logits::All;
        let batch = model.forward(&mut cache, tail, prompt.len(), all, &|| false).unwrap().unwrap();
        let err = one.iter().zip(&batch).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let range = one.iter().cloned().fold(f32::MIN, f32::max) - one.iter().cloned().fold(f32::MAX, f32::min);
        println!("{preset:?}: max |batched - one-token| logit difference {err:.2e} (logit range {range:.1})");
        // f32 weights: the same one-query attention and float rounding only. Int8 activations
        // (quantized weights): a rounding difference can flip one activation's int8 rounding,
        // which moves logits by up to a few 1e-2.
        let bound = if preset == Preset::F32 { 1e-5 } else { 5e-3 };
        assert!(err <= bound * range.max(1.0), "{preset:?}: {err}");
    }
}

/// Seeded sampling with drafts draws the same tokens as without, seed by seed. Exactly so
/// with f32 weights and cache, where batched and one-token logits differ by float rounding
/// (~1e-6) alone; with int8 activations (quantized weights) a rounding difference can flip
/// an activation's int8 rounding, the logits then differ by up to ~1e-2, and a draw near a
/// boundary of the cumulative distribution can part (the distribution test below covers those
/// formats). The test allows one seed in twelve to part at such a tie.
#[test]
fn seeded_sampling_is_plain_sampling() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Arc::new(Model::load(convert_fixture(&primary(), Preset::F32, None, tmp.path())).unwrap());
    let prompt = rewrite_prompt(&model);
    let mut s = session(&model, KvType::F32);
    let (mut drafted, mut accepted, mut parted) = (0, 0, Vec::new());
    for seed in 0..12 {
        let params = SamplingParams { temperature: 0.4, ..sampled(seed) };
        let (plain, _) = generate(&mut s, &prompt, &opts(48, params.clone(), 0));
        let (spec, st) = generate(&mut s, &prompt, &opts(48, params, 8));
        assert_eq!(spec.len(), plain.len());
        if let Some(at) = spec.iter().zip(&plain).position(|(a, b)| a != b) {
            parted.push((seed, at));
        }
        drafted += st.drafted_tokens;
        accepted += st.accepted_tokens;
    }
    println!(
        "sampled at temperature 0.4: {accepted} of {drafted} drafted tokens accepted; parted at a tie: {parted:?}"
    );
    assert!(parted.len() <= 1, "seeded sampling parted from plain decoding: (seed, token) {parted:?}");
    assert!(accepted >= 20, "the drafts were hardly exercised: {accepted} of {drafted}");
}

/// A cancel that lands while drafts are being verified ends the generation without one more
/// token, keeps the cache consistent with the tokens, and the conversation then continues
/// exactly as uninterrupted plain decoding.
#[test]
fn cancel_during_verification_stops_within_one_step() {
    let tmp = tempfile::tempdir().unwrap();
    let model = Arc::new(Model::load(convert_fixture(&primary(), Preset::Q8_0, None, tmp.path())).unwrap());
    let prompt = rewrite_prompt(&model);
    let mut s = session(&model, KvType::F16);
    let (plain, _) = generate(&mut s, &prompt, &opts(40, SamplingParams::greedy(), 0));
    for cancel_at in [3, 10, 17] {
        s.reset();
        let cancel = CancelHandle::new();
        let o = GenerateOptions { cancel: cancel.clone(), ..opts(40, SamplingParams::greedy(), 8) };
        let mut ids = Vec::new();
        let st = s
            .generate_ids(&prompt, &o, &mut |id| {
                ids.push(id);
                if ids.len() == cancel_at {
                    cancel.cancel();
                }
                true
            })
            .unwrap();
        assert_eq!(st.stop_reason, StopReason::Cancelled, "cancel at {cancel_at}");
        assert_eq!(ids.len(), cancel_at, "tokens after the cancel");
        assert_eq!(ids[..], plain[..cancel_at]);
        assert!(st.drafted_tokens > 0 || cancel_at == 3, "no draft was verified before token {cancel_at}");
        // The cancelled pass left nothing behind: what follows is plain decoding's.
        let n_done = s.tokens().len() - prompt.len();
        assert!(n_done <= cancel_at);
        assert_eq!(s.tokens()[prompt.len()..], plain[..n_done]);
        let mut rest = Vec::new();
        let feed = plain[n_done..cancel_at].to_vec();
        s.generate_ids(&feed, &opts(40 - cancel_at, SamplingParams::greedy(), 8), &mut |id| {
            rest.push(id);
            true
        })
        .unwrap();
        assert_eq!(rest[..], plain[cancel_at..], "continuation after a cancel at {cancel_at}");
    }
}
