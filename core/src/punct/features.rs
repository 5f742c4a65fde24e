//! Per-word acoustic features from PCM audio and word timings (what an on-device ASR returns):
//! pauses, duration, pitch (F0) level and movement, voicing and energy. The training data is
//! made by this same code (`pocketlm punct-data features`), so the model sees on the device
//! exactly the numbers it was trained on.
//!
//! Pitch is a normalized autocorrelation on the signal decimated to about 4 kHz, 20 ms hop,
//! 60-400 Hz, only inside word spans: cheap enough to run over 10 s of audio in well under a
//! millisecond, and accurate to a few Hz on voiced speech, which is all the features need
//! (they are semitone differences within one utterance).

use crate::error::{Error, Result};

/// Acoustic inputs per word: 12 measurements and a last slot that is 1 when audio was given
/// (0 in text-only mode, where every slot is 0).
pub const N_ACOUSTIC: usize = 13;

/// Lowest and highest F0 searched, in Hz.
const F0_MIN: f32 = 60.0;
const F0_MAX: f32 = 400.0;
/// Normalized autocorrelation above which a frame counts as voiced.
const VOICING: f32 = 0.6;
/// A peak at a shorter lag wins over the highest one if it reaches this share of it.
const OCTAVE_TOLERANCE: f32 = 0.9;
/// Frame hop and analysis window, in seconds.
const HOP: f32 = 0.02;
const WINDOW: f32 = 0.025;
/// Pauses and edge silences are capped here (seconds): longer ones mean the same thing.
const MAX_PAUSE: f32 = 2.0;

/// When a word was spoken, in seconds from the start of the audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WordTiming {
    pub start: f32,
    pub end: f32,
}

/// Mono PCM audio.
pub struct Audio<'a> {
    pub samples: &'a [f32],
    pub sample_rate: u32,
}

/// One analysis frame inside a word.
#[derive(Clone, Copy)]
struct Frame {
    t: f32,
    /// Pitch in semitones relative to 100 Hz, if voiced.
    st: Option<f32>,
    db: f32,
}

/// Checks audio and timings, naming the first problem: a sample rate outside 8-48 kHz, a
/// non-finite sample, a timing that is not finite, ends before it starts, lies outside the
/// audio, or starts before the previous word.
pub fn validate(audio: &Audio, timings: &[WordTiming], n_words: usize) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if !(8000..=48000).contains(&audio.sample_rate) {
        return bad(format!(
            "audio sample rate {} Hz: expected 8000 to 48000 Hz (16000 or 22050 typically)",
            audio.sample_rate
        ));
    }
    if audio.samples.is_empty() {
        return bad("audio is empty".into());
    }
    if let Some((i, v)) = crate::ops::first_non_finite(audio.samples) {
        return bad(format!("audio sample {i} is {v} (NaN or infinite)"));
    }
    if timings.len() != n_words {
        return bad(format!("{} words but {} word timings: give one (start, end) per word", n_words, timings.len()));
    }
    let dur = audio.samples.len() as f32 / audio.sample_rate as f32;
    // ASR timestamps are rounded (often to 10-40 ms): tolerate that much past the end.
    let slack = 0.05;
    let mut prev_start = 0f32;
    for (i, w) in timings.iter().enumerate() {
        if !w.start.is_finite() || !w.end.is_finite() {
            return bad(format!("word {i}: timing {}..{} is not finite", w.start, w.end));
        }
        if w.start < 0.0 || w.end < w.start {
            return bad(format!("word {i}: timing {:.3}..{:.3} s: start must be >= 0 and <= end", w.start, w.end));
        }
        if w.end > dur + slack {
            return bad(format!("word {i}: ends at {:.3} s, after the end of the audio ({dur:.3} s)", w.end));
        }
        if w.start + slack < prev_start {
            return bad(format!("word {i}: starts at {:.3} s, before the previous word ({prev_start:.3} s)", w.start));
        }
        prev_start = w.start;
    }
    Ok(())
}

