//! Prefill gemm for AVX-512 VNNI over weight rows repacked 16 at a time, one row per lane.
//!
//! The row-major tiles (q4_0.rs, q8_0.rs, q4k.rs) give every (row, token) pair an i32x8 per
//! block and reduce it with horizontal adds, so a large share of their instructions are not
//! multiplies. Here a chunk of up to 16 weight rows is first unpacked into [`Packed`] blocks:
//! per 32-wide block, 8 registers whose lane r holds 4 consecutive weights of row r as unsigned
//! bytes, and the 16 rows' scales and offsets. A token's 4 matching activation bytes are
//! broadcast to every lane (an embedded-broadcast operand of `vpdpbusd`), so 8 `vpdpbusd` leave
//! the 16 rows' exact block sums in one register with nothing to reduce, and a convert and
//! two float operations apply the scales: acc += (d ⊙ dx) · Σ (q − o)·x.
//!
//! A weight is `d·(q − o)` with unsigned `q`: Q4_0 has `o = 8`, and Q8_0 is stored `q + 128`
//! (`o = 128`). The offset is removed exactly, in the integer domain, by starting the block's
//! sums at `−o·Σx` (the activation block's integer sum). Q4_K's offset is a per-row float,
//! `dmin·min_j` with `d = d·scale_j`, so it is one more FMA: acc −= c ⊙ s with s = dx·Σx.
//! The unpacking costs a few gathers per block and row group, once per call; prefill calls
//! carry a whole batch of tokens ([`crate::kernels::Kernels::prefill_tokens`]), which pays for
//! it many times over.

use crate::quant::{q4k::scale_min, BlockQ4K, BlockQ4_0, BlockQ8A, BlockQ8_0};
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Rows per packed group: the 16 i32 lanes of a zmm register.
const LANES: usize = 16;
/// Tokens per tile: 8 integer and 8 float accumulators, with room left in the 32 registers
/// for the weights, scales and broadcasts.
const TILE_TOKS: usize = 8;
/// Calls with fewer tokens go to the row-major tiles: below this, unpacking the rows costs
/// more than the packed tile saves (Zen 4, 2 threads, Q4_0: pp8 26-29 tok/s packed against
/// 31 with the tiles, pp16 even at 31).
pub(super) const MIN_TOKS: usize = 16;

/// One 32-wide block of a group of 16 rows, unpacked (see the module comment).
#[repr(C, align(64))]
struct Packed {
    /// `q[j]` bytes `4r..4r + 4`: row r's weights `4j..4j + 4`, as unsigned bytes.
    q: [[u8; 64]; 8],
    /// Per row: the block scale `d`.
    d: [f32; LANES],
    /// Per row: the float weight offset `c` of formats without an integer one (a weight is
    /// `d·q − c`; Q4_K).
    c: [f32; LANES],
}

const _: () = assert!(std::mem::size_of::<Packed>() == 640);

impl Packed {
    const ZERO: Packed = Packed { q: [[0; 64]; 8], d: [0.0; LANES], c: [0.0; LANES] };
}

thread_local! {
    /// The current row group, kept per worker thread (a group of 6912-wide rows is 138 KB).
    static PACKED: RefCell<Vec<Packed>> = const { RefCell::new(Vec::new()) };
}

/// Byte offsets of 16 consecutive rows `stride` bytes apart, and the mask of the first `n`.
#[inline]
#[target_feature(enable = "avx512f")]
fn row_lanes(stride: usize, n: usize) -> (__m512i, __mmask16) {
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    (_mm512_mullo_epi32(iota, _mm512_set1_epi32(stride as i32)), ((1u32 << n) - 1) as u16)
}

/// The dword at byte `off` of 16 rows' blocks (rows past the mask read nothing and give 0).
///
/// # Safety
/// Every live lane's address `base + idx + off .. + 4` must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn gather(base: *const u8, off: usize, idx: __m512i, live: __mmask16) -> __m512i {
    // SAFETY: the caller guarantees the live lanes' 4 bytes are in bounds; masked lanes are
    // not accessed.
    unsafe { _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), live, idx, base.add(off).cast()) }
}

