//! Hugging Face config.json parsing (`convert::parse_config`).
//!
//! Set `POCKETLM_FUZZ_DEBUG=1` to print the result for each input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("POCKETLM_FUZZ_DEBUG").is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let r = pocketlm_core::convert::parse_config(s);
    if debug() {
        eprintln!("{:?}", r.map(|c| c.hparams.n_head).map_err(|e| e.to_string()));
    }
});
