"""What the fake upstreams answer, independent of wire format.

The reply is ``"Echo: " + <text of the last user turn>`` (or of the tool result, when the last turn
returns one). Tokens are counted as whitespace-separated words, so usage numbers are deterministic:
``prompt_tokens`` = words in every message and system text of the request, ``completion_tokens`` =
words in the reply (or in the JSON arguments of a tool call).

Directives in the last user text steer the fake (several may share one ``[fake:...]`` block):

- ``error=CODE`` answer with that provider's real error body and status (``retry=N`` adds the
  provider's retry hint; ``times=K`` fails only the first K requests carrying this exact text)
- ``slow=SECONDS`` wait before answering; ``chunk_delay=SECONDS`` wait between streamed chunks
- ``chunks=N`` stream the reply in N pieces; ``tokens=N`` reply with exactly N words
- ``no_usage`` leave usage out of the stream even when asked
- ``midstream_error`` stream some chunks, then the provider's in-stream error event
- ``midstream_cut`` stream some chunks, then drop the connection without ending the body
- ``cached=N`` report N prompt tokens as read from the provider's prompt cache
- (OpenAI) ``end_early`` stream some chunks, then end the body cleanly with no finish and no ``[DONE]``;
  ``bad_json`` answer 200 with a body that is not JSON; ``not_stream`` answer a plain JSON completion
  when a stream was asked; ``over_report=F`` report F times the completion tokens really written;
  ``quote`` with ``error=400``: the error message quotes the user text, as real providers do
- ``thoughts=N`` (Gemini) report N thinking tokens; ``safety`` (Gemini) block the answer;
  ``blocked`` (Gemini) block the prompt

With ``tools`` in the request (and tool choice not "none") and a user text as the last turn, the fake
calls a tool instead: the named one, else the first, with ``{<first property>: <user text>}`` (when the
tool's schema is known, a value valid against it whose first string is the user text: ``fill``).
When the request asks for JSON output (OpenAI ``response_format``, Gemini ``responseMimeType``) the text
reply is JSON: ``fill(schema)``, or ``{"echo": <user text>}`` without a schema.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

DIRECTIVE = re.compile(r"\[fake:([^\]]*)\]")


class CutConnection(Exception):
    """Raised inside a stream generator: the server drops the socket without finishing the body."""


@dataclass
class Reply:
    """One HTTP answer of a fake: JSON, or a stream of pre-framed SSE byte strings."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    frames: Iterator[bytes] | None = None
    content_type: str = "application/json"


@dataclass
class Turn:
    """The provider-neutral view of one chat request, filled in by each wire module."""

    texts: list[str]  # every message / system text, for prompt token counting
    last_text: str  # text of the last user turn, or of the tool result it carries
    last_is_tool_result: bool = False
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    tools: list[tuple[str, str]] = field(default_factory=list)  # (name, first property) per tool
    tool_choice: str = "auto"  # "auto" | "none" | "required" | a tool name
    schemas: dict[str, Any] = field(default_factory=dict)  # tool name -> its parameters schema
    json_format: dict[str, Any] | None = None  # the JSON output asked for: its schema, or {} for any object


@dataclass
class Answer:
    """What to answer: text (or a tool call), why it stopped, and word counts."""

    text: str
    finish: str  # "stop" | "length" | "tool_calls"
    stop_sequence: str | None
    tool_call: tuple[str, dict[str, Any]] | None
    prompt_tokens: int
    completion_tokens: int
    pieces: list[str]
    directives: dict[str, str]
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])

    def flag(self, name: str) -> bool:
        return name in self.directives

    def number(self, name: str, default: float = 0.0) -> float:
        try:
            return float(self.directives.get(name, default))
        except ValueError:
            return default


def words(text: str) -> int:
    """The fake's token count: whitespace-separated words."""
    return len(text.split())


def parse_directives(text: str) -> dict[str, str]:
    """``{name: value}`` from every ``[fake:...]`` block in ``text`` (flags map to "")."""
    found: dict[str, str] = {}
    for block in DIRECTIVE.findall(text):
        for item in block.replace(",", " ").split():
            name, _, value = item.partition("=")
            found[name.strip()] = value.strip()
    return found


def strip_directives(text: str) -> str:
    return DIRECTIVE.sub("", text).strip()


