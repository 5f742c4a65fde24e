"""The official `openai` Python package against `pocketlm serve` (scripts/test-serve-openai.sh
starts the server and passes its base URL). Prints `N passed, N failed` last."""
import json
import sys
import traceback

import jsonschema
import openai

base_url, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url, api_key="sekrit")
results = []


def test(fn):
    try:
        fn()
        results.append(True)
        print(f"ok   {fn.__name__}")
    except Exception:  # noqa: BLE001 - every failure is reported, then counted
        results.append(False)
        print(f"FAIL {fn.__name__}")
        traceback.print_exc()
    return fn


MESSAGES = [{"role": "system", "content": "About Persuasion."}, {"role": "user", "content": "Who is Anne?"}]


@test
def models_lists_the_model():
    ids = [m.id for m in client.models.list()]
    assert ids == [model], ids


@test
def chat_completion_with_usage():
    r = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=12, temperature=0)
    assert r.object == "chat.completion"
    c = r.choices[0]
    assert c.message.role == "assistant" and isinstance(c.message.content, str), c
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    assert r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 0, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if c.finish_reason == "length":
        assert r.usage.completion_tokens == 12


@test
def streamed_chat_equals_the_whole_answer():
    whole = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=10, temperature=0)
    stream = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, reasons = "", None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
            if ch.finish_reason:
                reasons.append(ch.finish_reason)
    assert text.rstrip() == whole.choices[0].message.content, (text, whole.choices[0].message.content)
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage
    assert reasons == [whole.choices[0].finish_reason], reasons


@test
def completion_and_stop_strings():
    r = client.completions.create(model=model, prompt="Anne Elliot was", max_tokens=16, temperature=0)
    text = r.choices[0].text
    assert r.usage.completion_tokens <= 16
    # 16 greedy tokens of the trained model are always more than 4 characters: if not, the
    # check below would prove nothing, so that is a failure too.
    assert len(text) > 4 and r.choices[0].finish_reason == "length", r.choices[0]
    assert r.usage.completion_tokens == 16, r.usage
    stop = text[2:4]
    s = client.completions.create(model=model, prompt="Anne Elliot was", max_tokens=16, temperature=0, stop=[stop])
    assert stop not in s.choices[0].text and s.choices[0].finish_reason == "stop", s.choices[0]
    assert text.startswith(s.choices[0].text), (text, s.choices[0].text)


@test
def seeds_reproduce():
    kw = dict(model=model, prompt="Captain Wentworth", max_tokens=12, temperature=1.0)
    a = client.completions.create(seed=11, **kw).choices[0].text
    b = client.completions.create(seed=11, **kw).choices[0].text
    assert a == b, (a, b)


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "year": {"type": "integer", "minimum": 1700, "maximum": 1900},
        "characters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
                "required": ["name", "age"],
                "additionalProperties": False,
            },
            "maxItems": 3,
        },
    },
    "required": ["title", "year", "characters"],
    "additionalProperties": False,
}


@test
def json_schema_replies_parse_and_validate():
    fmt = {"type": "json_schema", "json_schema": {"name": "book", "schema": SCHEMA, "strict": True}}
    for seed, max_tokens in [(1, 120), (2, 120), (3, 25)]:
        r = client.chat.completions.create(
            model=model, messages=MESSAGES, max_tokens=max_tokens, temperature=1.0, seed=seed, response_format=fmt
        )
        c = r.choices[0]
        jsonschema.validate(json.loads(c.message.content), SCHEMA)
        assert c.finish_reason in ("stop", "length"), c.finish_reason
        assert r.usage.completion_tokens <= max_tokens, r.usage
    r = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=40, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


@test
def errors_are_openai_errors():
    try:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    except openai.NotFoundError as e:
        assert "does not exist" in str(e), e
    else:
        raise AssertionError("an unknown model was accepted")
    try:
        client.chat.completions.create(model=model, messages=MESSAGES, n=2)
    except openai.BadRequestError as e:
        assert "n = 1" in str(e), e
    else:
        raise AssertionError("n=2 was accepted")
    bad = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
    try:
        bad.models.list()
    except openai.AuthenticationError:
        pass
    else:
        raise AssertionError("a wrong API key was accepted")


print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
sys.exit(0 if all(results) else 1)
