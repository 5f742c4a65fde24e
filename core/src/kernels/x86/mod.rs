//! x86_64 kernels: AVX2 (+FMA, F16C) everywhere it exists, AVX-VNNI on top where present, and
//! 512-bit single-token Q4_0, Q4_K and Q8_0 paths where AVX-512 VNNI + VBMI exist.

/// Runs `$tile::<R, T>(w, nbw, r, x, nbx, t, out, ldo, extra..)` over the whole rows x toks
/// rectangle: tiles of 4 weight rows x 2 tokens, with 4x1, 1x2 and 1x1 remainders.
macro_rules! drive_4x2 {
    ($tile:ident, $w:expr, $nbw:expr, $x:expr, $nbx:expr, $rows:expr, $toks:expr, $out:expr, $ldo:expr; $($extra:expr),*) => {{
        let mut r = 0;
        while r < $rows {
            let rm = if $rows - r >= 4 { 4 } else { 1 };
            let mut t = 0;
            while t < $toks {
                let tm = if $toks - t >= 2 { 2 } else { 1 };
                unsafe {
                    match (rm, tm) {
                        (4, 2) => $tile::<4, 2>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                        (4, _) => $tile::<4, 1>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                        (_, 2) => $tile::<1, 2>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                        _ => $tile::<1, 1>($w, $nbw, r, $x, $nbx, t, $out, $ldo, $($extra),*),
                    }
                }
                t += tm;
            }
            r += rm;
        }
    }};
}

pub mod avx2;
mod kv_q4;
mod packed_zmm;
mod q4_0;
mod q4_0_zmm;
mod q4_0r16_avx2;
mod q4_0r16_zmm;
mod q4k;
mod q4k_zmm;
mod q8_0;
mod q8_0_zmm;

pub use avx2::{avx2, avx512_vbmi, avx512_vnni, avx_vnni};

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;
use std::thread::LocalKey;

/// How the 512-bit decode kernels stream weights, chosen once per process.
///
/// Decode reads each weight once, in memory order, and is a race between DRAM and the
/// unpacking work. What wins depends on the core's memory pipeline, so the plan comes from a
/// table of measurements by CPU family ([`measured_plan`]), never from a guess; the
/// `POCKETLM_PREFETCH=BYTES`, `POCKETLM_PREFETCH_TO=l1|l2` and `POCKETLM_DECODE_ROWS=1|4`
/// variables override each field, for A/B runs on new CPUs (README "Kernels").
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DecodePlan {
    /// Bytes ahead of the current weights that the software prefetch requests. A Q4_0 row is
    /// only 1.4 KB, too short for the hardware stream prefetcher to ramp up on its own.
    pub ahead: usize,
    /// Prefetch into L2 (`prefetcht1`) instead of L1. An L1 prefetch holds one of the core's
    /// few L1 miss buffers until DRAM answers, which caps the lines in flight per core.
    pub to_l2: bool,
    /// Run `TILE` rows side by side (one activation load for all of them) instead of one.
    pub tile: bool,
}

pub(crate) fn decode_plan() -> DecodePlan {
    static PLAN: OnceLock<DecodePlan> = OnceLock::new();
    *PLAN.get_or_init(|| {
        let env = |k: &str| std::env::var(k).ok();
        let mut plan = measured_plan(cpu_family());
        if let Some(b) = env("POCKETLM_PREFETCH").and_then(|v| v.parse().ok()).filter(|&b: &usize| b <= 1 << 20) {
            plan.ahead = b;
        }
        match env("POCKETLM_PREFETCH_TO").as_deref() {
            Some("l1") => plan.to_l2 = false,
            Some("l2") => plan.to_l2 = true,
            _ => {}
        }
        match env("POCKETLM_DECODE_ROWS").as_deref() {
            Some("1") => plan.tile = false,
            Some("4") => plan.tile = true,
            _ => {}
        }
        plan
    })
}

/// The decode plan measured best per x86 family (tokens/s of tg32-64 on the 3B Q4_0 shape,
/// 2 threads, alternating A/B runs; the figures are in the README's "Kernels" section).
/// Zen 5 (family 0x1A): one row, L1 prefetch 8 KB ahead (90% of the bandwidth ceiling).
/// Zen 4 (0x19) and every family not measured yet: 4 rows, L2 prefetch 16 KB ahead, which
/// took Zen 4 from 48-56% to 72-76% of its ceiling; its ingredients (more lines in flight,
/// fewer loads per weight byte) help any core whose decode is bound by memory latency.
fn measured_plan(family: u32) -> DecodePlan {
    match family {
        0x1A => DecodePlan { ahead: 8192, to_l2: false, tile: false },
        _ => DecodePlan { ahead: 16384, to_l2: true, tile: true },
    }
}

