//! Multi-turn chat (issue 13, item 1): each turn prefills only what the KV cache does not hold,
//! and gives the same tokens as rerunning the whole history from scratch (greedy); edited
//! histories reuse the cache up to the first changed token; chat formats render as specified.

use pocketlm_core::chat::{ChatFormat, Conversation, Message, Role};
use pocketlm_core::convert::Preset;
use pocketlm_core::sampling::SamplingParams;
use pocketlm_core::session::{GenerateOptions, Session, SessionOptions};
use pocketlm_core::Model;
use pocketlm_tests::{convert_fixture, primary};
use std::sync::Arc;

fn model(tmp: &std::path::Path) -> Arc<Model> {
    Arc::new(Model::load(convert_fixture(&primary(), Preset::F32, None, tmp)).unwrap())
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions { max_tokens: n, sampling: SamplingParams::greedy(), ..Default::default() }
}

fn conversation(model: &Arc<Model>) -> Conversation {
    Conversation::new(Session::new(model.clone(), &SessionOptions::default()).unwrap(), ChatFormat::HumanAssistant)
}

#[test]
fn turns_prefill_only_what_is_new_and_match_a_run_from_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let mut chat = conversation(&model);
    chat.set_messages(vec![Message::new(Role::System, "A conversation about the novels of Jane Austen.")]);
    let turns = ["Who is Anne Elliot?", "And Captain Wentworth?", "How does the story end?"];
    let mut previous_total = 0;
    for (i, user) in turns.iter().enumerate() {
        let mut streamed = String::new();
        let reply = chat.send(user, &greedy(24), &mut |p| streamed.push_str(p)).unwrap();
        let history = &chat.messages()[..chat.messages().len() - 1];
        let rendered = ChatFormat::HumanAssistant.render(history, true).unwrap();
        let total = model.tokenizer.encode(&rendered).unwrap().len();
        println!(
            "turn {}: {} prompt tokens, {} reused from the cache, {} prefilled; reply {:?}",
            i + 1,
            total,
            reply.reused,
            reply.prefilled,
            reply.text
        );
        assert_eq!(reply.reused + reply.prefilled, total, "turn {}", i + 1);
        if i > 0 {
            // Everything up to the previous prompt is cached (its reply too, up to the
            // tokenization boundary where the next turn starts).
            assert!(reply.reused >= previous_total, "turn {}: reused {} < {previous_total}", i + 1, reply.reused);
            assert!(reply.prefilled < total - previous_total + 8, "turn {}: prefilled {}", i + 1, reply.prefilled);
        }
        previous_total = total;

        // The same history from scratch in a fresh session gives the same reply.
        let mut fresh = conversation(&model);
        fresh.set_messages(history.to_vec());
        let again = fresh.reply(&greedy(24), &mut |_| {}).unwrap();
        assert_eq!(again.reused, 0);
        assert_eq!(again.text, reply.text, "turn {}: cached and from-scratch replies differ", i + 1);
        assert_eq!(streamed.trim(), reply.text.trim(), "the stream is the reply");
    }
}

#[test]
fn an_edited_history_reuses_the_cache_up_to_the_change() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model(tmp.path());
    let mut chat = conversation(&model);
    chat.send("Tell me about Bath.", &greedy(8), &mut |_| {}).unwrap();
    chat.send("And about Lyme?", &greedy(8), &mut |_| {}).unwrap();
    let mut edited = chat.messages().to_vec();
    edited.truncate(2); // drop the second exchange
    edited[0].content = "Tell me about Kellynch.".into();
    chat.set_messages(edited.clone());
    let reply = chat.reply(&greedy(8), &mut |_| {}).unwrap();
    let same = model.tokenizer.encode("\n\nHuman: Tell me about").unwrap().len();
    assert!(reply.reused >= same - 1 && reply.reused < same + 2, "reused {} of the unchanged {same}", reply.reused);
    // Re-asking the very same history costs one token (the logits of the last one).
    chat.set_messages(chat.messages()[..chat.messages().len() - 1].to_vec());
    let again = chat.reply(&greedy(8), &mut |_| {}).unwrap();
    assert_eq!(again.prefilled, 1);
    assert_eq!(again.text, reply.text);
}

#[test]
fn formats_render_as_specified() {
    let msgs = vec![
        Message::new(Role::System, "Be brief."),
        Message::new(Role::User, "Hi"),
        Message::new(Role::Assistant, "Hello."),
        Message::new(Role::User, "Bye"),
    ];
    assert_eq!(
        ChatFormat::HumanAssistant.render(&msgs, true).unwrap(),
        "Be brief.\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant:"
    );
    assert_eq!(ChatFormat::HumanAssistant.stops(), vec!["\n\nHuman:".to_string()]);
    let chatml = ChatFormat::Template {
        source: "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content.strip() }}<|im_end|>\n{% endfor %}\
                 {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
            .into(),
        bos_token: String::new(),
        eos_token: "<|endoftext|>".into(),
    };
    assert_eq!(chatml.render(&msgs[1..2], true).unwrap(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    let strict = ChatFormat::Template {
        source: "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}".into(),
        bos_token: String::new(),
        eos_token: String::new(),
    };
    let err = strict.render(&msgs, false).unwrap_err().to_string();
    assert!(err.contains("no system role") && err.contains("tokenizer.chat_template"), "{err}");
}

/// A `chat_template` in tokenizer_config.json travels into the GGUF, and the chat format of
/// the loaded model is that template.
#[test]
fn a_chat_template_from_tokenizer_config_is_used() {
    use pocketlm_core::convert::{convert, ConvertOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("with-template");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&primary().model_dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let cfg_path = dir.join("tokenizer_config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    cfg["chat_template"] =
        serde_json::json!([{ "name": "tool_use", "template": "x" }, { "name": "default", "template": template }]);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = tmp.path().join("t.gguf");
    let opts =
        ConvertOptions { model_dir: dir, out: out.clone(), preset: Preset::F32, tokenizer: None, pad_inner_to: None };
    convert(&opts, &mut |_| {}).unwrap();
    let model = Arc::new(Model::load(&out).unwrap());
    let format = ChatFormat::for_model(&model);
    assert!(matches!(&format, ChatFormat::Template { source, .. } if source == template), "{format:?}");
    assert_eq!(format.render(&[Message::new(Role::User, "Hi")], true).unwrap(), "<user>Hi<assistant>");
    // The base model has none: the HH-RLHF format.
    let plain = Arc::new(Model::load(convert_fixture(&primary(), Preset::F32, None, tmp.path())).unwrap());
    assert!(matches!(ChatFormat::for_model(&plain), ChatFormat::HumanAssistant));
}
