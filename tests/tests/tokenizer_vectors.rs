//! Checks the GPT-2 tokenizer against 673 text -> ids vectors from an independent encoder.

use std::path::PathBuf;

use pocketlm_core::tokenizer::{StreamDecoder, Tokenizer, TokenizerError, TokenizerSpec};
use serde_json::Value;

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn gpt2_spec() -> TokenizerSpec {
    TokenizerSpec::from_hf_json(&read(pocketlm_tests::tokenizer_json())).unwrap()
}

/// GPT-2's slow-tokenizer files, as OpenAI and the official BTLM base folder ship them, written
/// from tokenizer.json's model section (that is what tokenizer.json was built from).
fn gpt2_vocab_and_merges() -> (String, String) {
    let root: Value = serde_json::from_str(&read(pocketlm_tests::tokenizer_json())).unwrap();
    let vocab = root["model"]["vocab"].to_string();
    let mut merges = String::from("#version: 0.2\n");
    for m in root["model"]["merges"].as_array().unwrap() {
        match m {
            Value::String(s) => merges.push_str(s),
            Value::Array(p) => merges.push_str(&format!("{} {}", p[0].as_str().unwrap(), p[1].as_str().unwrap())),
            _ => unreachable!(),
        }
        merges.push('\n');
    }
    (vocab, merges)
}

fn gpt2() -> Tokenizer {
    check_gpt2_spec(&gpt2_spec())
}

fn check_gpt2_spec(spec: &TokenizerSpec) -> Tokenizer {
    assert_eq!(spec.model, "gpt2");
    assert_eq!(spec.tokens.len(), 50257);
    assert_eq!(spec.merges.len(), 50000);
    assert_eq!(spec.bos_id, Some(50256));
    assert_eq!(spec.eos_id, Some(50256));
    Tokenizer::from_spec(spec).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| u32::try_from(x.as_u64().unwrap()).unwrap()).collect()
}

#[test]
fn matches_all_test_vectors() {
    check_vectors(&gpt2());
}

/// The official base model has no tokenizer.json: vocab.json + merges.txt must give the same
/// tokenizer, id for id, on every vector.
#[test]
fn vocab_and_merges_files_give_the_tokenizer_json_ids() {
    let (vocab, merges) = gpt2_vocab_and_merges();
    let spec = TokenizerSpec::from_vocab_merges(&vocab, &merges, &["<|endoftext|>".to_string()]).unwrap();
    assert_eq!(spec, gpt2_spec(), "same tokens, merges, types and bos/eos");
    check_vectors(&check_gpt2_spec(&spec));
    assert_eq!(spec.token_types[50256], pocketlm_core::tokenizer::token_type::CONTROL);

    // A special token the files name but vocab.json lacks gets the next id; bad lines are named.
    let extra = TokenizerSpec::from_vocab_merges(&vocab, &merges, &["<|pad|>".to_string()]).unwrap();
    assert_eq!(extra.tokens.len(), 50258);
    assert_eq!(extra.tokens[50257], "<|pad|>");
    let e = TokenizerSpec::from_vocab_merges(&vocab, "#version: 0.2\nĠ t\nbad\n", &[]).unwrap_err().to_string();
    assert!(e.contains("merges.txt line 3"), "{e}");
    let e = TokenizerSpec::from_vocab_merges("[1, 2]", &merges, &[]).unwrap_err().to_string();
    assert!(e.contains("vocab.json"), "{e}");
}

/// The trained model's own vocabulary (8192 tokens, not GPT-2's): both forms agree, and on
/// held-out text.
#[test]
fn btlm_mini_vocab_and_merges_match_its_tokenizer_json() {
    let dir = pocketlm_tests::primary().model_dir;
    let fast = TokenizerSpec::from_hf_json(&read(dir.join("tokenizer.json"))).unwrap();
    let slow = TokenizerSpec::from_vocab_merges(
        &read(dir.join("vocab.json")),
        &read(dir.join("merges.txt")),
        &["<|endoftext|>".to_string()],
    )
    .unwrap();
    assert_eq!(slow, fast);
    assert_eq!(slow.tokens.len(), 8192);
    assert_eq!(slow.bos_id, Some(8191));
    let text = read(pocketlm_tests::vendored_dir().join("text/austen_persuasion.txt"));
    let (a, b) = (Tokenizer::from_spec(&fast).unwrap(), Tokenizer::from_spec(&slow).unwrap());
    let ids = a.encode(&text[..20000]).unwrap();
    assert_eq!(b.encode(&text[..20000]).unwrap(), ids);
    assert!(ids.len() > 3000, "{}", ids.len());
}

fn check_vectors(tok: &Tokenizer) {
    assert_eq!(tok.vocab_size(), 50257);
    let vectors: Value = serde_json::from_str(&read(pocketlm_tests::tokenizer_vectors())).unwrap();

    // (text, expected ids): the main cases, plus the 12 cases where the generating JS encoder
    // mis-classifies U+0085/U+FEFF as whitespace; there the README says the `tokenizers` ids
    // (hf_ids) are the correct ones.
    let mut cases: Vec<(String, Vec<u32>, &str)> = Vec::new();
    for c in vectors["cases"].as_array().unwrap() {
        cases.push((c["text"].as_str().unwrap().to_string(), ids_of(&c["ids"]), "cases"));
    }
    assert_eq!(cases.len(), 673);
    for c in vectors["js_whitespace_divergence"]["cases"].as_array().unwrap() {
        cases.push((c["text"].as_str().unwrap().to_string(), ids_of(&c["hf_ids"]), "js_whitespace_divergence"));
    }
    assert_eq!(cases.len(), 685);

    let mut failures = Vec::new();
    for (i, (text, ids, group)) in cases.iter().enumerate() {
        let got = tok.encode(text).unwrap();
        if &got != ids {
            failures.push(format!("#{i} ({group}) encode {text:?}\n  want {ids:?}\n  got  {got:?}"));
        }
        let back = tok.decode(ids).unwrap();
        if &back != text {
            failures.push(format!("#{i} ({group}) decode: want {text:?}, got {back:?}"));
        }
    }
    if !failures.is_empty() {
        eprintln!("{} failures of {} cases; first ones:", failures.len(), cases.len());
        for f in failures.iter().take(5) {
            eprintln!("{f}");
        }
    }
    assert_eq!(failures.len(), 0, "see the diffs above");
}

