//! Ternary hash projection of words (the "TSP" op of TensorFlow's seq_flow_lite, reimplemented
//! from its description): each lower-cased word is hashed with a 128-bit Murmur-style hash and
//! every 2 bits become one feature in {-1, 0, +1}. Nothing is stored per word, so the model has
//! no vocabulary table and never meets an unknown word; the first dense layer plays the role of
//! the embedding. Bit-exact with the original, including its sign extension of bytes >= 0x80
//! (it reads them through a `char*`), so models trained with either implementation agree.

const K_MUL: u64 = 0xc6a4a7935bd1e995;
const K_MUL2: u64 = 0x9e3779b97f4a7835;

fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

/// Little-endian load of 1..=8 bytes, each sign-extended before it is OR-ed in (the original's
/// `(val << 8) | buf[len]` with a signed `char`): a byte >= 0x80 sets every higher bit.
fn load_var(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0u64, |v, &b| (v << 8) | (b as i8 as i64 as u64))
}

/// The two 64-bit codes of a word.
fn murmur128(buf: &[u8]) -> (u64, u64) {
    let mut h = (buf.len() as u64).wrapping_mul(K_MUL);
    let mut h2 = 0u64;
    let mut chunks = buf.chunks_exact(8);
    for c in &mut chunks {
        h ^= shift_mix(load_var(c).wrapping_mul(K_MUL)).wrapping_mul(K_MUL);
        h = h.wrapping_mul(K_MUL);
        h2 ^= h;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        h ^= load_var(tail);
        h = h.wrapping_mul(K_MUL);
        h2 ^= h;
    }
    h = shift_mix(h).wrapping_mul(K_MUL);
    h2 ^= h;
    h = shift_mix(h);
    h2 = shift_mix(h2.wrapping_mul(K_MUL2)).wrapping_mul(K_MUL2);
    (h, h2)
}

/// The next pair of codes, for features past the first 64.
fn more_bits(lo: u64, hi: u64) -> (u64, u64) {
    let h = shift_mix(lo).wrapping_mul(K_MUL);
    let h2 = hi ^ h;
    (shift_mix(h2.wrapping_mul(K_MUL2)).wrapping_mul(K_MUL2), shift_mix(h))
}

/// Hash codes of `word` as stored bytes (already normalized), enough for `features` features
/// (32 per code, two codes per round). An empty word hashes as `"<null>"`, as in the original.
pub fn hash_codes(word: &[u8], features: usize) -> Vec<u64> {
    let word: &[u8] = if word.is_empty() { b"<null>" } else { word };
    let mut codes = Vec::with_capacity(features.div_ceil(32) + 1);
    let (mut lo, mut hi) = (0, 0);
    for i in (0..features).step_by(64) {
        (lo, hi) = if i == 0 { murmur128(word) } else { more_bits(lo, hi) };
        codes.push(lo);
        codes.push(hi);
    }
    codes
}

/// How a word is normalized before hashing: Unicode lower case (ASR text is lower case
/// already; typed text may not be).
pub fn normalize(word: &str) -> String {
    word.to_lowercase()
}

/// The ternary projection of one word into `out` (its length is the feature count): 2 bits per
/// feature, least significant first, `00 -> 0, 01 -> +1, 10 -> -1, 11 -> 0`.
pub fn project_word(word: &str, out: &mut [i8]) {
    const MAP: [i8; 4] = [0, 1, -1, 0];
    let codes = hash_codes(normalize(word).as_bytes(), out.len());
    for (chunk, code) in out.chunks_mut(32).zip(codes) {
        for (j, o) in chunk.iter_mut().enumerate() {
            *o = MAP[((code >> (2 * j)) & 3) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(word: &str, n: usize) -> Vec<i8> {
        let mut v = vec![0i8; n];
        project_word(word, &mut v);
        v
    }

    /// The expected vectors of seq_flow_lite's `sequence_string_projection_test.cc` (4 features;
    /// "h" and "w" are its character-mode tokens).
    #[test]
    fn published_test_vectors() {
        assert_eq!(project("hello", 4), [0, 1, 1, 0]);
        assert_eq!(project("world", 4), [0, 1, 0, 0]);
        assert_eq!(project("h", 4), [0, 0, 1, 0]);
        assert_eq!(project("w", 4), [1, 0, 1, 0]);
    }

    #[test]
    fn lower_case_and_prefix_stability() {
        assert_eq!(project("Hello", 128), project("hello", 128));
        // More features extend the vector; the first ones never change.
        assert_eq!(project("anna", 256)[..128], project("anna", 128)[..]);
        assert_ne!(project("anna", 128), project("anne", 128));
    }

    #[test]
    fn sign_extension_of_high_bytes() {
        // 0xC3 0xA9 ("é") sign-extends to all-ones above it, so the tail load is not the bytes
        // read as unsigned: a port that forgets it gives a different hash.
        assert_eq!(load_var(&[0xa9]), 0xffff_ffff_ffff_ffa9);
        assert_eq!(load_var(&[0x41, 0xc3]), 0xffff_ffff_ffff_c341);
        assert_eq!(load_var(&[0x41, 0x42]), 0x4241);
    }
}
