//! Block layouts shared by every kernel. Q4_0 and Q8_0 come from `ggml-quants`; Q4_K (whose
//! quantizer that crate leaves unimplemented) and the activation block are ours. Sizes are
//! checked at compile time against GGML's on-disk layout.

use half::f16;

pub use ggml_quants::{Q4_0 as BlockQ4_0, Q8_0 as BlockQ8_0};

/// An all-zero Q4_0 block (`ggml-quants`' type is neither `Clone` nor `Default`).
pub const ZERO_Q4_0: BlockQ4_0 = BlockQ4_0 { delta: f16::ZERO, quants: [0; QK / 2] };

/// `n` zero Q4_0 blocks.
pub fn zeroed_q4_0(n: usize) -> Vec<BlockQ4_0> {
    std::iter::repeat_with(|| ZERO_Q4_0).take(n).collect()
}

/// Elements per block of the 32-wide formats, and per super-block of the k-quants.
pub const QK: usize = 32;
pub const QK_K: usize = 256;

/// GGML `block_q4_K`: 8 sub-blocks of 32 with 6-bit scales and mins; w = d*sc*q - dmin*m.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    /// Pairs of sub-blocks share 32 bytes: low nibbles are sub-block 2k, high ones 2k+1.
    pub qs: [u8; QK_K / 2],
}

/// Activations quantized once per matmul: 32 int8 values, their scale, the scaled sum
/// `s = d * Σ qs`, which folds the Q4_0 offset (-8) and the Q4_K mins into one multiply, and
/// the exact integer sum, with which the packed AVX-512 gemm removes the Q4_0 and Q8_0 weight
/// offsets before any rounding (Q8_0 weights are stored +128 there, and removing 128·s in
/// float lost precision to cancellation).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8A {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK],
    pub sum: i32,
}

impl BlockQ8A {
    pub const ZERO: Self = BlockQ8A { d: 0.0, s: 0.0, qs: [0; QK], sum: 0 };
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ8A>() == 44);
const _: () = assert!(std::mem::align_of::<BlockQ4_0>() == 2);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 2);
const _: () = assert!(std::mem::align_of::<BlockQ4K>() == 2);

/// Plain-old-data block types that can be viewed straight from file bytes.
///
/// # Safety
/// Implementors must be `repr(C)`, without padding, valid for every bit pattern.
pub unsafe trait Block: Sized + 'static {}
// SAFETY: repr(C) structs of f16 and byte arrays; sizes asserted above (no padding).
unsafe impl Block for BlockQ4_0 {}
unsafe impl Block for BlockQ8_0 {}
unsafe impl Block for BlockQ4K {}

/// Views file bytes as blocks. `None` if the length is not a whole number of blocks or the
/// pointer is misaligned (the loader guarantees neither happens for tensor rows).
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) || !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<B>()) {
        return None;
    }
    // SAFETY: length and alignment checked; B is valid for any bit pattern (Block contract).
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// Blocks as bytes, for writing files.
pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: B has no padding (Block contract), so every byte is initialised.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}
