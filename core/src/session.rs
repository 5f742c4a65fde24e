//! A conversation with a model: its KV cache, token history, and the generation loop
//! (prefill, decode, sampling, stop strings, streaming, cancellation).

use crate::constraint::{Constraint, Guide};
use crate::draft::Step;
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvType};
use crate::model::{AlibiScaling, Logits, Model};
use crate::sampling::{Sampler, SamplingParams};
use crate::tokenizer::StreamDecoder;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Stops one generation from any thread. Checked between tokens and between layers, so a
/// cancel takes effect within one layer's work.
///
/// One token per call, made by the caller before the call starts and never reset: a cancel
/// issued at any moment, even before the call has reached the session, is seen by that call
/// and by no other. (A session-wide flag cleared at the start of each call loses a cancel
/// that lands just before the clear.)
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Context size in tokens (prompt + generated), allocated up front.
    pub n_ctx: usize,
    pub kv_type: KvType,
    /// Refuse a session whose total memory (resident weights + KV cache + scratch, see
    /// [`Session::memory_needed`]) would exceed this many bytes.
    pub mem_budget: Option<u64>,
    /// Prompt tokens per forward call: bounds scratch memory, not results.
    pub n_batch: usize,
    /// ALiBi position interpolation for a model whose file carries none (a model's own
    /// `alibi_scaling` always wins: it is part of how it was trained).
    pub alibi_scaling: AlibiScaling,
    /// What happens when the context is full.
    pub context_policy: ContextPolicy,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            n_ctx: 2048,
            kv_type: KvType::F16,
            mem_budget: None,
            n_batch: 256,
            alibi_scaling: AlibiScaling::None,
            context_policy: ContextPolicy::Stop,
        }
    }
}

/// When the context fills up during generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextPolicy {
    /// Stop with [`StopReason::ContextFull`].
    Stop,
    /// Keep the first `keep` tokens (e.g. a system prompt), drop the oldest half of the rest and
    /// continue. ALiBi encodes only distances, so the kept keys need no re-encoding.
    Shift { keep: usize },
}

/// What a session will hold in memory, decided before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Weight bytes the forward pass touches (memory-mapped; file-backed, reclaimable).
    pub weights: u64,
    pub kv_cache: u64,
    /// Activations of one prompt batch, logits and per-call buffers.
    pub scratch: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.kv_cache + self.scratch
    }
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops when the text contains one of these; the stop string is not emitted.
    pub stop: Vec<String>,
    /// Stop at the end-of-text token (not emitted).
    pub stop_at_eos: bool,
    /// Stops this call (see [`CancelHandle`]); a fresh, uncancelled one by default.
    pub cancel: CancelHandle,
    /// Output must match this (JSON schema, grammar...). The grammar decides where the answer
    /// ends, so `stop` strings do not apply, and a `max_tokens` cut still closes the answer
    /// (see [`crate::constraint`]).
    pub constraint: Option<Constraint>,
    /// Speculative decoding by prompt lookup: up to this many draft tokens (capped at
    /// [`MAX_DRAFT`]) verified per forward pass; 0 turns it off. The output is the one plain
    /// decoding gives (see [`Session::generate_ids`]). Not used with a `constraint`.
    pub draft: usize,
}

/// The default draft length: long enough for a copied span to pay off, short enough that a
/// rejected draft costs little (see the README's speculative decoding figures).
pub const DEFAULT_DRAFT: usize = 8;
/// The longest draft verified in one pass.
pub const MAX_DRAFT: usize = 16;

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampling: SamplingParams::default(),
            stop: vec![],
            stop_at_eos: true,
            cancel: CancelHandle::default(),
            constraint: None,
            draft: DEFAULT_DRAFT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    EndOfText,
    StopString,
    Cancelled,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prompt_time: Duration,
    pub generation_time: Duration,
    /// Of `generation_time`, what the constraint took (mask, grammar steps, closing search).
    pub constraint_time: Duration,
    pub stop_reason: StopReason,
    /// Draft tokens proposed by prompt lookup, and how many of them were accepted (each
    /// accepted one is a generated token that cost no forward pass of its own).
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
}