/// The f16 at byte `off` of 16 rows' blocks, as f32.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn gather_f16(base: *const u8, off: usize, idx: __m512i, live: __mmask16) -> __m512 {
    // SAFETY: as for `gather`; the f16 is the low half of the dword read.
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(unsafe { gather(base, off, idx, live) }))
}

/// Bytes ahead of the gathers that [`prefetch_rows`] asks for.
const PREFETCH_AHEAD: usize = 1024;

/// Prefetches each of `n` rows `stride` bytes apart, [`PREFETCH_AHEAD`] bytes past `base`. A
/// group's rows are 16 streams read side by side, more than the hardware prefetcher follows,
/// so without this the gathers wait for DRAM a few lines at a time. Prefetches never fault.
#[inline]
#[target_feature(enable = "sse")]
fn prefetch_rows(base: *const u8, stride: usize, n: usize) {
    for r in 0..n {
        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(r * stride + PREFETCH_AHEAD).cast());
    }
}

/// Stores a register into 64 bytes of a packed block.
#[inline]
#[target_feature(enable = "avx512f")]
fn store(dst: &mut [u8; 64], v: __m512i) {
    // SAFETY: `dst` is 64 writable bytes.
    unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store_ps(dst: &mut [f32; LANES], v: __m512) {
    // SAFETY: `dst` is 16 writable floats.
    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), v) }
}

/// Unpacks rows `r0..r0 + n` (n ≤ 16) of Q4_0 blocks: quants `& 0xF` are weights 0-15 of a
/// block, `>> 4` weights 16-31.
///
/// # Safety
/// `w` must hold `(r0 + n) * nbw` blocks and `out` `nbw`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_q4_0(w: &[BlockQ4_0], nbw: usize, r0: usize, n: usize, out: &mut [Packed]) {
    let (idx, live) = row_lanes(nbw * 18, n);
    let m4 = _mm512_set1_epi8(0x0F);
    for (b, p) in out[..nbw].iter_mut().enumerate() {
        // SAFETY: row r0 + i's block b is in `w` for every live lane i; the dwords read lie
        // inside the 18-byte block (scale at 0, quants at 2..18).
        unsafe {
            let base = w.as_ptr().add(r0 * nbw + b).cast::<u8>();
            prefetch_rows(base, nbw * 18, n);
            for j in 0..4 {
                let q = gather(base, 2 + 4 * j, idx, live);
                store(&mut p.q[j], _mm512_and_si512(q, m4));
                store(&mut p.q[j + 4], _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4));
            }
            store_ps(&mut p.d, gather_f16(base, 0, idx, live));
        }
    }
}

/// Unpacks rows of Q8_0 blocks, each weight stored `+ 128` to make it unsigned.
///
/// # Safety
/// As for [`pack_q4_0`].
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_q8_0(w: &[BlockQ8_0], nbw: usize, r0: usize, n: usize, out: &mut [Packed]) {
    let (idx, live) = row_lanes(nbw * 34, n);
    let flip = _mm512_set1_epi8(-128);
    for (b, p) in out[..nbw].iter_mut().enumerate() {
        // SAFETY: as in `pack_q4_0`; the 34-byte block has its scale at 0, quants at 2..34.
        unsafe {
            let base = w.as_ptr().add(r0 * nbw + b).cast::<u8>();
            prefetch_rows(base, nbw * 34, n);
            for j in 0..8 {
                store(&mut p.q[j], _mm512_xor_si512(gather(base, 2 + 4 * j, idx, live), flip));
            }
            store_ps(&mut p.d, gather_f16(base, 0, idx, live));
        }
    }
}

