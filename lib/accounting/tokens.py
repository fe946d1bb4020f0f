"""Token counting with tiktoken, strictly offline (encodings: ``lib.accounting.encodings``; images:
``lib.accounting.images``).

OpenAI models are counted exactly. Everything else (``claude-*``, ``gemini-*``, ``sandbox``, unknown
names) is **an approximation** with ``cl100k_base`` (``is_approximate(model)`` is then True). Anthropic's
tokenizer for Claude 3+ is not public and Gemini uses its own SentencePiece vocabulary, so no local count
can be exact. cl100k is a mid-sized English-centric BPE: for English prose and code it is usually within
about 10-25 % of what those providers report, Claude's counts typically running *higher* than cl100k's and
Gemini's usually close or lower; for Chinese/Japanese or emoji-heavy text the gap can reach 30-50 %. Use
these numbers only when the provider reported no usage, and label them as local estimates.

Chat requests (``count_chat_tokens``) follow OpenAI's published formula (cookbook, "How to count tokens
with tiktoken"): every message costs ``3`` tokens plus its encoded values, a ``name`` costs ``1`` more,
and the reply is primed with ``3`` (``gpt-3.5-turbo-0301``: ``4`` per message, ``-1`` per name). On the
cookbook's own examples this reproduces the API's numbers exactly (129 for gpt-3.5-turbo/gpt-4, 124 for
gpt-4o/gpt-4o-mini; with its weather tool 105 and 101).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import tiktoken

from lib.accounting.encodings import (  # noqa: F401 - the counting API re-exports what callers need
    CL100K, O200K, base_model, encoding_name_for, is_approximate, load_encoding, preload,
)
from lib.accounting.images import image_size_from_data_url, image_tokens  # noqa: F401

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
# The cookbook's tool-definition overheads: (function start, properties start, per property, enum start,
# per enum item, end of the tools block); the function start is 7 on o200k models and 10 on cl100k ones.
_TOOL_OVERHEAD_O200K = (7, 3, 3, -3, 3, 12)
_TOOL_OVERHEAD_CL100K = (10, 3, 3, -3, 3, 12)


# tiktoken's regex engine gives up (a Rust panic, not an exception) on a whitespace run of about 1M chars,
# so text longer than _DIRECT_MAX is encoded in pieces of at most _CHUNK chars, cut just before a space that
# follows a non-space: every pre-token boundary of the whole text survives such a cut, so the count is
# exact. Only a _CHUNK-long stretch with no such place (one huge word, a long CJK run, a whitespace run)
# is cut blindly, which can move the count by a token or two per cut.
_DIRECT_MAX = 200_000
_CHUNK = 100_000
_SAFE_CUT_REVERSED = re.compile(r" (?=\S)")


def _chunks(text: str) -> Iterator[str]:
    start, n = 0, len(text)
    while n - start > _CHUNK:
        end = start + _CHUNK
        match = _SAFE_CUT_REVERSED.search(text[end - 1:start:-1])  # the window backwards, without text[start]
        cut = end - 1 - match.start() if match else end
        yield text[start:cut]
        start = cut
    yield text[start:]


def _n(enc: tiktoken.Encoding, text: str) -> int:
    """Tokens in ``text`` under ``enc``, safe for arbitrarily long input (see ``_chunks``)."""
    if len(text) <= _DIRECT_MAX:
        return len(enc.encode_ordinary(text))
    return sum(len(enc.encode_ordinary(chunk)) for chunk in _chunks(text))


def count_tokens(text: str, model: str) -> int:
    """Number of tokens ``text`` takes for ``model`` (special-token text such as ``<|endoftext|>`` counts as
    plain text, as the API treats user input). Raises ``TypeError`` if ``text`` is not a string."""
    if not isinstance(text, str):
        raise TypeError(f"count_tokens needs str, got {type(text).__name__}")
    if not text:
        return 0
    return _n(load_encoding(encoding_name_for(model)), text)


# --------------------------------------------------------------------------------------------- chat
def _count_part(part: Any, enc: tiktoken.Encoding, model: str) -> int:
    """Tokens of one content part: text parts by the encoding, images by ``image_tokens``.

    Audio and file parts are not counted (their size cannot be known without decoding the media);
    providers report usage for them, and the local count is only a fallback.
    """
    if isinstance(part, str):
        return _n(enc, part)
    if not isinstance(part, dict):
        return 0
    kind = part.get("type")
    if kind in ("image_url", "input_image"):
        image = part.get("image_url", part)
        image = image if isinstance(image, dict) else {"url": image}
        url = image.get("url") or image.get("image_url") or ""
        size = image_size_from_data_url(url) or (None, None)
        return image_tokens(model, size[0], size[1], str(image.get("detail") or part.get("detail") or "auto"))
    for key in ("text", "refusal"):
        if isinstance(part.get(key), str):
            return _n(enc, part[key])
    return 0


def _count_value(value: Any, enc: tiktoken.Encoding) -> int:
    """Tokens of a message field the formula has no special rule for: strings as text, containers as JSON."""
    if isinstance(value, str):
        return _n(enc, value)
    if isinstance(value, (dict, list)) and value:
        return _n(enc, json.dumps(value, ensure_ascii=False, default=str))
    return 0


def _count_call(call: Any, enc: tiktoken.Encoding) -> int:
    """A tool call (or legacy ``function_call``): the JSON of its name and arguments, an approximation."""
    fn = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        return _count_value(call, enc)
    compact = {"name": fn.get("name", ""), "arguments": fn.get("arguments", "")}
    return _n(enc, json.dumps(compact, ensure_ascii=False, default=str))


def _count_message(message: dict[str, Any], enc: tiktoken.Encoding, model: str, per_name: int) -> int:
    total = 0
    for key, value in message.items():
        if key == "content":
            if isinstance(value, list):
                total += sum(_count_part(part, enc, model) for part in value)
            elif isinstance(value, str):
                total += _n(enc, value)
        elif key == "tool_calls" and isinstance(value, list):
            total += sum(_count_call(call, enc) for call in value)
        elif key == "function_call" and isinstance(value, dict):
            total += _count_call(value, enc)
        else:
            total += _count_value(value, enc)
            if key == "name":
                total += per_name
    return total


def _count_tools(tools: list[Any], enc: tiktoken.Encoding) -> int:
    """Tokens a ``tools`` list adds, by the cookbook's ``num_tokens_for_tools`` (exact on its example).

    An approximation in general: the cookbook formula reads each property's name, type, description and
    enum; any other schema keys (nested ``properties``, ``items``, ``default``…) are counted as their JSON.
    Non-function tools are counted as their JSON.
    """
    func_init, prop_init, prop_key, enum_init, enum_item, func_end = (
        _TOOL_OVERHEAD_O200K if enc.name == O200K else _TOOL_OVERHEAD_CL100K)

    def n(text: str) -> int:
        return _n(enc, text)

    total = 0
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or "name" not in fn:
            total += _count_value(tool, enc)
            continue
        total += func_init + n(f"{fn.get('name', '')}:{_strip_dot(fn.get('description'))}")
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        props = params.get("properties") if isinstance(params.get("properties"), dict) else {}
        if props:
            total += prop_init
        for key, schema in props.items():
            schema = schema if isinstance(schema, dict) else {}
            total += prop_key
            if isinstance(schema.get("enum"), list):
                total += enum_init + sum(enum_item + n(str(item)) for item in schema["enum"])
            ptype = schema.get("type", "")
            ptype = ptype if isinstance(ptype, str) else json.dumps(ptype)
            total += n(f"{key}:{ptype}:{_strip_dot(schema.get('description'))}")
            rest = {k: v for k, v in schema.items() if k not in ("type", "description", "enum")}
            total += _count_value(rest, enc)
    return total + func_end if tools else total


def _strip_dot(text: Any) -> str:
    text = text if isinstance(text, str) else ""
    return text[:-1] if text.endswith(".") else text


def count_chat_tokens(messages: list[dict[str, Any]], model: str, tools: list[Any] | None = None) -> int:
    """Prompt tokens of a chat request, by OpenAI's published formula (see the module docstring).

    ``content`` may be a string, ``None`` or a list of parts (text parts counted; image parts by
    ``image_tokens``, their size read from ``data:`` URLs, else estimated). ``tool_calls`` and legacy
    ``function_call`` count the JSON of name and arguments; ``tools`` adds the cookbook's tool overhead.
    Returns an int >= 3. Never raises for malformed entries (they count as their JSON text), so it is safe
    to call on the logging path; raises only as ``load_encoding`` does.
    """
    enc = load_encoding(encoding_name_for(model))
    legacy = base_model(model) == "gpt-3.5-turbo-0301"
    per_message, per_name = (4, -1) if legacy else (TOKENS_PER_MESSAGE, TOKENS_PER_NAME)
    total = REPLY_PRIMING
    for message in messages or []:
        total += per_message
        if isinstance(message, dict):
            total += _count_message(message, enc, model, per_name)
        else:
            total += _count_value(message, enc)
    if tools:
        total += _count_tools(list(tools), enc)
    return total
