//! Turning one step's logits into the next token id.
//!
//! The stages and their meaning follow llama.cpp, so settings people tuned there
//! carry over: repetition penalty, greedy short-cut, top-k, top-p, min-p (both
//! measured on the untempered softmax), then temperature, then a draw from the
//! renormalised survivors: llama.cpp's default chain order.
//!
//! Output is a pure function of (params, logits, history, number of draws since
//! the last reset): the rng is a seeded ChaCha stream, whose output is fixed by
//! its algorithm rather than by the platform or the rand version (unlike
//! `StdRng`), and every ordering breaks ties towards the lower token id. That is
//! what lets a session be replayed exactly after [`Sampler::reset`].

use std::cmp::Ordering;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Options in llama.cpp's meaning and defaults where sensible.
///
/// `#[serde(default)]` lets a config file name only the fields it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// `<= 0` means greedy (argmax, ties to the lowest id): one knob then covers
    /// the deterministic mode, as in llama.cpp. Below 1 sharpens, above flattens.
    pub temperature: f32,
    /// 0 = disabled. Bounds the work of every later stage, besides pruning the tail.
    pub top_k: usize,
    /// 1.0 = disabled. Keeps the smallest set of best tokens whose mass reaches `top_p`.
    pub top_p: f32,
    /// 0.0 = disabled. Keeps tokens with `p >= min_p * p_max`: unlike top-p it cuts
    /// more of the tail when the model is confident and less when it is not.
    pub min_p: f32,
    /// 1.0 = disabled. The CTRL rule as llama.cpp applies it: a positive logit is
    /// divided and a negative one multiplied, so the penalty always lowers a
    /// token, once per distinct id in the window however often it occurred.
    pub repeat_penalty: f32,
    /// 0 = disabled. Only recent repeats are penalised, so that a long prompt
    /// does not suppress the words the answer naturally needs.
    pub repeat_last_n: usize,
    /// 0.0 = disabled. OpenAI's: subtracted once from the logit of every id in the
    /// penalty window (the last `repeat_last_n` tokens), as llama.cpp applies it.
    pub presence_penalty: f32,
    /// 0.0 = disabled. OpenAI's: subtracted from a logit once per occurrence of
    /// its id in the penalty window.
    pub frequency_penalty: f32,
    /// Fixed rather than drawn from the OS, so that a run can be reproduced.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults, except the seed, which is fixed (0xC0FFEE) instead
    /// of random so that a default run is reproducible; callers wanting variety
    /// across runs pass their own seed. The repetition penalty is off (as in
    /// llama.cpp today) because it damages code, lists and other text that must
    /// repeat tokens.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0xC0FFEE,
        }
    }
}

impl SamplingParams {
    /// Pure argmax with no penalty, for tests and evaluations that must not
    /// depend on the rng; the seed is left at its default since it goes unused.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            ..Self::default()
        }
    }

    /// Rejects values that would otherwise be silently reinterpreted by
    /// [`Sampler::sample`] (which never panics on bad params), so that a
    /// typo in a config surfaces as an error naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !self.temperature.is_finite() {
            return Err(format!("temperature must be finite (<= 0 means greedy), got {}", self.temperature));
        }
        if self.top_p.is_nan() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(format!("top_p must be in (0, 1] (1 disables it), got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1] (0 disables it), got {}", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return Err(format!("repeat_penalty must be finite and > 0 (1 disables it), got {}", self.repeat_penalty));
        }
        for (name, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return Err(format!("{name} must be in [-2, 2] (0 disables it), got {v}"));
            }
        }
        Ok(())
    }

    /// NaN counts as greedy so that unvalidated params still give a valid token.
    fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0
    }
}

/// A surviving token: `p` is its unnormalised weight `exp((logit - max) / T)`,
/// so the best token has exactly 1.0, which is what min-p compares against.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: u32,
    logit: f32,
    p: f32,
}

/// Best first, ties to the lower id: a total order (NaN never gets this far),
/// so partial selection and sorting give the same set on every platform.
fn best_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// How many candidates top-p sorts before it checks whether it has enough
/// mass; doubled each time it has not. Real LLM distributions are peaked, so
/// one round usually suffices and a 50k vocab is never sorted in full.
const TOP_P_FIRST_CHUNK: usize = 64;