/// Unpacks rows of Q4_K super-blocks into 8 packed blocks each: sub-blocks 2k and 2k + 1 are
/// the low and high nibbles of the same 32 bytes, with 6-bit scales and mins.
///
/// # Safety
/// `w` must hold `(r0 + n) * nbw` super-blocks and `out` `8 * nbw` blocks.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_q4k(w: &[BlockQ4K], nbw: usize, r0: usize, n: usize, out: &mut [Packed]) {
    let (idx, live) = row_lanes(nbw * 144, n);
    let m4 = _mm512_set1_epi8(0x0F);
    for (b, ps) in out[..8 * nbw].chunks_exact_mut(8).enumerate() {
        for p in ps.iter_mut() {
            (p.d, p.c) = ([0.0; LANES], [0.0; LANES]);
        }
        // SAFETY (pointer only): row r0's super-block b, in `w` by the contract above.
        let base = unsafe { w.as_ptr().add(r0 * nbw + b) }.cast::<u8>();
        prefetch_rows(base, nbw * 144, n);
        for r in 0..n {
            let blk = &w[(r0 + r) * nbw + b];
            let (d, dmin) = (blk.d.to_f32(), blk.dmin.to_f32());
            for (s, p) in ps.iter_mut().enumerate() {
                let (sc, m) = scale_min(s, &blk.scales);
                p.d[r] = d * sc as f32;
                p.c[r] = dmin * m as f32;
            }
        }
        for pair in 0..4 {
            let (lo, hi) = ps[2 * pair..2 * pair + 2].split_at_mut(1);
            for j in 0..8 {
                // SAFETY: as in `pack_q4_0`; the 144-byte super-block has its quants at
                // 16..144, and pair k's 32 bytes at 16 + 32k.
                let q = unsafe { gather(base, 16 + 32 * pair + 4 * j, idx, live) };
                store(&mut lo[0].q[j], _mm512_and_si512(q, m4));
                store(&mut hi[0].q[j], _mm512_and_si512(_mm512_srli_epi16::<4>(q), m4));
            }
        }
    }
}

/// `T` tokens against one packed row group: returns each token's 16 row results. `O` is the
/// format's integer weight offset, or 0 for a float offset in [`Packed::c`].
///
/// # Safety
/// `x` must point at token 0's first activation block, with `T` tokens `nbx` blocks apart,
/// each holding at least `p.len()` blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const T: usize, const O: i32>(p: &[Packed], x: *const BlockQ8A, nbx: usize) -> [__m512; T] {
    let mut acc = [_mm512_setzero_ps(); T];
    let neg_o = _mm512_set1_epi32(-O);
    for (kb, pb) in p.iter().enumerate() {
        // SAFETY: token t's block kb is in bounds by the contract above.
        let xb: [&BlockQ8A; T] = std::array::from_fn(|t| unsafe { &*x.add(t * nbx + kb) });
        // Σ (q − o)·x = Σ q·x − o·Σx, exact in i32 (at most 255·128·32 in magnitude).
        let mut dots: [__m512i; T] = std::array::from_fn(|t| {
            if O == 0 {
                _mm512_setzero_si512()
            } else {
                _mm512_mullo_epi32(neg_o, _mm512_set1_epi32(xb[t].sum))
            }
        });
        for j in 0..8 {
            // SAFETY: 64 aligned bytes of the packed block.
            let wj = unsafe { _mm512_load_si512(pb.q[j].as_ptr().cast()) };
            for t in 0..T {
                // SAFETY: bytes 4j..4j + 4 of the block's 32 quants.
                let xq = unsafe { xb[t].qs.as_ptr().add(4 * j).cast::<i32>().read_unaligned() };
                dots[t] = _mm512_dpbusd_epi32(dots[t], wj, _mm512_set1_epi32(xq));
            }
        }
        // SAFETY: 16 aligned floats each.
        let (d, c) = unsafe { (_mm512_load_ps(pb.d.as_ptr()), _mm512_load_ps(pb.c.as_ptr())) };
        for t in 0..T {
            let scale = _mm512_mul_ps(d, _mm512_set1_ps(xb[t].d));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[t]), scale, acc[t]);
            if O == 0 {
                acc[t] = _mm512_fnmadd_ps(c, _mm512_set1_ps(xb[t].s), acc[t]);
            }
        }
    }
    acc
}