class Script:
    """Turns a ``Turn`` into an ``Answer``; remembers how often each failing text was seen (``times=K``)."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()

    def error_status(self, turn: Turn) -> tuple[int, float | None] | None:
        """``(status, retry_seconds)`` when the directives ask for an error on this request, else None."""
        d = parse_directives(turn.last_text)
        if "error" not in d:
            return None
        try:
            status = int(d["error"])
        except ValueError:
            return None
        if "times" in d:
            with self._lock:
                self._seen[turn.last_text] += 1
                if self._seen[turn.last_text] > int(d["times"]):
                    return None
        retry = float(d["retry"]) if d.get("retry") else None
        return status, retry

    def answer(self, turn: Turn) -> Answer:
        """Plan the deterministic reply for ``turn`` (see module docstring)."""
        d = parse_directives(turn.last_text)
        prompt_tokens = sum(words(t) for t in turn.texts)
        tool = self._tool_to_call(turn)
        if tool is not None:
            name, prop = tool
            schema = turn.schemas.get(name)
            args = fill(schema, strip_directives(turn.last_text)) if schema else {prop: strip_directives(turn.last_text)}
            return Answer("", "tool_calls", None, (name, args), prompt_tokens, words(json.dumps(args)), [], d)
        reply = "Echo: " + turn.last_text
        if turn.json_format is not None:
            said = strip_directives(turn.last_text)
            reply = json.dumps(fill(turn.json_format, said) if turn.json_format else {"echo": said})
        if d.get("tokens"):
            base = reply.split() or ["Echo:"]
            count = int(d["tokens"])
            reply = " ".join(base[i % len(base)] for i in range(count))
        finish, stop_sequence = "stop", None
        hits = [(reply.find(s), s) for s in turn.stop if s and s in reply]
        if hits:
            at, stop_sequence = min(hits)
            reply = reply[:at]
        tokens = re.findall(r"\s*\S+", reply)
        if turn.max_tokens is not None and len(tokens) > turn.max_tokens:
            reply = "".join(tokens[: turn.max_tokens])
            finish, stop_sequence = "length", None
        pieces = _pieces(reply, int(d["chunks"]) if d.get("chunks") else None)
        return Answer(reply, finish, stop_sequence, None, prompt_tokens, words(reply), pieces, d)

    @staticmethod
    def _tool_to_call(turn: Turn) -> tuple[str, str] | None:
        if not turn.tools or turn.tool_choice == "none" or turn.last_is_tool_result:
            return None
        for name, prop in turn.tools:
            if name == turn.tool_choice:
                return name, prop
        return turn.tools[0]


def _pieces(text: str, count: int | None) -> list[str]:
    """Stream pieces: one per word, or ``count`` nearly equal slices of the text."""
    if not count:
        return re.findall(r"\s*\S+(?:\s+$)?", text) or ([text] if text else [])
    count = max(1, min(count, len(text))) if text else 1
    size, extra = divmod(len(text), count)
    pieces, at = [], 0
    for i in range(count):
        step = size + (1 if i < extra else 0)
        pieces.append(text[at : at + step])
        at += step
    return pieces


def fill(schema: Any, text: str) -> Any:
    """A value valid against a simple JSON schema (types, properties, enum/const, minimum, minItems); the
    first string in it is ``text``."""
    used = [False]

    def value(node: Any) -> Any:
        node = node if isinstance(node, dict) else {}
        if "const" in node:
            return node["const"]
        if node.get("enum"):
            return node["enum"][0]
        if node.get("anyOf") or node.get("oneOf"):
            return value((node.get("anyOf") or node.get("oneOf"))[0])
        kind = node.get("type")
        kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
        kind = kind or ("object" if "properties" in node else "string")
        if kind == "object":
            return {k: value(v) for k, v in (node.get("properties") or {}).items()}
        if kind == "array":
            return [value(node.get("items")) for _ in range(max(1, int(node.get("minItems") or 0)))]
        if kind in ("integer", "number"):
            low = node.get("minimum", 0)
            return max(low, min(node.get("maximum", 1), 1))
        if kind == "boolean":
            return False
        if kind == "null":
            return None
        if not used[0]:
            used[0] = True
            return text
        return "x" * max(1, int(node.get("minLength") or 1))

    return value(schema)


def first_property(schema: Any) -> str:
    """The first property name of a JSON schema object, or ``input``."""
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict) and schema["properties"]:
        return next(iter(schema["properties"]))
    return "input"


def sse(data: Any, event: str | None = None) -> bytes:
    """One SSE frame (``event:`` line when given, ``data:`` JSON, blank line)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


@dataclass
class Request:
    """One request a fake received, as tests inspect it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    json: Any
    body: bytes = b""


def content_text(content: Any) -> str:
    """Text of an OpenAI-style content (string or list of ``{"type": "text"}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""
