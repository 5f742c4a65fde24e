//! Draft tokens for speculative decoding by prompt lookup: when the text being generated
//! repeats text the context already holds (a rewrite, a summary quoting its source, an edit of
//! code), the tokens that followed the latest earlier occurrence of the last few tokens are a
//! cheap guess of what comes next. The session verifies the guess in one batched forward pass
//! (see `Session::generate_ids`); a draft costs nothing when no n-gram matches.

use crate::sampling::Sampler;

/// The longest n-gram looked up first: longer matches predict better.
const MAX_NGRAM: usize = 3;
/// The shortest: one matching token predicts too poorly to pay for a verification.
const MIN_NGRAM: usize = 2;

/// Up to `max` tokens that followed the latest earlier occurrence of the last n-gram
/// (`MAX_NGRAM` down to `MIN_NGRAM` tokens) of the sequence `history ++ [last]`; empty if none
/// occurs. When those tokens run into the end of the sequence, the text is repeating with the
/// period from that occurrence to the end, and the draft goes on around the period: a loop
/// (a repeated token, a list, a table row) then gets full-length drafts instead of one
/// period's worth.
pub fn prompt_lookup(history: &[u32], last: u32, max: usize) -> Vec<u32> {
    let len = history.len() + 1;
    let at = |i: usize| if i < history.len() { history[i] } else { last };
    if max == 0 {
        return Vec::new();
    }
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if len <= n {
            continue;
        }
        let tail = len - n;
        // Latest start first; a match must leave at least one token after it.
        let found = (0..tail).rev().find(|&i| (0..n).all(|j| at(i + j) == at(tail + j)));
        if let Some(i) = found {
            let from = i + n;
            let period = len - from; // = tail - i ≥ 1
            return (0..max).map(|j| at(from + j % period)).collect();
        }
    }
    Vec::new()
}

/// What the caller of [`walk`] does with an accepted draft token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Emitted; go on with the next draft token.
    Next,
    /// Emitted, and the last one (the token budget is spent).
    Last,
    /// Not emitted: generation ends before it (a stop, a cancel).
    Stop,
}

/// The outcome of [`walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Draft tokens accepted and emitted (those the cache keeps).
    pub accepted: usize,
    /// The token drawn where the draft went wrong: emitted next, by the caller.
    pub pending: Option<u32>,
}