/// The acoustic features of each word (call [`validate`] first).
pub fn word_features(audio: &Audio, timings: &[WordTiming]) -> Vec<[f32; N_ACOUSTIC]> {
    let (sig, sr) = decimate(audio.samples, audio.sample_rate);
    let dur = audio.samples.len() as f32 / audio.sample_rate as f32;
    let tracker = PitchTracker::new(sr);
    let mut scratch = Scratch::default();
    let frames: Vec<Vec<Frame>> = timings.iter().map(|w| tracker.frames(&sig, w.start, w.end, &mut scratch)).collect();

    // Utterance references: median voiced pitch and median frame energy.
    let mut sts: Vec<f32> = frames.iter().flatten().filter_map(|f| f.st).collect();
    let mut dbs: Vec<f32> = frames.iter().flatten().map(|f| f.db).collect();
    let st_ref = median(&mut sts).unwrap_or(0.0);
    let db_ref = median(&mut dbs).unwrap_or(-60.0);

    let n = timings.len();
    (0..n)
        .map(|i| {
            let w = timings[i];
            let after = if i + 1 < n { timings[i + 1].start - w.end } else { dur - w.end };
            let before = if i > 0 { w.start - timings[i - 1].end } else { w.start };
            let fr = &frames[i];
            let voiced: Vec<(f32, f32)> = fr.iter().filter_map(|f| f.st.map(|s| (f.t, s))).collect();
            let mean_st = mean(voiced.iter().map(|v| v.1)).map_or(0.0, |m| m - st_ref);
            let slope = slope(&voiced);
            let tail_from = w.start + 0.6 * (w.end - w.start);
            let tail: Vec<(f32, f32)> = voiced.iter().copied().filter(|v| v.0 >= tail_from).collect();
            let range = voiced
                .iter()
                .map(|v| v.1)
                .fold(None, |acc: Option<(f32, f32)>, s| Some(acc.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s)))));
            let db_mean = mean(fr.iter().map(|f| f.db)).unwrap_or(db_ref);
            let db_max = fr.iter().map(|f| f.db).fold(f32::NEG_INFINITY, f32::max);
            // Where the pitch ends up: a question's rise (or a statement's fall) is clearest in
            // the last voiced frame and the word's tail, against the word and the utterance.
            let word_mean = mean(voiced.iter().map(|v| v.1));
            let end_delta = match (voiced.last(), word_mean) {
                (Some(last), Some(m)) => last.1 - m,
                _ => 0.0,
            };
            let tail_level = mean(tail.iter().map(|v| v.1)).map_or(0.0, |m| m - st_ref);
            [
                (after.clamp(0.0, MAX_PAUSE) / 0.1).ln_1p(),
                (before.clamp(0.0, MAX_PAUSE) / 0.1).ln_1p(),
                ((w.end - w.start).max(0.02) / 0.25).ln(),
                mean_st / 6.0,
                slope / 20.0,
                self::slope(&tail) / 20.0,
                range.map_or(0.0, |(lo, hi)| hi - lo) / 12.0,
                if fr.is_empty() { 0.0 } else { voiced.len() as f32 / fr.len() as f32 },
                (db_mean - db_ref) / 10.0,
                if db_max.is_finite() { (db_max - db_ref) / 10.0 } else { 0.0 },
                end_delta / 6.0,
                tail_level / 6.0,
                1.0,
            ]
            .map(|v| v.clamp(-8.0, 8.0))
        })
        .collect()
}

/// Box-filter decimation to about 4 kHz (enough for F0 up to 400 Hz and its first
/// harmonics), which cuts the autocorrelation's cost by the square of the factor.
fn decimate(x: &[f32], sr: u32) -> (Vec<f32>, f32) {
    let d = ((sr as f32 / 4000.0).round() as usize).max(1);
    // The common factors get a fixed-size sum per output (unrolled, no loop-carried chain
    // across outputs): the generic chunk loop cost a tenth of the whole utterance's latency.
    let y = match d {
        2 => box_mean::<2>(x),
        3 => box_mean::<3>(x),
        4 => box_mean::<4>(x),
        6 => box_mean::<6>(x),
        8 => box_mean::<8>(x),
        11 => box_mean::<11>(x),
        12 => box_mean::<12>(x),
        _ => x.chunks(d).map(|c| c.iter().sum::<f32>() / d as f32).collect(),
    };
    (y, sr as f32 / d as f32)
}

