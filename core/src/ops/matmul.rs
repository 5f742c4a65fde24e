//! y = x · Wᵀ (+ b) for a weight matrix stored row-major [out, in] (GGUF order).
//!
//! Quantized weights: the activations are quantized once per call to int8 blocks, then rows
//! are split across rayon workers. Each worker owns a chunk of rows and walks the tokens in
//! tiles, so a chunk of weights is fetched from memory once and reused from cache for every
//! token of a prefill; single-token decode degenerates to a row-parallel matrix-vector product.

use crate::gguf::GgmlType;
use crate::kernels::{self, GemmFn, Kernels};
use crate::quant::blocks::ZERO_Q4_0;
use crate::quant::{as_blocks, Block, BlockQ4_0, BlockQ8A, QK};
use half::f16;
use rayon::prelude::*;

/// A borrowed weight matrix: `rows` outputs, each a row of `cols` inputs.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl MatRef<'_> {
    fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols as u64).unwrap_or(0) as usize
    }

    /// Row `r` as f32 into `out` (`cols` long): embedding lookups and reference paths.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        crate::quant::dequantize_tensor_row(self.ty, self.data, self.cols, r, out);
    }
}

/// Weight rows per parallel task: a 16-row chunk of a 2560-wide Q4_0 matrix is 23 KB, which
/// stays in L1/L2 while every token tile streams past it.
const ROWS_PER_TASK: usize = 16;
/// Weight rows per task for single-token decode, where nothing is reused across tokens and a
/// kernel call's fixed cost (rearranging the activations) is better spread over more rows.
const DECODE_ROWS_PER_TASK: usize = 64;

/// Calls of at most this many tokens run the single-token kernel once per token over each
/// chunk of rows (the chunk read from memory for the first token, from cache for the rest):
/// a speculative draft's verification batch (up to `session::MAX_DRAFT` + 1 tokens) then costs
/// little more than one token while decode is bound by memory, and gives bit for bit the
/// products one-token decoding gives. `POCKETLM_SMALL_BATCH=N` overrides it (A/B runs).
fn small_batch() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("POCKETLM_SMALL_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(crate::session::MAX_DRAFT + 1)
    })
}

/// `y[t][r] = x[t] · W[r] (+ bias[r])` for `n_tok` tokens; `x` is [n_tok][cols], `y` [n_tok][rows].
pub fn matmul(w: MatRef, bias: Option<&[f32]>, x: &[f32], n_tok: usize, y: &mut [f32]) {
    let k = kernels::best();
    assert_eq!(x.len(), n_tok * w.cols, "matmul: activations");
    assert_eq!(y.len(), n_tok * w.rows, "matmul: output");
    let out = Output { y: y.as_mut_ptr(), rows: w.rows, n_tok, bias, _y: std::marker::PhantomData };
    match w.ty {
        GgmlType::F32 | GgmlType::F16 => float_rows(k, w, x, &out),
        GgmlType::Q4_0 => quant_rows(w, x, &out, k, k.gemm_q4_0),
        GgmlType::Q4_0R16 => r16_rows(w, x, &out, k),
        GgmlType::Q8_0 => quant_rows(w, x, &out, k, k.gemm_q8_0),
        GgmlType::Q4K => quant_rows(w, x, &out, k, k.gemm_q4k),
        other => unreachable!("weight type {other} is rejected at load"),
    }
}

/// The [n_tok][rows] output, written by the row-chunk tasks: each task computes its rows for
/// every token into its own [rows][n_tok] buffer (the kernels' layout), then stores them, with
/// the bias, into its own columns of `y` while they are still in its cache. (A separate
/// transpose pass over the whole output was a tenth of a pp512 profile, waiting on loads.)
struct Output<'a> {
    y: *mut f32,
    rows: usize,
    n_tok: usize,
    bias: Option<&'a [f32]>,
    /// `y` is borrowed mutably from the caller for as long as this exists.
    _y: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: tasks write disjoint elements of `y` (see `Output::store`), which outlives the
// parallel loop (borrowed mutably by `matmul` for the whole call).
unsafe impl Sync for Output<'_> {}

