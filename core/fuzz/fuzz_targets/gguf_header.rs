//! GGUF header parsing, then everything the loader derives from a parsed header:
//! hyperparameters, the tokenizer spec stored in metadata, and the tokenizer built from it.
//!
//! Set `POCKETLM_FUZZ_DEBUG=1` to print how far each input gets (useful with `-runs=0` on a
//! corpus to check that seeds reach the later stages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketlm_core::gguf::GgufHeader;
use pocketlm_core::model::{vocab, HParams};
use pocketlm_core::tokenizer::Tokenizer;
use std::sync::OnceLock;

fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("POCKETLM_FUZZ_DEBUG").is_some())
}

fuzz_target!(|data: &[u8]| {
    let header = match GgufHeader::parse(data) {
        Ok(h) => h,
        Err(e) => {
            if debug() {
                eprintln!("parse: {e}");
            }
            return;
        }
    };
    // Exercise the accessors the CLI's `info` command uses on untrusted headers.
    for (_, v) in &header.metadata {
        let _ = v.summary();
    }
    for t in &header.tensors {
        let _ = t.n_elements();
    }
    let hp = HParams::from_gguf(&header);
    let spec = vocab::from_gguf(&header);
    let tok = spec.as_ref().ok().map(Tokenizer::from_spec);
    if debug() {
        eprintln!(
            "parse: ok ({} keys, {} tensors); hparams: {:?}; vocab: {:?}; tokenizer: {:?}",
            header.metadata.len(),
            header.tensors.len(),
            hp.as_ref().map(|_| "ok").map_err(|e| e.to_string()),
            spec.as_ref().map(|s| s.tokens.len()).map_err(|e| e.to_string()),
            tok.map(|t| t.map(|t| t.vocab_size()).map_err(|e| e.to_string())),
        );
    }
});