/// Means of consecutive groups of `D` samples (a shorter last group is averaged over its own
/// length, as the generic path does).
fn box_mean<const D: usize>(x: &[f32]) -> Vec<f32> {
    let inv = 1.0 / D as f32;
    let full = x.chunks_exact(D);
    let tail = full.remainder();
    let mut y: Vec<f32> = full.map(|c| c.iter().sum::<f32>() * inv).collect();
    if !tail.is_empty() {
        y.push(tail.iter().sum::<f32>() / tail.len() as f32);
    }
    y
}

/// Normalized-autocorrelation pitch detector on the decimated signal.
struct PitchTracker {
    sr: f32,
    win: usize,
    lag_min: usize,
    lag_max: usize,
}

impl PitchTracker {
    fn new(sr: f32) -> Self {
        let win = (sr * WINDOW).round() as usize;
        PitchTracker { sr, win, lag_min: (sr / F0_MAX).floor() as usize, lag_max: (sr / F0_MIN).ceil() as usize }
    }

    /// Frames every HOP seconds whose centre lies in [start, end] (at least the middle one).
    fn frames(&self, sig: &[f32], start: f32, end: f32, scratch: &mut Scratch) -> Vec<Frame> {
        let n = ((end - start) / HOP).floor() as usize + 1;
        let t0 = start + ((end - start) - (n - 1) as f32 * HOP) / 2.0;
        (0..n).map(|k| t0 + k as f32 * HOP).map(|t| self.frame(sig, t, scratch)).collect()
    }

    /// Pitch (semitones re 100 Hz) and energy (dB) of the window centred at `t` seconds.
    fn frame(&self, sig: &[f32], t: f32, scratch: &mut Scratch) -> Frame {
        let centre = (t * self.sr) as isize;
        let a = (centre - (self.win / 2) as isize).max(0) as usize;
        let b = (a + self.win + self.lag_max).min(sig.len());
        let x = &sig[a.min(b)..b];
        let w = self.win.min(x.len());
        let e0 = (crate::kernels::best().dot_f32)(&x[..w], &x[..w]);
        let db = 10.0 * (e0 / w.max(1) as f32 + 1e-10).log10();
        Frame { t, st: self.f0(x, w, e0, scratch).map(|f| 12.0 * (f / 100.0).log2()), db }
    }

    /// F0 in Hz of `x[..w]` (energy `e0`), if voiced: the lag with the highest normalized
    /// autocorrelation, refined by a parabola through its neighbours.
    fn f0(&self, x: &[f32], w: usize, e0: f32, scratch: &mut Scratch) -> Option<f32> {
        if w < self.win / 2 || e0 <= 1e-8 {
            return None;
        }
        let lag_hi = self.lag_max.min(x.len().saturating_sub(w));
        if lag_hi <= self.lag_min + 1 {
            return None;
        }
        // Every lag's product from one SIMD cross-correlation call (no per-lag dot calls), so
        // 10 s of audio takes a small fraction of a millisecond.
        let Scratch { rs, es } = scratch;
        let lo = self.lag_min - 1;
        let nl = lag_hi + 1 - lo;
        rs.resize(nl, 0.0);
        (crate::kernels::best().xcorr_f32)(&x[..w], &x[lo..], rs);
        // Lagged windows' energies by a sliding sum (58 steps: its rounding stays far below
        // the voicing threshold's resolution).
        es.resize(nl, 0.0);
        let (enter, leave) = (&x[lo + w..lo + nl - 1 + w], &x[lo..lo + nl - 1]);
        let mut e = x[lo..lo + w].iter().map(|v| v * v).sum::<f32>();
        es[0] = e;
        for ((o, a), b) in es[1..].iter_mut().zip(enter).zip(leave) {
            e += a * a - b * b;
            *o = e.max(0.0);
        }
        for (r, &yy) in rs.iter_mut().zip(es.iter()) {
            let v = *r / (e0 * yy).sqrt();
            *r = if yy > 1e-12 { v } else { 0.0 };
        }
        let rs = &rs[..];
        let best = rs[1..rs.len() - 1].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if best < VOICING {
            return None;
        }
        // A periodic signal correlates as well at 2, 3, ... periods as at one: take the first
        // peak nearly as high as the best, not the best itself (which may be a multiple).
        let k = (1..rs.len() - 1)
            .find(|&i| rs[i] >= rs[i - 1] && rs[i] >= rs[i + 1] && rs[i] >= OCTAVE_TOLERANCE * best)?
            - 1;
        let (l, c, rr) = (rs[k], rs[k + 1], rs[k + 2]);
        let den = l - 2.0 * c + rr;
        let shift = if den.abs() > 1e-9 { (0.5 * (l - rr) / den).clamp(-0.5, 0.5) } else { 0.0 };
        let lag = (self.lag_min + k) as f32 + shift;
        Some(self.sr / lag)
    }
}