/// Holds the rng and the scratch buffers across tokens, so that after the first
/// token sampling allocates nothing (the buffers keep their capacity).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    /// 8 rounds: statistically sound for sampling and the cheapest ChaCha.
    rng: ChaCha8Rng,
    candidates: Vec<Candidate>,
    /// Distinct ids of the penalty window.
    window: Vec<u32>,
}

impl Sampler {
    /// Takes params as given, without validating: bad values degrade to a
    /// documented behaviour instead of panicking (call `validate` to reject them).
    pub fn new(params: SamplingParams) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(params.seed);
        Self { params, rng, candidates: Vec::new(), window: Vec::new() }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token. `logits` may be modified in place (penalties). `history` = all previous token ids of the session (prompt + generated), the penalty looks at the last repeat_last_n.
    ///
    /// NaN logits are never chosen and -inf ones have probability 0. If some
    /// logits are +inf, the choice is uniform among them. If no logit is
    /// usable at all (empty or all NaN), the result is [`argmax`]'s fallback.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_repeat_penalty(logits, history);
        if self.params.is_greedy() || !self.prepare(logits) {
            return argmax(logits) as u32;
        }
        self.draw()
    }

    /// Re-seed: same params + same inputs => same outputs again.
    pub fn reset(&mut self) {
        self.rng = ChaCha8Rng::seed_from_u64(self.params.seed);
    }

    fn apply_repeat_penalty(&mut self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        let (pen, presence, frequency) = (p.repeat_penalty, p.presence_penalty, p.frequency_penalty);
        // NaN or non-positive penalties would flip or poison logits: ignore them.
        let ctrl = !(pen == 1.0 || pen.is_nan() || pen <= 0.0);
        let openai = (presence != 0.0 && presence.is_finite()) || (frequency != 0.0 && frequency.is_finite());
        if p.repeat_last_n == 0 || !(ctrl || openai) {
            return;
        }
        let start = history.len().saturating_sub(p.repeat_last_n);
        self.window.clear();
        self.window.extend_from_slice(&history[start..]);
        self.window.sort_unstable();
        // Distinct ids with their counts, from the sorted window.
        for run in self.window.chunk_by(|a, b| a == b) {
            // Ids outside the vocab (e.g. a tokenizer's added tokens) are skipped.
            let Some(l) = logits.get_mut(run[0] as usize) else { continue };
            if ctrl {
                *l = if *l > 0.0 { *l / pen } else { *l * pen };
            }
            if openai {
                *l -= presence.clamp(-2.0, 2.0) + frequency.clamp(-2.0, 2.0) * run.len() as f32;
            }
        }
    }

    /// Fills `self.candidates` with the tokens that survive top-k, top-p and
    /// min-p, with their unnormalised weights. False if no logit is usable.
    fn prepare(&mut self, logits: &[f32]) -> bool {
        let params = &self.params;
        let c = &mut self.candidates;
        c.clear();
        let mut any_pos_inf = false;
        for (&logit, id) in logits.iter().zip(0u32..) {
            if logit.is_nan() || logit == f32::NEG_INFINITY {
                continue;
            }
            any_pos_inf |= logit == f32::INFINITY;
            c.push(Candidate { id, logit, p: 0.0 });
        }
        if c.is_empty() {
            return false;
        }
        if any_pos_inf {
            // inf - inf is NaN: treat the +inf tokens as equally certain instead.
            c.retain(|x| x.logit == f32::INFINITY);
            for x in c.iter_mut() {
                x.logit = 0.0;
            }
        }

        let mut sorted = false;
        if params.top_k > 0 && params.top_k < c.len() {
            c.select_nth_unstable_by(params.top_k - 1, best_first);
            c.truncate(params.top_k);
            c.sort_unstable_by(best_first);
            sorted = true;
        }

        // Truncation sees the untempered distribution and temperature only reshapes what
        // survives, as in llama.cpp's default chain (top-k, top-p, min-p, then temp), so the
        // same top-p/min-p settings keep the same tokens at any temperature.
        let max = c.iter().fold(f32::NEG_INFINITY, |m, x| m.max(x.logit));
        let mut z = 0.0f64;
        for x in c.iter_mut() {
            x.p = (x.logit - max).exp();
            z += f64::from(x.p);
        }

        // Min-p before top-p gives the same set as the pipeline's top-p then min-p:
        // both keep a best-first prefix, so the result is the shorter prefix, and
        // top-p below still measures mass against the full `z`. Doing min-p first
        // is cheaper because its O(n) filter shrinks what top-p has to sort.
        if params.min_p > 0.0 {
            let threshold = params.min_p.min(1.0);
            c.retain(|x| x.p >= threshold);
        }
        if params.top_p < 1.0 {
            keep_top_p(c, f64::from(params.top_p) * z, sorted);
        }
        // A finite temperature keeps (logit - max) / t from being -inf / inf = NaN.
        let t = params.temperature.min(f32::MAX);
        if t != 1.0 {
            for x in c.iter_mut() {
                x.p = ((x.logit - max) / t).exp();
            }
        }
        true
    }

    /// Draws from the candidates in proportion to their weights, which is the
    /// renormalisation over the survivors without a separate pass.
    fn draw(&mut self) -> u32 {
        let total: f64 = self.candidates.iter().map(|x| f64::from(x.p)).sum();
        let u = self.rng.random::<f64>() * total;
        let mut cum = 0.0f64;
        let mut last_positive = None;
        for x in &self.candidates {
            if x.p > 0.0 {
                cum += f64::from(x.p);
                if u < cum {
                    return x.id;
                }
                last_positive = Some(x.id);
            }
        }
        // Only reachable through rounding; the best token always has weight 1.
        last_positive.unwrap_or(0)
    }
}