/// Walks a draft over its verification logits: `rows[j]` (each `n_vocab` long) are the logits
/// after the token before the draft and `draft[..j]`. At each position the sampler draws from
/// the row, exactly as plain decoding draws from the logits of that position (one draw per
/// emitted token, so a seeded run draws the same numbers); a draw equal to the draft token is
/// accepted and handed to `emit`, the first that differs ends the walk as `pending`. Every
/// emitted token is thus a draw from the model's own distribution: the output has plain
/// decoding's distribution whatever the draft, and the draft only decides how many draws one
/// forward pass serves. `history[..at + j]` is the context of row j (for the penalties).
pub fn walk(
    rows: &[f32],
    n_vocab: usize,
    draft: &[u32],
    sampler: &mut Sampler,
    history: &[u32],
    at: usize,
    emit: &mut dyn FnMut(u32) -> Step,
) -> Walk {
    let mut row = vec![0f32; n_vocab];
    for (j, &d) in draft.iter().enumerate() {
        // The sampler edits its input (penalties); the rows stay as computed.
        row.copy_from_slice(&rows[j * n_vocab..(j + 1) * n_vocab]);
        let t = sampler.sample(&mut row, &history[..at + j]);
        if t != d {
            return Walk { accepted: j, pending: Some(t) };
        }
        match emit(t) {
            Step::Next => {}
            Step::Last => return Walk { accepted: j + 1, pending: None },
            Step::Stop => return Walk { accepted: j, pending: None },
        }
    }
    Walk { accepted: draft.len(), pending: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::SamplingParams;

    /// Over many seeds, a walk's tokens have the distribution of the rows: the first emitted
    /// (accepted or pending) token follows row 0, and given that the first draft token was
    /// accepted, the next follows row 1; the acceptance rate is row 0's probability of the
    /// draft token. Chi-square, 5 categories (4 dof), critical value at p = 0.001: 18.47.
    #[test]
    fn walked_tokens_follow_the_rows() {
        let v = 5;
        let rows: Vec<f32> = [[0.1, 1.5, 0.3, -0.7, 0.9], [1.2, -0.4, 0.0, 0.8, 0.5], [0.0; 5]].concat();
        let softmax = |r: &[f32]| {
            let z: f32 = r.iter().map(|x| x.exp()).sum();
            r.iter().map(|x| (x.exp() / z) as f64).collect::<Vec<_>>()
        };
        let (p0, p1) = (softmax(&rows[..v]), softmax(&rows[v..2 * v]));
        let draft = [1u32, 3];
        let n = 20_000;
        let (mut first, mut second, mut n_second) = (vec![0f64; v], vec![0f64; v], 0.0);
        for seed in 0..n {
            let params =
                SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed, ..Default::default() };
            let mut sampler = Sampler::new(params);
            let mut out = Vec::new();
            let w = walk(&rows, v, &draft, &mut sampler, &[7, 7, 1], 2, &mut |t| {
                out.push(t);
                Step::Next
            });
            out.extend(w.pending);
            assert_eq!(w.accepted + usize::from(w.pending.is_some()), out.len());
            assert!(out[..w.accepted] == draft[..w.accepted]);
            first[out[0] as usize] += 1.0;
            if out[0] == draft[0] && out.len() > 1 {
                second[out[1] as usize] += 1.0;
                n_second += 1.0;
            }
        }
        let chi2 =
            |obs: &[f64], p: &[f64], n: f64| obs.iter().zip(p).map(|(o, p)| (o - n * p).powi(2) / (n * p)).sum::<f64>();
        let (c0, c1) = (chi2(&first, &p0, n as f64), chi2(&second, &p1, n_second));
        assert!(c0 < 18.47, "first token: chi2 {c0:.1}");
        assert!(c1 < 18.47, "second token given an accepted first: chi2 {c1:.1}");
        let rate = first[1] / n as f64;
        assert!((rate - p0[1]).abs() < 0.015, "acceptance {rate:.3} against p = {:.3}", p0[1]);
    }

    /// `emit` decides: Last keeps the token and ends, Stop drops it.
    #[test]
    fn emit_ends_the_walk() {
        let rows = [[0.0f32, 9.0, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]].concat();
        let mut greedy = Sampler::new(SamplingParams::greedy());
        let all = walk(&rows, 3, &[1, 2], &mut greedy, &[0, 1], 1, &mut |_| Step::Next);
        assert_eq!(all, Walk { accepted: 2, pending: None });
        let last = walk(&rows, 3, &[1, 2], &mut greedy, &[0, 1], 1, &mut |_| Step::Last);
        assert_eq!(last, Walk { accepted: 1, pending: None });
        let stop = walk(&rows, 3, &[1, 2], &mut greedy, &[0, 1], 1, &mut |_| Step::Stop);
        assert_eq!(stop, Walk { accepted: 0, pending: None });
        let wrong = walk(&rows, 3, &[1, 0], &mut greedy, &[0, 1], 1, &mut |_| Step::Next);
        assert_eq!(wrong, Walk { accepted: 1, pending: Some(2) });
    }

    #[test]
    fn continues_the_latest_occurrence_of_the_longest_ngram() {
        // "1 2 3 4 5 | 9 2 3 7 | 1 2 3" -> the trigram "1 2 3" occurred at 0: draft "4 5 9".
        let h = [1, 2, 3, 4, 5, 9, 2, 3, 7, 1, 2];
        assert_eq!(prompt_lookup(&h, 3, 3), vec![4, 5, 9]);
        // Only the bigram "2 3" matches (latest at 6): "7 8 2 3" to the end, then around the
        // period of 4 again.
        let h = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 2];
        assert_eq!(prompt_lookup(&h, 3, 3), vec![7, 8, 2]);
        assert_eq!(prompt_lookup(&h, 3, 6), vec![7, 8, 2, 3, 7, 8]);
    }

    #[test]
    fn no_match_no_draft() {
        assert!(prompt_lookup(&[1, 2, 3, 4], 5, 4).is_empty());
        assert!(prompt_lookup(&[], 5, 4).is_empty());
        assert!(prompt_lookup(&[1, 2, 1], 2, 0).is_empty());
        // A single repeated token is below the shortest n-gram.
        assert!(prompt_lookup(&[7, 1, 2], 7, 4).is_empty());
    }

    #[test]
    fn a_loop_drafts_around_its_period() {
        // "5 5 5 5" + 5: the trigram "5 5 5" latest earlier at 1, followed by "5" then the end:
        // a period of 1.
        assert_eq!(prompt_lookup(&[5, 5, 5, 5], 5, 8), vec![5; 8]);
        // "1 2 1 2 1" + 2: "2 1 2" at 1, then "1 2": period 2.
        assert_eq!(prompt_lookup(&[1, 2, 1, 2, 1], 2, 5), vec![1, 2, 1, 2, 1]);
    }
}