/// A prefetch of the 3 cache lines `plan.ahead` bytes past `p` (see [`prefetch_lines`]).
#[inline]
#[target_feature(enable = "sse")]
fn prefetch3(p: *const u8, plan: DecodePlan) {
    prefetch_lines(p, 3, plan)
}

/// A prefetch of the `n` cache lines `plan.ahead` bytes past `p`, into L2 or L1 as the plan
/// says. Prefetches never fault, whatever the address.
#[inline]
#[target_feature(enable = "sse")]
fn prefetch_lines(p: *const u8, n: usize, plan: DecodePlan) {
    let f = p.wrapping_add(plan.ahead).cast::<i8>();
    for i in 0..n {
        if plan.to_l2 {
            _mm_prefetch::<_MM_HINT_T1>(f.wrapping_add(64 * i));
        } else {
            _mm_prefetch::<_MM_HINT_T0>(f.wrapping_add(64 * i));
        }
    }
}

/// The CPU's display family (base family, plus the extended family when the base is 0xF).
pub(crate) fn cpu_family() -> u32 {
    let eax = __cpuid(1).eax; // leaf 1 exists on every x86_64 CPU
    let base = (eax >> 8) & 0xF;
    if base == 0xF {
        base + ((eax >> 20) & 0xFF)
    } else {
        base
    }
}

/// Rows the 512-bit decode kernels run side by side when the plan says so (`TILE`
/// accumulators, each activation load shared by all of them). On Zen 4 one row at a time was
/// bound by loads: 22 GB/s per core on cached weights, against 30 GB/s with 4 rows.
const TILE: usize = 4;

/// A kernel over `TILE` consecutive rows (see [`gemv_rows`]).
type TileFn<'a, B, X> = dyn Fn(&[B], &[X], DecodePlan) -> [f32; TILE] + 'a;

/// The decode driver the 512-bit gemv kernels share: `prepare` rearranges the token's
/// activations into `buf` (kept per worker thread, since decode calls this hundreds of times per
/// token), then the weight rows of `nbw` blocks run in memory order into `out[r * ldo]`:
/// `TILE` at a time through `tile` if given and `plan.tile`, the others one at a time through
/// `row`. Both take the row's (rows') blocks, the activations and the plan.
#[allow(clippy::too_many_arguments)]
#[inline]
fn gemv_rows<B, X: 'static>(
    buf: &'static LocalKey<RefCell<Vec<X>>>,
    prepare: impl FnOnce(&mut Vec<X>),
    w: &[B],
    nbw: usize,
    rows: usize,
    out: &mut [f32],
    ldo: usize,
    tile: Option<&TileFn<'_, B, X>>,
    row: impl Fn(&[B], &[X], DecodePlan) -> f32,
) {
    let plan = decode_plan();
    buf.with_borrow_mut(|xs| {
        xs.clear();
        prepare(xs);
        let mut done = 0;
        if let Some(tile) = tile.filter(|_| plan.tile) {
            while done + TILE <= rows {
                let ys = tile(&w[done * nbw..(done + TILE) * nbw], xs, plan);
                for (i, y) in ys.into_iter().enumerate() {
                    out[(done + i) * ldo] = y;
                }
                done += TILE;
            }
        }
        for r in done..rows {
            out[r * ldo] = row(&w[r * nbw..(r + 1) * nbw], xs, plan);
        }
    })
}

/// `vpermt2b` indices (into two concatenated 64-byte loads starting at byte `base` of a group)
/// that gather the `quants`-byte quant arrays of consecutive `block`-byte blocks from `first`
/// on; each block's quants follow its 2-byte f16 scale.
const fn quant_index(block: usize, quants: usize, first: usize, base: usize) -> [u8; 64] {
    let mut idx = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        idx[i] = (block * (first + i / quants) + 2 + i % quants - base) as u8;
        i += 1;
    }
    idx
}

/// `vpermt2w` indices of the f16 scales of `n` consecutive `block`-byte blocks (at bytes
/// `block * i`), into the first `n` words.
const fn scale_index(block: usize, n: usize) -> [u16; 32] {
    let mut idx = [0u16; 32];
    let mut i = 0;
    while i < n {
        idx[i] = (block / 2 * i) as u16;
        i += 1;
    }
    idx
}

/// A byte mask of the first `n` (≤ 64) lanes, for masked loads that stop at a row's end.
#[inline]
fn byte_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// The 8 block sums of a group, in block order, from the two results of two rounds of
/// `vphaddd` over 8 per-block i32x8 products (`g1` = hadd(hadd(b0, b1), hadd(b2, b3)), `g2` the
/// same for blocks 4-7): each 128-bit half of `g1`/`g2` holds one partial sum per block.
#[inline]
#[target_feature(enable = "avx2")]
fn block_sums8(g1: __m256i, g2: __m256i) -> __m256i {
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(g1, g2), _mm256_permute2x128_si256::<0x31>(g1, g2))
}