/// Truncates `c` to its shortest best-first prefix whose weight reaches
/// `target` (always at least one token), sorting only as much as needed.
fn keep_top_p(c: &mut Vec<Candidate>, target: f64, sorted: bool) {
    let n = c.len();
    let mut done = 0; // c[..done] holds the `done` best candidates, in order
    let mut cum = 0.0f64;
    let mut chunk = if sorted { n } else { TOP_P_FIRST_CHUNK };
    while done < n {
        let end = done.saturating_add(chunk).min(n);
        if !sorted {
            let rest = &mut c[done..];
            if end < n {
                rest.select_nth_unstable_by(end - done - 1, best_first);
            }
            rest[..end - done].sort_unstable_by(best_first);
        }
        let hit = c[done..end].iter().position(|x| {
            cum += f64::from(x.p);
            cum >= target
        });
        if let Some(pos) = hit {
            c.truncate(done + pos + 1);
            return;
        }
        done = end;
        chunk = chunk.saturating_mul(2);
    }
}

/// Index of the largest value; NaN never wins; ties -> lowest index; empty slice -> 0.
///
/// Used for greedy decoding, where a NaN from a broken kernel must not be
/// emitted as a token and ties must resolve the same way on every run.
pub fn argmax(xs: &[f32]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in xs.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if x <= b => {}
            _ => best = Some((i, x)),
        }
    }
    best.map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 42,
            ..Default::default()
        }
    }

    fn frequencies(s: &mut Sampler, logits: &[f32], draws: usize) -> Vec<f64> {
        let mut counts = vec![0usize; logits.len()];
        let mut buf = logits.to_vec();
        for _ in 0..draws {
            buf.copy_from_slice(logits);
            counts[s.sample(&mut buf, &[]) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    fn softmax(logits: &[f32], t: f32) -> Vec<f64> {
        let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l / t)).collect();
        let m = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scaled.iter().map(|&x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|&x| x / z).collect()
    }

    fn random_logits(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (rng.random::<f32>() - 0.5) * 2.0 * scale).collect()
    }

    #[test]
    fn argmax_ties_nan_and_empty() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN, 0.5]), 1);
        assert_eq!(argmax(&[0.0, f32::NAN]), 0);
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY]), 1);
        assert_eq!(argmax(&[-5.0, f32::INFINITY, f32::INFINITY]), 1);
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn greedy_picks_argmax_respecting_ties_and_nan() {
        for p in [SamplingParams::greedy(), params(-1.0, 40, 0.5, 0.1)] {
            let mut s = Sampler::new(p);
            assert_eq!(s.sample(&mut [0.1, 2.0, -1.0, 1.9], &[]), 1);
            assert_eq!(s.sample(&mut [0.1, 2.0, 2.0, 1.9], &[]), 1);
            assert_eq!(s.sample(&mut [f32::NAN, 0.3, f32::NAN, 0.2], &[]), 1);
            assert_eq!(s.sample(&mut [], &[]), 0);
        }
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different_sequence() {
        let flat = vec![0.0f32; 50257];
        let run = |s: &mut Sampler| -> Vec<u32> {
            let mut buf = flat.clone();
            (0..200)
                .map(|_| {
                    buf.copy_from_slice(&flat);
                    s.sample(&mut buf, &[])
                })
                .collect()
        };
        let p = params(1.0, 0, 1.0, 0.0);
        let mut a = Sampler::new(p.clone());
        let mut b = Sampler::new(p.clone());
        let mut c = Sampler::new(SamplingParams { seed: 43, ..p });
        let sa = run(&mut a);
        assert_eq!(sa, run(&mut b));
        assert_ne!(sa, run(&mut c));
        // Draws do cover the vocab rather than repeating a few ids.
        let mut distinct = sa.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 190, "only {} distinct ids", distinct.len());
        assert!(sa.iter().any(|&id| id > 25000));
        // The stream moved on, and reset brings it back.
        assert_ne!(sa, run(&mut a));
        a.reset();
        assert_eq!(sa, run(&mut a));
    }

    #[test]
    fn top_k_1_equals_greedy_at_any_temperature() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &t in &[0.1f32, 0.8, 1.0, 5.0, 100.0, 1e30] {
            let mut s = Sampler::new(params(t, 1, 1.0, 0.0));
            for case in 0..50 {
                let mut logits = random_logits(&mut rng, 1000, 3.0);
                if case % 3 == 0 {
                    logits[17] = f32::NAN;
                    logits[500] = logits[999].max(logits[500]);
                    logits[999] = logits[500]; // a tie that may be the max
                }
                if case % 5 == 0 {
                    logits[3] = 10.0;
                    logits[700] = 10.0; // a tie at the max: lowest id wins
                }
                let want = argmax(&logits) as u32;
                assert_eq!(s.sample(&mut logits, &[]), want, "t={t} case={case}");
            }
        }
    }

    #[test]
    fn presence_and_frequency_penalties_follow_openai() {
        // Token 1 twice and token 2 once in the window; token 3 before it (not counted).
        let history = [3u32, 1, 2, 1];
        let p = SamplingParams {
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            repeat_last_n: 3,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new(p);
        let mut logits = [1.0f32, 1.0, 1.0, 1.0];
        s.apply_repeat_penalty(&mut logits, &history);
        assert_eq!(logits, [1.0, 1.0 - 0.5 - 0.5, 1.0 - 0.5 - 0.25, 1.0]);
        // Enough to change the greedy choice: 2.0 on a repeated token loses to 1.5.
        let mut s = Sampler::new(SamplingParams { presence_penalty: 1.0, ..SamplingParams::greedy() });
        assert_eq!(s.sample(&mut [0.0, 2.0, 1.5], &[1]), 2);
        let bad = SamplingParams { frequency_penalty: 3.0, ..SamplingParams::greedy() };
        assert!(bad.validate().unwrap_err().contains("frequency_penalty"));
    }

    #[test]
    fn tiny_top_p_keeps_only_the_top_token() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for top_k in [0, 40] {
            let mut s = Sampler::new(params(5.0, top_k, 1e-6, 0.0));
            for _ in 0..200 {
                // Nearly flat and hot: without top-p almost any token could come out.
                let mut logits = random_logits(&mut rng, 5000, 0.1);
                let want = argmax(&logits) as u32;
                assert_eq!(s.sample(&mut logits, &[]), want);
            }
        }
    }

    #[test]
    fn min_p_one_keeps_only_the_max() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for top_k in [0, 40] {
            let mut s = Sampler::new(params(5.0, top_k, 1.0, 1.0));
            for _ in 0..200 {
                let mut logits = random_logits(&mut rng, 5000, 0.1);
                let want = argmax(&logits) as u32;
                assert_eq!(s.sample(&mut logits, &[]), want);
            }
        }
    }

    #[test]
    fn temperature_one_matches_softmax() {
        let logits = [0.0f32, 2f32.ln(), 4f32.ln()];
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0));
        let f = frequencies(&mut s, &logits, 20000);
        for (got, want) in f.iter().zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]) {
            assert!((got - want).abs() < 0.02, "{f:?}");
        }
    }

    #[test]
    fn temperature_half_sharpens() {
        let logits = [0.0f32, 2f32.ln(), 4f32.ln()];
        let mut s = Sampler::new(params(0.5, 0, 1.0, 0.0));
        let f = frequencies(&mut s, &logits, 20000);
        let want = softmax(&logits, 0.5); // [1, 4, 16] / 21
        assert!((want[2] - 16.0 / 21.0).abs() < 1e-6);
        for (got, want) in f.iter().zip(&want) {
            assert!((got - want).abs() < 0.02, "{f:?} vs {want:?}");
        }
        assert!(f[2] > 4.0 / 7.0 + 0.1, "not sharper than t=1: {f:?}");
    }

    #[test]
    fn truncated_distribution_matches_its_renormalisation() {
        // top_k 3 of 5, then top_p 0.8 drops the third survivor:
        // softmax of [3, 2, 1] is [.665, .245, .090], cumulative reaches .8 at the 2nd.
        let logits = [1.0f32, 3.0, -1.0, 2.0, 0.0];
        let mut s = Sampler::new(params(1.0, 3, 0.8, 0.0));
        let f = frequencies(&mut s, &logits, 20000);
        let (a, b) = ((3.0f64).exp(), (2.0f64).exp());
        let want = [0.0, a / (a + b), 0.0, b / (a + b), 0.0];
        for (got, want) in f.iter().zip(want) {
            assert!((got - want).abs() < 0.02, "{f:?}");
        }
    }

    #[test]
    fn nan_and_infinities_do_not_panic_or_win() {
        let mut s = Sampler::new(params(1.0, 0, 1.0, 0.0));
        let logits = [f32::NAN, 0.0, f32::NEG_INFINITY, -1.0, f32::NAN];
        let f = frequencies(&mut s, &logits, 2000);
        assert_eq!((f[0], f[2], f[4]), (0.0, 0.0, 0.0));
        assert!(f[1] > f[3] && f[3] > 0.0);

        let f = frequencies(&mut s, &[0.0, f32::INFINITY, 5.0, f32::INFINITY], 2000);
        assert_eq!((f[0], f[2]), (0.0, 0.0));
        assert!(f[1] > 0.4 && f[3] > 0.4, "{f:?}");

        assert_eq!(s.sample(&mut [f32::NAN, f32::NAN], &[]), 0);
        assert_eq!(s.sample(&mut [f32::NEG_INFINITY; 3], &[]), 0);
        assert_eq!(s.sample(&mut [], &[]), 0);
        for &t in &[f32::MIN_POSITIVE, 1e-30, f32::MAX, f32::INFINITY, f32::NAN] {
            let mut s = Sampler::new(params(t, 0, 0.9, 0.05));
            let id = s.sample(&mut [-3e38, 3e38, 1.0, f32::NAN], &[]);
            assert!(id < 3, "t={t} id={id}");
        }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let mut s = Sampler::new(SamplingParams { repeat_penalty: 2.0, ..SamplingParams::greedy() });
        let mut logits = [2.0f32, -2.0, 1.9, 0.5, 0.0];
        // id 0 three times, id 1 once, id 4 (zero logit) once, 99 is out of vocab.
        let id = s.sample(&mut logits, &[0, 1, 0, 99, 0, 4]);
        assert_eq!(logits, [1.0, -4.0, 1.9, 0.5, 0.0]);
        // Without the penalty 0 wins; with it the close runner-up does.
        assert_eq!(id, 2);

        // Only the last `repeat_last_n` tokens count.
        let mut s = Sampler::new(SamplingParams { repeat_penalty: 2.0, repeat_last_n: 2, ..SamplingParams::greedy() });
        let mut logits = [2.0f32, -2.0, 1.9, 0.5];
        s.sample(&mut logits, &[0, 0, 1, 3]);
        assert_eq!(logits, [2.0, -4.0, 1.9, 0.25]);

        // Disabled by repeat_last_n 0 or penalty 1.
        for (pen, n) in [(2.0, 0), (1.0, 64)] {
            let mut s =
                Sampler::new(SamplingParams { repeat_penalty: pen, repeat_last_n: n, ..SamplingParams::greedy() });
            let mut logits = [2.0f32, -2.0, 1.9];
            assert_eq!(s.sample(&mut logits, &[0, 1]), 0);
            assert_eq!(logits, [2.0, -2.0, 1.9]);
        }
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert_eq!(SamplingParams::default().validate(), Ok(()));
        assert_eq!(SamplingParams::greedy().validate(), Ok(()));
        assert_eq!(params(-1.0, 0, 1.0, 0.0).validate(), Ok(()));
        let bad = |f: fn(&mut SamplingParams), field: &str| {
            let mut p = SamplingParams::default();
            f(&mut p);
            let err = p.validate().expect_err(field);
            assert!(err.starts_with(field), "{err}");
        };
        bad(|p| p.temperature = f32::NAN, "temperature");
        bad(|p| p.temperature = f32::INFINITY, "temperature");
        bad(|p| p.top_p = 0.0, "top_p");
        bad(|p| p.top_p = 1.5, "top_p");
        bad(|p| p.top_p = f32::NAN, "top_p");
        bad(|p| p.min_p = -0.1, "min_p");
        bad(|p| p.min_p = 1.1, "min_p");
        bad(|p| p.repeat_penalty = 0.0, "repeat_penalty");
        bad(|p| p.repeat_penalty = -1.0, "repeat_penalty");
        bad(|p| p.repeat_penalty = f32::NAN, "repeat_penalty");
    }

    /// The kept set by the pipeline's literal definition: full sort, top-k,
    /// untempered softmax, top-p, then min-p (temperature only reweights survivors).
    fn reference_kept(logits: &[f32], p: &SamplingParams) -> Vec<u32> {
        let mut c: Vec<(f32, u32)> = logits
            .iter()
            .zip(0u32..)
            .filter(|(l, _)| !l.is_nan() && **l != f32::NEG_INFINITY)
            .map(|(&l, id)| (l, id))
            .collect();
        c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        if p.top_k > 0 {
            c.truncate(p.top_k);
        }
        let max = c[0].0;
        let w: Vec<f32> = c.iter().map(|x| (x.0 - max).exp()).collect();
        let z: f64 = w.iter().map(|&x| f64::from(x)).sum();
        let mut keep = c.len();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, &x) in w.iter().enumerate() {
                cum += f64::from(x) / z;
                if cum >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mut ids: Vec<u32> = (0..keep).filter(|&i| w[i] >= p.min_p * w[0]).map(|i| c[i].1).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn partial_selection_keeps_the_same_set_as_a_full_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        let mut s = Sampler::new(SamplingParams::default());
        let mut checked_large = 0;
        for case in 0..400 {
            let n = 1 + (rng.random::<u32>() % 3000) as usize;
            let scale = [0.5f32, 3.0, 10.0][case % 3];
            let mut logits = random_logits(&mut rng, n, scale);
            for l in logits.iter_mut() {
                match rng.random::<u32>() % 50 {
                    0 => *l = f32::NAN,
                    1 => *l = f32::NEG_INFINITY,
                    2 => *l = l.round(), // ties
                    _ => {}
                }
            }
            if logits.iter().all(|l| l.is_nan() || *l == f32::NEG_INFINITY) {
                continue;
            }
            s.params = SamplingParams {
                temperature: [0.3f32, 1.0, 2.0][case % 3],
                top_k: [0, 1, 5, 40, n + 10][(case / 3) % 5],
                top_p: [1.0f32, 0.95, 0.5, 0.1, 1e-6][(case / 7) % 5],
                min_p: [0.0f32, 0.05, 0.5, 1.0][(case / 11) % 4],
                ..SamplingParams::default()
            };
            assert!(s.prepare(&logits));
            let mut got: Vec<u32> = s.candidates.iter().map(|x| x.id).collect();
            got.sort_unstable();
            assert_eq!(got, reference_kept(&logits, &s.params), "case {case}");
            checked_large += usize::from(got.len() > TOP_P_FIRST_CHUNK);
        }
        // The doubling path in top-p was exercised, not just the first chunk.
        assert!(checked_large > 10, "{checked_large}");
    }

    #[test]
    fn scratch_buffers_are_reused_across_tokens() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut s = Sampler::new(SamplingParams { top_k: 0, repeat_penalty: 1.1, ..SamplingParams::default() });
        let history: Vec<u32> = (0..200).map(|i| i * 7).collect();
        let base = random_logits(&mut rng, 50257, 5.0);
        let mut logits = base.clone();
        s.sample(&mut logits, &history);
        let ptrs = (s.candidates.as_ptr(), s.window.as_ptr());
        for _ in 0..20 {
            logits.copy_from_slice(&base);
            s.sample(&mut logits, &history);
            assert_eq!((s.candidates.as_ptr(), s.window.as_ptr()), ptrs);
        }
    }
}