impl GenerationStats {
    pub fn prompt_tokens_per_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_time)
    }
    /// Decode speed: each generated token costs one forward pass in the generation time.
    pub fn generation_tokens_per_s(&self) -> f64 {
        rate(self.generated_tokens, self.generation_time)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

pub struct Session {
    model: Arc<Model>,
    cache: KvCache,
    tokens: Vec<u32>,
    last_logits: Option<Vec<f32>>,
    n_batch: usize,
    /// `tokens.len()`, readable from other threads while a generation runs.
    count: Arc<AtomicUsize>,
    scaling: AlibiScaling,
    policy: ContextPolicy,
}

/// What a generation step produced, for the callback.
pub enum Piece<'a> {
    Text(&'a str),
    Token(u32),
}

impl Session {
    /// The memory a session with `opts` needs, before creating it.
    pub fn memory_needed(model: &Model, opts: &SessionOptions) -> MemoryEstimate {
        let hp = &model.hparams;
        let b = opts.n_batch.clamp(1, opts.n_ctx.max(1)) as u64;
        let (e, f, v) = (hp.n_embd as u64, hp.n_inner as u64, hp.n_vocab as u64);
        // Per batch token: h, x, q, att, proj (5e), qkv (3e), up and gate (2f), each as f32,
        // plus the transposed matmul output and int8 activations; logits for the last token.
        let activations = b * 4 * (5 * e + 3 * e + 2 * f) * 2 + b * (e + f) * 2;
        MemoryEstimate {
            weights: model.weight_bytes(),
            kv_cache: KvCache::bytes_needed(hp, opts.n_ctx, opts.kv_type),
            scratch: activations + (4 + MAX_DRAFT as u64) * 4 * v + (hp.n_head as u64) * 4 * (b * e + 1024),
        }
    }

    pub fn new(model: Arc<Model>, opts: &SessionOptions) -> Result<Self> {
        if let ContextPolicy::Shift { keep } = opts.context_policy {
            // A shift must leave room for at least one token after the kept head.
            if keep >= opts.n_ctx.saturating_sub(1) {
                return Err(Error::InvalidArgument(format!(
                    "keep {keep}: the tokens kept on a context shift must be fewer than the context size {} minus one",
                    opts.n_ctx
                )));
            }
        }
        if let Some(budget) = opts.mem_budget {
            let m = Self::memory_needed(&model, opts);
            if m.total() > budget {
                return Err(Error::OverBudget {
                    n_ctx: opts.n_ctx,
                    needed: m.total(),
                    budget,
                    detail: format!(
                        "weights {} + {} KV cache {} + scratch {}",
                        m.weights,
                        opts.kv_type.name(),
                        m.kv_cache,
                        m.scratch
                    ),
                });
            }
        }
        let cache = KvCache::new(&model.hparams, opts.n_ctx, opts.kv_type, None)?;
        let scaling = match model.hparams.alibi_scaling {
            AlibiScaling::None => opts.alibi_scaling,
            own => own,
        };
        Ok(Session {
            model,
            cache,
            tokens: Vec::new(),
            last_logits: None,
            n_batch: opts.n_batch.max(1),
            count: Arc::default(),
            scaling,
            policy: opts.context_policy,
        })
    }

    /// Tokens, next-token logits and KV bytes: what a session file holds.
    pub(crate) fn state(&self) -> (&[u32], &[f32], Vec<u8>) {
        (&self.tokens, self.last_logits.as_deref().unwrap_or(&[]), self.cache.export(self.cache.len()))
    }

    pub(crate) fn set_state(&mut self, tokens: Vec<u32>, logits: Vec<f32>, kv: &[u8]) -> Result<()> {
        let n_vocab = self.model.hparams.n_vocab;
        if !logits.is_empty() && logits.len() != n_vocab {
            return Err(Error::InvalidArgument(format!("{} logits for a vocabulary of {n_vocab}", logits.len())));
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::TokenOutOfRange { id, vocab: n_vocab });
        }
        check_finite(&logits, tokens.len())?;
        self.cache.import(tokens.len(), kv)?;
        self.count.store(tokens.len(), Ordering::Relaxed);
        self.tokens = tokens;
        self.last_logits = (!logits.is_empty()).then_some(logits);
        Ok(())
    }

    /// The ALiBi interpolation this session runs with.
    pub fn alibi_scaling(&self) -> AlibiScaling {
        self.scaling
    }

    pub fn kv_type(&self) -> KvType {
        self.cache.ty()
    }

    /// Makes room for `n` more tokens under the shift policy; false if it cannot.
    fn make_room(&mut self, n: usize) -> bool {
        let ContextPolicy::Shift { keep } = self.policy else { return false };
        let n_ctx = self.cache.n_ctx();
        while self.cache.len() + n > n_ctx {
            let len = self.cache.len();
            if len <= keep.saturating_add(1) {
                return false;
            }
            let drop = ((len - keep) / 2).max(1);
            self.cache.remove(keep, drop);
            self.tokens.drain(keep..keep + drop);
            self.count.store(self.tokens.len(), Ordering::Relaxed);
        }
        true
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    pub fn n_ctx(&self) -> usize {
        self.cache.n_ctx()
    }
    /// A live view of the conversation's token count, for other threads (UIs, bindings).
    pub fn token_count_handle(&self) -> Arc<AtomicUsize> {
        self.count.clone()
    }

    /// Keeps the first `n` tokens of the conversation and forgets the rest (chat history edits
    /// reuse the cache up to the first changed token). The logits after the last kept token are
    /// not known until the next token is fed.
    pub fn truncate(&mut self, n: usize) {
        if n < self.tokens.len() {
            self.tokens.truncate(n);
            self.cache.truncate(n);
            self.last_logits = None;
            self.count.store(n, Ordering::Relaxed);
        }
    }

    /// Keeps the longest prefix of the conversation that `ids` starts with, always leaving at
    /// least the last of `ids` to feed (its logits are not kept across a truncation), and
    /// returns its length: `ids[n..]` is what a call must still prefill. How a chat turn or a
    /// server request reuses the cache of the one before.
    pub fn keep_common_prefix(&mut self, ids: &[u32]) -> usize {
        let common = self.tokens.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let n = common.min(ids.len().saturating_sub(1));
        self.truncate(n);
        n
    }

    /// Forgets the conversation; the cache memory is kept for reuse.
    pub fn reset(&mut self) {
        self.cache.clear();
        self.tokens.clear();
        self.last_logits = None;
        self.count.store(0, Ordering::Relaxed);
    }

    /// Feeds prompt tokens as one logical call (chunked by `n_batch`); returns the logits after
    /// the last one. With no tokens, the logits after the conversation so far (an error if
    /// it is empty).
    pub fn prefill(&mut self, ids: &[u32]) -> Result<&[f32]> {
        self.prefill_cancellable(ids, &CancelHandle::default())?;
        self.last_logits()
            .ok_or_else(|| Error::InvalidArgument("the conversation is empty: there is nothing to predict from".into()))
    }

    /// The next-token logits after the conversation so far, if it has any tokens.
    pub fn last_logits(&self) -> Option<&[f32]> {
        self.last_logits.as_deref()
    }

    /// [`Session::prefill`] that stops between layers once `cancel` is cancelled. Returns
    /// false if it was: the tokens of the chunks that completed stay in the conversation,
    /// and there are no logits until the next call completes.
    pub fn prefill_cancellable(&mut self, ids: &[u32], cancel: &CancelHandle) -> Result<bool> {
        if ids.is_empty() {
            return Ok(true);
        }
        if self.cache.len() + ids.len() > self.cache.n_ctx() && !self.make_room(ids.len()) {
            let (n_ctx, used) = (self.cache.n_ctx(), self.cache.len());
            return Err(Error::ContextFull { n_ctx, used, requested: ids.len() });
        }
        let start = self.cache.len();
        let n_keys = start + ids.len();
        let chunks: Vec<&[u32]> = ids.chunks(self.n_batch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let want = if i + 1 == chunks.len() { Logits::Last } else { Logits::None };
            match self
                .model
                .forward_with(&mut self.cache, chunk, n_keys, self.scaling, want, &|| cancel.is_cancelled())?
            {
                Ok(logits) => {
                    self.tokens.extend_from_slice(chunk);
                    self.count.store(self.tokens.len(), Ordering::Relaxed);
                    if want == Logits::Last {
                        self.last_logits = Some(logits);
                    }
                }
                Err(_) => {
                    // Keep the cache consistent with the tokens that made it in.
                    self.last_logits = None;
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Feeds one token; returns the logits that follow it.
    pub fn decode(&mut self, id: u32) -> Result<&[f32]> {
        self.prefill(&[id])
    }

    /// Prompt as text: tokenized, then [`Session::generate_text_ids`].
    pub fn generate(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerationStats> {
        let ids = self.model.tokenizer.encode(prompt)?;
        self.generate_text_ids(&ids, opts, on_text)
    }

    /// [`Session::generate_ids`] streaming text pieces (whole characters), with `opts.stop`
    /// applied to the text: a stop string ends generation and is never shown.
    pub fn generate_text_ids(
        &mut self,
        ids: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<GenerationStats> {
        let model = self.model.clone();
        let mut decoder = StreamDecoder::new(&model.tokenizer);
        let stop_strings = if opts.constraint.is_some() { &[][..] } else { &opts.stop[..] };
        let mut stops = StopMatcher::new(stop_strings);
        let mut hit_stop = false;
        let mut stats = self.generate_ids(ids, opts, &mut |id| {
            let piece = decoder.push(id).unwrap_or_default();
            let (out, stop) = stops.push(&piece);
            if !out.is_empty() {
                on_text(&out);
            }
            hit_stop |= stop;
            !stop
        })?;
        if hit_stop {
            stats.stop_reason = StopReason::StopString;
        } else {
            let tail = stops.finish(&decoder.finish());
            if !tail.is_empty() {
                on_text(&tail);
            }
        }
        Ok(stats)
    }

    /// Generates up to `max_tokens` after `prompt` (appended to the conversation so far).
    /// `on_token` gets each generated id and returns false to stop (e.g. a stop string).
    pub fn generate_ids(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenerationStats> {
        opts.sampling.validate().map_err(Error::InvalidArgument)?;
        if prompt.is_empty() && self.last_logits.is_none() {
            return Err(Error::InvalidArgument("prompt is empty and there is no conversation to continue".into()));
        }
        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            generated_tokens: 0,
            prompt_time: Duration::ZERO,
            generation_time: Duration::ZERO,
            constraint_time: Duration::ZERO,
            stop_reason: StopReason::MaxTokens,
            drafted_tokens: 0,
            accepted_tokens: 0,
        };
        let t0 = Instant::now();
        let cancel = &opts.cancel;
        let prefilled = !cancel.is_cancelled() && self.prefill_cancellable(prompt, cancel)?;
        stats.prompt_time = t0.elapsed();
        if !prefilled {
            stats.stop_reason = StopReason::Cancelled;
            return Ok(stats);
        }
        let mut guide = match &opts.constraint {
            Some(c) => Some(self.model.constraint_engine()?.guide(c)?),
            None => None,
        };
        let mut sampler = Sampler::new(opts.sampling.clone());
        let eos = self.model.tokenizer.eos_id();
        let max_draft = if guide.is_some() { 0 } else { opts.draft.min(MAX_DRAFT) };
        // The draft length adapts as in Hugging Face's assisted generation: +2 after a fully
        // accepted draft, -1 (down to 1) after a rejection, so text that stops repeating its
        // input pays for one-token drafts only, and copied spans soon get long ones.
        let mut draft_len = max_draft;
        let t1 = Instant::now();
        let mut logits = self.last_logits.clone().unwrap_or_default();
        // A token sampled while verifying a draft (where the draft went wrong): the next one to
        // emit, already drawn from the right logits.
        let mut pending: Option<u32> = None;
        while stats.generated_tokens < opts.max_tokens {
            if cancel.is_cancelled() {
                stats.stop_reason = StopReason::Cancelled;
                break;
            }
            let remaining = opts.max_tokens - stats.generated_tokens;
            let mut id = pending.take();
            if let (None, Some(g)) = (id, guide.as_mut()) {
                check_finite(&logits, self.tokens.len())?;
                let tc = Instant::now();
                if g.is_complete() {
                    stats.stop_reason = StopReason::EndOfText;
                    break;
                }
                if let Some(closing) = g.must_close(remaining) {
                    self.emit_closing(&closing, g, &mut stats, cancel, on_token)?;
                    break;
                }
                g.mask(&mut logits)?;
                let masked = tc.elapsed();
                let t = sampler.sample(&mut logits, &self.tokens);
                if t == g.eos() {
                    stats.stop_reason = StopReason::EndOfText;
                    break;
                }
                let tc = Instant::now();
                g.accept(t)?;
                let closing = g.check_room(remaining - 1)?;
                stats.constraint_time += masked + tc.elapsed();
                if let Some(closing) = closing {
                    self.emit_closing(&closing, g, &mut stats, cancel, on_token)?;
                    break;
                }
                id = Some(t);
            }
            let id = match id {
                Some(id) => id,
                None => {
                    check_finite(&logits, self.tokens.len())?;
                    sampler.sample(&mut logits, &self.tokens)
                }
            };
            if opts.stop_at_eos && Some(id) == eos {
                stats.stop_reason = StopReason::EndOfText;
                break;
            }
            stats.generated_tokens += 1;
            if !on_token(id) {
                // The stop token is not fed back: the conversation ends before it.
                stats.stop_reason = StopReason::StopString;
                break;
            }
            if self.cache.len() >= self.cache.n_ctx() && !self.make_room(1) {
                stats.stop_reason = StopReason::ContextFull;
                break;
            }
            let draft = self.draft_after(id, draft_len.min(remaining - 1));
            if draft.is_empty() {
                // Fed back even after the last token, so the conversation can be continued.
                if !self.prefill_cancellable(&[id], cancel)? {
                    stats.stop_reason = StopReason::Cancelled;
                    break;
                }
                logits.copy_from_slice(self.last_logits.as_deref().unwrap_or_default());
                continue;
            }
            let accepted_before = stats.accepted_tokens;
            let verified =
                self.verify_draft(id, &draft, &mut sampler, opts, &mut stats, cancel, eos, on_token, &mut pending)?;
            draft_len = if stats.accepted_tokens - accepted_before == draft.len() {
                (draft_len + 2).min(max_draft)
            } else {
                draft_len.saturating_sub(1).max(1)
            };
            match verified {
                Some(row) => logits = row,
                None => break, // stats.stop_reason says why
            }
        }
        stats.generation_time = t1.elapsed();
        Ok(stats)
    }

    /// Prompt-lookup draft tokens to follow `id` (see [`crate::draft`]), at most `max`, and
    /// none where verifying them in one batch could differ from feeding them one by one: past
    /// the context, or where dynamic ALiBi interpolation would give the batch another scale.
    fn draft_after(&self, id: u32, max: usize) -> Vec<u32> {
        let start = self.cache.len();
        let room = self.cache.n_ctx().saturating_sub(start + 1);
        let k = max.min(room);
        if k == 0 || self.scaling.scale(start + 1) != self.scaling.scale(start + 1 + k) {
            return Vec::new();
        }
        crate::draft::prompt_lookup(&self.tokens, id, k)
    }

    /// Feeds `id` and its draft in one forward pass, then walks the draft: at each position
    /// the sampler draws the next token from the verified logits, exactly as plain decoding
    /// would (same logits up to float rounding, same random draws, one per emitted token); a
    /// drawn token equal to the draft's is accepted and emitted, the first that differs ends the
    /// walk and becomes `pending`, to be emitted next. The cache then keeps what was accepted.
    /// Because every emitted token is a draw from the model's own distribution, sampled output
    /// has exactly the distribution of plain decoding. Returns the logits after the kept tokens,
    /// or None when generation ends here (the reason in `stats`).
    #[allow(clippy::too_many_arguments)]
    fn verify_draft(
        &mut self,
        id: u32,
        draft: &[u32],
        sampler: &mut Sampler,
        opts: &GenerateOptions,
        stats: &mut GenerationStats,
        cancel: &CancelHandle,
        eos: Option<u32>,
        on_token: &mut dyn FnMut(u32) -> bool,
        pending: &mut Option<u32>,
    ) -> Result<Option<Vec<f32>>> {
        let mut batch = Vec::with_capacity(draft.len() + 1);
        batch.push(id);
        batch.extend_from_slice(draft);
        let base = self.cache.len();
        let n_keys = base + batch.len();
        let rows = match self
            .model
            .forward_with(&mut self.cache, &batch, n_keys, self.scaling, Logits::All, &|| cancel.is_cancelled())?
        {
            Ok(rows) => rows,
            Err(_) => {
                stats.stop_reason = StopReason::Cancelled;
                return Ok(None);
            }
        };
        self.tokens.extend_from_slice(&batch);
        stats.drafted_tokens += draft.len();
        let v = self.model.hparams.n_vocab;
        if let Some((i, value)) = crate::ops::first_non_finite(&rows[..draft.len() * v]) {
            check_finite(&[value], base + 1 + i / v)?;
        }
        let mut stop = None;
        let walk = crate::draft::walk(&rows, v, draft, sampler, &self.tokens, base + 1, &mut |t| {
            if cancel.is_cancelled() {
                stop = Some(StopReason::Cancelled);
                return Step::Stop;
            }
            if opts.stop_at_eos && Some(t) == eos {
                stop = Some(StopReason::EndOfText);
                return Step::Stop;
            }
            stats.generated_tokens += 1;
            if !on_token(t) {
                stop = Some(StopReason::StopString);
                return Step::Stop;
            }
            if stats.generated_tokens == opts.max_tokens {
                Step::Last
            } else {
                Step::Next
            }
        });
        let accepted = walk.accepted;
        *pending = walk.pending;
        stats.accepted_tokens += accepted;
        let keep = base + 1 + accepted;
        let next = rows[accepted * v..(accepted + 1) * v].to_vec();
        self.tokens.truncate(keep);
        self.cache.truncate(keep);
        self.count.store(keep, Ordering::Relaxed);
        self.last_logits = Some(next.clone());
        if let Some(reason) = stop {
            stats.stop_reason = reason;
            return Ok(None);
        }
        Ok(Some(next))
    }

    /// Ends a constrained answer the budget would cut: the completion's tokens are reported
    /// and fed like sampled ones (so the conversation can go on), and the stop reason stays
    /// "max tokens".
    fn emit_closing(
        &mut self,
        closing: &[u32],
        guide: &mut Guide,
        stats: &mut GenerationStats,
        cancel: &CancelHandle,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<()> {
        stats.stop_reason = StopReason::MaxTokens;
        for &id in closing {
            guide.accept(id)?;
            stats.generated_tokens += 1;
            on_token(id);
        }
        if self.cache.len() + closing.len() > self.cache.n_ctx() && !self.make_room(closing.len()) {
            stats.stop_reason = StopReason::ContextFull;
            return Ok(());
        }
        if !closing.is_empty() && !self.prefill_cancellable(closing, cancel)? {
            stats.stop_reason = StopReason::Cancelled;
        }
        Ok(())
    }
}

/// A NaN or infinite logit means broken weights or a corrupted cache: sampling would quietly
/// pick token 0 ("!") forever, so the generation stops with an error instead.
fn check_finite(logits: &[f32], position: usize) -> Result<()> {
    match crate::ops::first_non_finite(logits) {
        None => Ok(()),
        Some((token, value)) => Err(Error::NonFinite {
            what: format!(
                "logit of token {token} after position {position} (the weights or the KV cache hold NaN or infinity)"
            ),
            value,
        }),
    }
}

/// Streams text while holding back any tail that could be the start of a stop string, so a
/// stop string is never partly shown to the user.
struct StopMatcher<'a> {
    stops: &'a [String],
    held: String,
}

impl<'a> StopMatcher<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopMatcher { stops, held: String::new() }
    }

    /// Adds a piece; returns (text safe to emit, whether a stop string was found).
    fn push(&mut self, piece: &str) -> (String, bool) {
        self.held.push_str(piece);
        let first_stop = self.stops.iter().filter(|s| !s.is_empty()).filter_map(|s| self.held.find(s.as_str())).min();
        if let Some(at) = first_stop {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.held[i..])))
            .unwrap_or(self.held.len());
        let out = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        (out, false)
    }

    fn finish(&mut self, tail: &str) -> String {
        let (mut out, stop) = self.push(tail);
        if !stop {
            out.push_str(&std::mem::take(&mut self.held));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_split_across_pieces_are_never_shown() {
        let stops = vec!["\nUser:".to_string()];
        let mut m = StopMatcher::new(&stops);
        let mut shown = String::new();
        let mut stopped = false;
        for p in ["Hello", " there", "\nUs", "er:", " more"] {
            let (out, stop) = m.push(p);
            shown.push_str(&out);
            if stop {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(shown, "Hello there");
    }

    #[test]
    fn held_prefix_is_released_when_it_does_not_complete() {
        let stops = vec!["STOP".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("abc ST"), ("abc ".to_string(), false));
        assert_eq!(m.push("ILL"), ("STILL".to_string(), false));
        assert_eq!(m.finish("ST"), "ST");
    }
}