/// Runs every token of the call over one packed group of `n` rows starting at `r0`.
///
/// # Safety
/// `x` must hold `toks` rows of `nbx >= p.len()` blocks and `out` `(r0 + n - 1) * ldo + toks`
/// values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn run_group<const O: i32>(
    p: &[Packed],
    x: &[BlockQ8A],
    nbx: usize,
    toks: usize,
    r0: usize,
    n: usize,
    out: &mut [f32],
    ldo: usize,
) {
    let mut write = |t0: usize, acc: &[__m512]| {
        for (t, v) in acc.iter().enumerate() {
            let mut lanes = [0f32; LANES];
            store_ps(&mut lanes, *v);
            for (r, y) in lanes[..n].iter().enumerate() {
                out[(r0 + r) * ldo + t0 + t] = *y;
            }
        }
    };
    let mut t0 = 0;
    while t0 < toks {
        let xt = x[t0 * nbx..].as_ptr();
        // SAFETY: tokens t0..t0 + T are in `x` (checked by the caller's bounds).
        unsafe {
            match toks - t0 {
                1 => write(t0, &tile::<1, O>(p, xt, nbx)),
                2 => write(t0, &tile::<2, O>(p, xt, nbx)),
                3 => write(t0, &tile::<3, O>(p, xt, nbx)),
                4 => write(t0, &tile::<4, O>(p, xt, nbx)),
                5 => write(t0, &tile::<5, O>(p, xt, nbx)),
                6 => write(t0, &tile::<6, O>(p, xt, nbx)),
                7 => write(t0, &tile::<7, O>(p, xt, nbx)),
                _ => write(t0, &tile::<TILE_TOKS, O>(p, xt, nbx)),
            }
        }
        t0 += TILE_TOKS;
    }
}

/// The driver the three formats share: each group of 16 rows is unpacked by `pack` into the
/// thread's buffer (`subs` packed blocks per weight block), then runs every token.
///
/// # Safety
/// The shapes must have been checked (`check_gemm`, and `nbx >= nbw * subs`), and `pack` must
/// be safe to call on the CPU (AVX-512 VNNI present).
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn gemm<B, const O: i32>(
    w: &[B],
    nbw: usize,
    subs: usize,
    x: &[BlockQ8A],
    nbx: usize,
    rows: usize,
    toks: usize,
    out: &mut [f32],
    ldo: usize,
    pack: unsafe fn(&[B], usize, usize, usize, &mut [Packed]),
) {
    PACKED.with_borrow_mut(|buf| {
        buf.resize_with(buf.len().max(nbw * subs), || Packed::ZERO);
        for r0 in (0..rows).step_by(LANES) {
            let n = LANES.min(rows - r0);
            // SAFETY: rows r0..r0 + n are in `w` and the buffer holds nbw * subs blocks;
            // the token and output bounds were checked by the caller.
            unsafe {
                pack(w, nbw, r0, n, buf);
                run_group::<O>(&buf[..nbw * subs], x, nbx, toks, r0, n, out, ldo);
            }
        }
    })
}

/// The per-format entry points: `gemm` with the format's unpacking, packed blocks per weight
/// block and integer offset. Safety: as for [`gemm`].
macro_rules! entry {
    ($name:ident, $block:ty, $subs:expr, $offset:expr, $pack:ident) => {
        #[allow(clippy::too_many_arguments)]
        pub(super) unsafe fn $name(
            w: &[$block],
            nbw: usize,
            x: &[BlockQ8A],
            nbx: usize,
            rows: usize,
            toks: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            // SAFETY: forwarded contract.
            unsafe { gemm::<_, $offset>(w, nbw, $subs, x, nbx, rows, toks, out, ldo, $pack) }
        }
    };
}

entry!(gemm_q4_0, BlockQ4_0, 1, 8, pack_q4_0);
entry!(gemm_q8_0, BlockQ8_0, 1, 128, pack_q8_0);
entry!(gemm_q4k, BlockQ4K, 8, 0, pack_q4k);
