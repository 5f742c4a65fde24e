//! Structure-aware variant of `hf_config`: the fuzzer picks the values of the keys
//! `parse_config` reads, and the harness renders a config.json around them.
//!
//! The byte-level `hf_config` target rarely produces a config that gets past every required key
//! (about 1% of its corpus parses), so the code that runs only on an accepted config — such as
//! computing the ALiBi slopes — is barely exercised. Here most inputs are well-formed, numbers are
//! drawn from edge-heavy distributions, and `n_head` usually divides `n_embd`.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

#[derive(Arbitrary, Debug)]
enum Num {
    Small(u8),
    U32(u32),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(String),
    Null,
}

impl Num {
    fn json(&self) -> Value {
        match self {
            Num::Small(v) => json!(v),
            Num::U32(v) => json!(v),
            Num::U64(v) => json!(v),
            Num::I64(v) => json!(v),
            Num::F64(v) => json!(v), // non-finite becomes null
            Num::Str(s) => json!(s),
            Num::Null => Value::Null,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Heads {
    /// n_head = n_embd / k (k >= 1): passes the divisibility check.
    Divisor(u8),
    Any(Num),
}

#[derive(Arbitrary, Debug)]
enum Scaling {
    Factor(Num),
    TrainSeqLen(Num),
    Both(Num, Num),
    Neither,
    OtherType(String),
    NotAnObject(Num),
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    n_embd: Num,
    n_head: Heads,
    n_layer: Num,
    n_inner: Option<Num>,
    n_positions: Num,
    vocab_size: Num,
    bos: Option<Num>,
    eos: Option<Num>,
    floats: [Option<Num>; 7],
    bools: [Option<Num>; 5],
    bool_values: [Option<bool>; 5],
    scaling: Option<Scaling>,
    strings: [Option<String>; 3],
}

const FLOAT_KEYS: [&str; 7] = [
    "layer_norm_epsilon",
    "mup_embeddings_scale",
    "embeddings_scale",
    "output_logits_scale",
    "mup_output_alpha",
    "mup_width_scale",
    "width_scale",
];
const BOOL_KEYS: [&str; 5] = [
    "mup_scale_qk_dot_by_d",
    "scale_qk_dot_by_d",
    "scale_attn_weights",
    "tie_word_embeddings",
    "scale_attn_by_inverse_layer_idx",
];
const STRING_KEYS: [&str; 3] = ["activation_function", "position_embedding_type", "_name_or_path"];

fn render(c: &Cfg) -> String {
    let mut m = Map::new();
    m.insert("model_type".into(), json!("btlm"));
    let n_embd = c.n_embd.json();
    let n_head = match &c.n_head {
        Heads::Divisor(k) => match n_embd.as_u64() {
            Some(e) => json!(e / u64::from((*k).max(1))),
            None => n_embd.clone(),
        },
        Heads::Any(n) => n.json(),
    };
    m.insert("n_embd".into(), n_embd);
    m.insert("n_head".into(), n_head);
    m.insert("n_layer".into(), c.n_layer.json());
    if let Some(n) = &c.n_inner {
        m.insert("n_inner".into(), n.json());
    }
    m.insert("n_positions".into(), c.n_positions.json());
    m.insert("vocab_size".into(), c.vocab_size.json());
    if let Some(n) = &c.bos {
        m.insert("bos_token_id".into(), n.json());
    }
    if let Some(n) = &c.eos {
        m.insert("eos_token_id".into(), n.json());
    }
    for (k, v) in FLOAT_KEYS.iter().zip(&c.floats) {
        if let Some(v) = v {
            m.insert((*k).into(), v.json());
        }
    }
    for ((k, v), b) in BOOL_KEYS.iter().zip(&c.bools).zip(&c.bool_values) {
        match (v, b) {
            (_, Some(b)) => {
                m.insert((*k).into(), json!(b));
            }
            (Some(v), None) => {
                m.insert((*k).into(), v.json());
            }
            (None, None) => {}
        }
    }
    for (k, v) in STRING_KEYS.iter().zip(&c.strings) {
        if let Some(v) = v {
            m.insert((*k).into(), json!(v));
        }
    }
    if let Some(s) = &c.scaling {
        let v = match s {
            Scaling::Factor(f) => json!({"type": "linear", "factor": f.json()}),
            Scaling::TrainSeqLen(n) => json!({"type": "linear", "train_seq_len": n.json()}),
            Scaling::Both(f, n) => json!({"type": "linear", "factor": f.json(), "train_seq_len": n.json()}),
            Scaling::Neither => json!({"type": "linear"}),
            Scaling::OtherType(t) => json!({"type": t, "factor": 2.0}),
            Scaling::NotAnObject(n) => n.json(),
        };
        m.insert("alibi_scaling".into(), v);
    }
    Value::Object(m).to_string()
}

/// Known finding (README.md, finding 1): `parse_config` accepts any `n_head` < 2^31 and then
/// `alibi_slopes(n_head)` allocates 8-24 bytes per head. Set `POCKETLM_FUZZ_ALLOW_KNOWN=1` to
/// stop skipping those inputs (e.g. to check a fix); once core caps `n_head`, delete this.
fn known_issue(json: &str) -> bool {
    static ALLOW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ALLOW.get_or_init(|| std::env::var_os("POCKETLM_FUZZ_ALLOW_KNOWN").is_some()) {
        return false;
    }
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    v.get("n_head").and_then(Value::as_u64).is_some_and(|n| n > 1 << 16)
}

fuzz_target!(|c: Cfg| {
    let json = render(&c);
    if known_issue(&json) {
        return;
    }
    let _ = pocketlm_core::convert::parse_config(&json);
});