/// Per-frame buffers, allocated once per utterance.
#[derive(Default)]
struct Scratch {
    /// Products and energies per lag.
    rs: Vec<f32>,
    es: Vec<f32>,
}

fn mean(it: impl Iterator<Item = f32>) -> Option<f32> {
    let (s, n) = it.fold((0f32, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| s / n as f32)
}

fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, f32::total_cmp);
    Some(v[mid])
}

/// Least-squares slope of (t, y), per second; 0 with fewer than 3 points.
fn slope(p: &[(f32, f32)]) -> f32 {
    if p.len() < 3 {
        return 0.0;
    }
    let n = p.len() as f32;
    let mt = p.iter().map(|v| v.0).sum::<f32>() / n;
    let my = p.iter().map(|v| v.1).sum::<f32>() / n;
    let sxx: f32 = p.iter().map(|v| (v.0 - mt) * (v.0 - mt)).sum();
    let sxy: f32 = p.iter().map(|v| (v.0 - mt) * (v.1 - my)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A harmonic tone (speech-like: fundamental plus two harmonics) of `f(t)` Hz.
    fn tone(out: &mut [f32], sr: u32, from: f32, to: f32, f: impl Fn(f32) -> f32) {
        let mut phase = 0f32;
        for (i, s) in out.iter_mut().enumerate() {
            let t = i as f32 / sr as f32;
            if t >= from && t < to {
                phase += 2.0 * std::f32::consts::PI * f(t) / sr as f32;
                *s = 0.5 * phase.sin() + 0.25 * (2.0 * phase).sin() + 0.12 * (3.0 * phase).sin();
            }
        }
    }

    fn st(f: f32) -> f32 {
        12.0 * (f / 100.0).log2()
    }

    #[test]
    fn known_tones_and_silences() {
        for sr in [16000u32, 22050] {
            let mut x = vec![0f32; (1.6 * sr as f32) as usize];
            tone(&mut x, sr, 0.1, 0.5, |_| 200.0);
            // Rises from 120 to 180 Hz: +7.02 semitones over 0.4 s.
            tone(&mut x, sr, 0.8, 1.2, |t| 120.0 + 150.0 * (t - 0.8));
            let words = [WordTiming { start: 0.1, end: 0.5 }, WordTiming { start: 0.8, end: 1.2 }];
            let audio = Audio { samples: &x, sample_rate: sr };
            validate(&audio, &words, 2).unwrap();
            let f = word_features(&audio, &words);
            // Pauses: 0.3 s after word 0, 0.4 s of audio after word 1; 0.1 s before word 0.
            assert!((f[0][0] - (3.0f32).ln_1p()).abs() < 1e-5, "{:?}", f[0]);
            assert!((f[1][0] - (4.0f32).ln_1p()).abs() < 1e-3, "{:?}", f[1]);
            assert!((f[0][1] - (1.0f32).ln_1p()).abs() < 1e-5);
            assert!((f[1][1] - (3.0f32).ln_1p()).abs() < 1e-5);
            assert!((f[0][2] - (0.4f32 / 0.25).ln()).abs() < 1e-5);
            // Both words are voiced throughout (edge frames may straddle the onset).
            assert!(f[0][7] > 0.85 && f[1][7] > 0.85, "voiced fractions {} {}", f[0][7], f[1][7]);
            // Word 0 is flat at 200 Hz, word 1 rises by 3.5 semitones per 0.2 s.
            assert!(f[0][4].abs() * 20.0 < 2.0, "flat tone slope {} st/s", f[0][4] * 20.0);
            let rise = f[1][4] * 20.0;
            let expected = (st(180.0) - st(120.0)) / 0.4;
            assert!((rise - expected).abs() < 0.15 * expected, "slope {rise} st/s, expected {expected}");
            // Mean pitch difference between the words: 200 Hz against about 150 Hz.
            let diff = (f[0][3] - f[1][3]) * 6.0;
            let want = st(200.0) - st(150.0);
            assert!((diff - want).abs() < 0.6, "pitch difference {diff} st, expected {want}");
            assert_eq!(f[0][12], 1.0);
            // The rising word ends above its mean (by about 1.75 semitones), the flat one does not.
            assert!(
                f[1][10] * 6.0 > 1.0 && f[0][10].abs() * 6.0 < 0.5,
                "end deltas {} {}",
                f[0][10] * 6.0,
                f[1][10] * 6.0
            );
        }
    }

    #[test]
    fn pitch_of_a_steady_tone_within_one_percent() {
        for sr in [16000u32, 22050] {
            for hz in [80.0f32, 110.0, 165.0, 240.0, 330.0] {
                let mut x = vec![0f32; sr as usize / 2];
                tone(&mut x, sr, 0.0, 1.0, |_| hz);
                let (sig, dsr) = decimate(&x, sr);
                let tr = PitchTracker::new(dsr);
                let fr = tr.frame(&sig, 0.25, &mut Scratch::default());
                let got = 100.0 * 2f32.powf(fr.st.expect("voiced") / 12.0);
                assert!((got - hz).abs() < 0.01 * hz, "{sr} Hz audio: {got} Hz for a {hz} Hz tone");
            }
        }
    }

    #[test]
    fn silence_is_unvoiced_and_noise_mostly_unvoiced() {
        let sr = 16000;
        let x = vec![0f32; sr as usize];
        let words = [WordTiming { start: 0.2, end: 0.6 }];
        let f = word_features(&Audio { samples: &x, sample_rate: sr }, &words);
        assert_eq!(f[0][7], 0.0);
        assert_eq!(f[0][3], 0.0);
    }

    #[test]
    fn bad_input_is_named() {
        let x = vec![0f32; 16000];
        let a = Audio { samples: &x, sample_rate: 16000 };
        let w = |s, e| WordTiming { start: s, end: e };
        let msg = |r: Result<()>| r.unwrap_err().to_string();
        assert!(msg(validate(&a, &[w(0.0, 0.5)], 2)).contains("2 words but 1 word timings"));
        assert!(msg(validate(&a, &[w(0.5, 0.2)], 1)).contains("word 0"));
        assert!(msg(validate(&a, &[w(0.5, 1.5)], 1)).contains("after the end of the audio"));
        assert!(msg(validate(&a, &[w(0.5, f32::NAN)], 1)).contains("not finite"));
        assert!(msg(validate(&a, &[w(0.5, 0.6), w(0.1, 0.2)], 2)).contains("word 1"));
        let mut y = x.clone();
        y[77] = f32::NAN;
        assert!(msg(validate(&Audio { samples: &y, sample_rate: 16000 }, &[w(0.0, 0.1)], 1)).contains("sample 77"));
        assert!(msg(validate(&Audio { samples: &x, sample_rate: 1000 }, &[w(0.0, 0.1)], 1)).contains("sample rate"));
        assert!(msg(validate(&Audio { samples: &[], sample_rate: 16000 }, &[], 0)).contains("empty"));
    }
}