#[test]
fn endoftext_is_one_control_token() {
    let tok = gpt2();
    assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![50256]);
    assert_eq!(tok.encode("Hi<|endoftext|>there").unwrap(), vec![17250, 50256, 8117]);
    assert!(tok.is_control(50256));
    assert!(!tok.is_control(464));
    assert_eq!(tok.token_bytes(50256).unwrap(), b"<|endoftext|>");
    assert_eq!(tok.token_bytes(262).unwrap(), b" the");
    assert_eq!(tok.bos_id(), Some(50256));
    assert_eq!(tok.eos_id(), Some(50256));
    assert_eq!(tok.encode("").unwrap(), Vec::<u32>::new());
}

#[test]
fn stream_decoder_holds_split_characters() {
    let tok = gpt2();
    for text in ["héllo 🤖 日本語", "🍕🎉 emoji 👩‍👩‍👧", "中文字符測試，寿司。", "naïve café 🦀 Ωμέγα ✓"]
    {
        let ids = tok.encode(text).unwrap();
        // At least one token of these texts must be a fragment of a character.
        let split = ids.iter().any(|&id| std::str::from_utf8(&tok.token_bytes(id).unwrap()).is_err());
        assert!(split, "{text:?} has no split character in {ids:?}");

        let mut dec = StreamDecoder::new(&tok);
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            let piece = dec.push(id).unwrap();
            assert!(!piece.contains('\u{FFFD}'), "{text:?}: piece {piece:?} has U+FFFD");
            if piece.is_empty() {
                held += 1;
            }
            out.push_str(&piece);
        }
        assert_eq!(dec.finish(), "");
        assert!(held > 0, "{text:?}: no push was held back");
        assert_eq!(out, text);
    }
}

#[test]
fn stream_decoder_replaces_invalid_bytes() {
    let tok = gpt2();
    // A token that is just the lead byte of a 4-byte character, found by its bytes.
    let lead = (0..50256u32).find(|&id| tok.token_bytes(id).unwrap() == [0xF0]).unwrap();
    let ascii = tok.encode("x").unwrap()[0];
    let mut dec = StreamDecoder::new(&tok);
    assert_eq!(dec.push(lead).unwrap(), "");
    assert_eq!(dec.push(ascii).unwrap(), "\u{FFFD}x");
    assert_eq!(dec.push(lead).unwrap(), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
}

#[test]
fn out_of_range_id_is_an_error() {
    let tok = gpt2();
    let err = tok.decode(&[464, 50257]).unwrap_err();
    assert!(matches!(err, TokenizerError::UnknownId(50257)));
    assert!(err.to_string().contains("50257"));
    assert!(tok.decode(&[u32::MAX]).is_err());
    assert!(tok.token_bytes(50257).is_none());
    let mut dec = StreamDecoder::new(&tok);
    assert!(matches!(dec.push(60000), Err(TokenizerError::UnknownId(60000))));
}

#[test]
fn from_hf_json_rejects_garbage_and_other_models() {
    assert!(TokenizerSpec::from_hf_json("").is_err());
    assert!(TokenizerSpec::from_hf_json("garbage").is_err());
    assert!(TokenizerSpec::from_hf_json("{}").is_err());
    assert!(TokenizerSpec::from_hf_json(r#"{"model": 3}"#).is_err());

    let unigram = r#"{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}}"#;
    let err = TokenizerSpec::from_hf_json(unigram).unwrap_err();
    assert!(matches!(&err, TokenizerError::UnsupportedModel(m) if m == "Unigram"));
    assert!(err.to_string().contains("Unigram"), "{err}");

    // The real file with its model type changed.
    let mut json: Value = serde_json::from_str(&read(pocketlm_tests::tokenizer_json())).unwrap();
    json["model"]["type"] = Value::from("WordLevel");
    let err = TokenizerSpec::from_hf_json(&json.to_string()).unwrap_err();
    assert!(err.to_string().contains("WordLevel"), "{err}");

    // Ids with a hole are not a dense 0..n range.
    let mut json: Value = serde_json::from_str(&read(pocketlm_tests::tokenizer_json())).unwrap();
    json["model"]["vocab"]["!"] = Value::from(70000);
    let err = TokenizerSpec::from_hf_json(&json.to_string()).unwrap_err();
    assert!(matches!(err, TokenizerError::Invalid(_)), "{err}");
}

#[test]
fn array_merges_give_the_same_spec() {
    let text = read(pocketlm_tests::tokenizer_json());
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let (a, b) = m.as_str().unwrap().split_once(' ').unwrap();
            serde_json::json!([a, b])
        })
        .collect();
    json["model"]["merges"] = Value::from(merges);
    let from_arrays = TokenizerSpec::from_hf_json(&json.to_string()).unwrap();
    assert_eq!(from_arrays, TokenizerSpec::from_hf_json(&text).unwrap());
}
