//! A punctuation model from untrusted bytes (an app asset or a download): the GGUF header,
//! every `punct.*` key and tensor shape, then one short text-only utterance through the model
//! when it loads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocketlm_core::punct::{split_words, Punctuator};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Punctuator::from_bytes(data, "fuzz.gguf") {
        let out = p.punctuate(&split_words("hey anna how are you"), None).expect("a loaded model punctuates");
        assert_eq!(out.words.len(), 5);
    }
});