impl Output<'_> {
    /// Stores rows `r0..` of every token from `chunk` ([rows][n_tok]).
    fn store(&self, r0: usize, chunk: &[f32]) {
        let n = chunk.len() / self.n_tok;
        assert!(r0 + n <= self.rows);
        for t in 0..self.n_tok {
            for r in 0..n {
                let b = self.bias.map_or(0.0, |b| b[r0 + r]);
                // SAFETY: in bounds (t < n_tok, r0 + r < rows, y is n_tok x rows), and row
                // chunks are disjoint, so no other task writes this element.
                unsafe { *self.y.add(t * self.rows + r0 + r) = chunk[r * self.n_tok + t] + b };
            }
        }
    }

    /// Runs `work(r0, chunk)` over chunks of `per_task` rows in parallel, each filling its
    /// [rows][n_tok] chunk, and stores the results.
    /// The chunk buffer is the worker's own, kept between tasks (decode runs ~13 000 tasks
    /// per token); `work` must write every element of it.
    fn par_rows(&self, per_task: usize, work: impl Fn(usize, &mut [f32]) + Sync) {
        (0..self.rows.div_ceil(per_task)).into_par_iter().for_each(|ci| {
            let r0 = ci * per_task;
            let mut buf = CHUNK.take();
            let chunk = grown(&mut buf, per_task.min(self.rows - r0) * self.n_tok, || 0.0);
            work(r0, chunk);
            self.store(r0, chunk);
            CHUNK.set(buf);
        });
    }
}

