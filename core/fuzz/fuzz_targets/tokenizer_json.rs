//! tokenizer.json parsing (`TokenizerSpec::from_hf_json`), then building the runtime tokenizer.
//!
//! Set `POCKETLM_FUZZ_DEBUG=1` to print how far each input gets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketlm_core::tokenizer::{Tokenizer, TokenizerSpec};
use std::sync::OnceLock;

fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("POCKETLM_FUZZ_DEBUG").is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let spec = TokenizerSpec::from_hf_json(s);
    let tok = spec.as_ref().ok().map(Tokenizer::from_spec);
    if debug() {
        eprintln!(
            "spec: {:?}; tokenizer: {:?}",
            spec.as_ref().map(|s| s.tokens.len()).map_err(|e| e.to_string()),
            tok.map(|t| t.map(|t| t.vocab_size()).map_err(|e| e.to_string())),
        );
    }
});