thread_local! {
    /// Activation blocks of one call, kept per thread between calls: allocated fresh, a
    /// prefill's 2 MB of them came from new pages every call, and faulting them in (the kernel
    /// zeroing each page) showed in profiles. A call takes the buffer out and puts it back, so
    /// a nested call on the same thread (rayon work stealing) just allocates its own.
    static ACTS: std::cell::Cell<Vec<BlockQ8A>> = const { std::cell::Cell::new(Vec::new()) };
    /// A task's Q4_0_R16 rows de-interleaved (see [`r16_rows`]).
    static PLAIN: std::cell::Cell<Vec<BlockQ4_0>> = const { std::cell::Cell::new(Vec::new()) };
    /// A row-chunk task's [rows][n_tok] results (see [`Output::par_rows`]).
    static CHUNK: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The first `n` elements of `v`, grown with `fill` if it is shorter. Callers overwrite every
/// element they use, so what an earlier call left there does not matter.
fn grown<T>(v: &mut Vec<T>, n: usize, fill: impl FnMut() -> T) -> &mut [T] {
    if v.len() < n {
        v.resize_with(n, fill);
    }
    &mut v[..n]
}

fn float_rows(k: &Kernels, w: MatRef, x: &[f32], out: &Output) {
    let (cols, n_tok) = (w.cols, out.n_tok);
    let rb = w.row_bytes();
    out.par_rows(ROWS_PER_TASK, |r0, chunk| {
        for (i, o) in chunk.chunks_exact_mut(n_tok).enumerate() {
            let row = &w.data[(r0 + i) * rb..(r0 + i + 1) * rb];
            for (t, o) in o.iter_mut().enumerate() {
                let xt = &x[t * cols..(t + 1) * cols];
                *o = match w.ty {
                    GgmlType::F32 => (k.dot_f32)(bytemuck::cast_slice(row), xt),
                    _ => (k.dot_f16)(bytemuck::cast_slice::<u8, f16>(row), xt),
                };
            }
        }
    });
}

/// Quantizes activations once, then runs the ISA's gemm over row chunks x token tiles.
fn quant_rows<B: Block + Sync>(w: MatRef, x: &[f32], out: &Output, k: &Kernels, gemm: GemmFn<B>) {
    let blocks: &[B] = as_blocks(w.data).unwrap_or(&[]);
    let nbw = blocks.len() / w.rows.max(1);
    with_acts(k, w, x, out.n_tok, |acts, per_token| {
        out.par_rows(rows_per_task(per_token), |r0, chunk| {
            let rows = chunk.len() / out.n_tok;
            run_gemm(k, gemm, &blocks[r0 * nbw..(r0 + rows) * nbw], nbw, acts, w.cols / QK, per_token, chunk)
        })
    })
}

/// Q4_0_R16 (16 rows interleaved, `quant::interleave`): single tokens go to the ISA's gemv for
/// that layout where it has one; otherwise each task de-interleaves its rows into plain Q4_0
/// blocks (16 rows = 23 KB for a 2560-wide matrix, still in cache for the gemm) and runs
/// `gemm_q4_0`. Task sizes are multiples of 16 rows, as are the matrices (checked at load).
fn r16_rows(w: MatRef, x: &[f32], out: &Output, k: &Kernels) {
    use crate::quant::interleave::{deinterleave, group_bytes, ROWS};
    let nbw = w.cols / QK;
    let (gb, n_tok) = (group_bytes(nbw), out.n_tok);
    with_acts(k, w, x, n_tok, |acts, per_token| {
        out.par_rows(rows_per_task(per_token), |r0, chunk| {
            let rows = chunk.len() / n_tok;
            let bytes = &w.data[r0 / ROWS * gb..(r0 + rows) / ROWS * gb];
            if let (true, Some(gemv)) = (per_token, k.gemv_q4_0r16) {
                for t in 0..n_tok {
                    gemv(bytes, nbw, &acts[t * nbw..(t + 1) * nbw], &mut chunk[t..], n_tok);
                }
                return;
            }
            let mut buf = PLAIN.take();
            let plain = grown(&mut buf, rows * nbw, || ZERO_Q4_0);
            deinterleave(bytes, nbw, plain);
            run_gemm(k, k.gemm_q4_0, plain, nbw, acts, nbw, per_token, chunk);
            PLAIN.set(buf);
        })
    })
}

/// Row-chunk task size: decode (one token, or a draft verification run token by token) wants
/// bigger tasks than prefill (see the constants).
fn rows_per_task(per_token: bool) -> usize {
    if per_token {
        DECODE_ROWS_PER_TASK
    } else {
        ROWS_PER_TASK
    }
}

/// Quantizes the `n_tok` activation rows to int8 blocks (in the thread's reused buffer) and
/// runs `work(acts, per_token)`, `per_token` telling whether the call is small enough for the
/// single-token kernels (see [`small_batch`]).
fn with_acts(k: &Kernels, w: MatRef, x: &[f32], n_tok: usize, work: impl FnOnce(&[BlockQ8A], bool)) {
    let nbx = w.cols / QK;
    let mut buf = ACTS.take();
    let acts = grown(&mut buf, n_tok * nbx, || BlockQ8A::ZERO);
    if n_tok == 1 {
        (k.quantize_q8a)(x, acts); // not worth waking a worker for
    } else {
        acts.par_chunks_mut(nbx).zip(x.par_chunks(w.cols)).for_each(|(a, xr)| (k.quantize_q8a)(xr, a));
    }
    work(acts, n_tok <= small_batch());
    ACTS.set(buf);
}

/// One task's rows (`w`, `nbw` blocks each) against every token (`nbx` activation blocks each)
/// into its [rows][n_tok] chunk: token by token through the single-token kernel, or in the
/// ISA's prefill batches.
#[allow(clippy::too_many_arguments)]
fn run_gemm<B>(
    k: &Kernels,
    gemm: GemmFn<B>,
    w: &[B],
    nbw: usize,
    acts: &[BlockQ8A],
    nbx: usize,
    per_token: bool,
    chunk: &mut [f32],
) {
    let n_tok = acts.len() / nbx.max(1);
    let rows = chunk.len() / n_tok.max(1);
    let step = if per_token { 1 } else { k.prefill_tokens };
    for t0 in (0..n_tok).step_by(step) {
        let toks = step.min(n_tok - t0);
        gemm(w, nbw, &acts[t0 * nbx..(t0 + toks) * nbx], nbx, rows, toks, &mut chunk[t0..], n_tok);
    }
}
