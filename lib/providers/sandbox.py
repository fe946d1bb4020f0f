"""The built-in ``sandbox`` provider: no network, deterministic generated text, clearly labelled.

It answers when no provider key is configured, so ``make run`` gives a newcomer a real round trip. The
reply depends only on the model name and the messages (the same request gets the same words), honours
``max_tokens`` / ``max_completion_tokens`` (finish_reason ``length`` when it cuts), honours ``stop``, and
streams in several chunks. Its token counts use the same counter as the rest of the proxy.

So that clients can be developed against it offline:

- with function ``tools`` (and ``tool_choice`` not ``none``), when the last message is not a tool result,
  it calls the named tool (``tool_choice``), else the first one, with arguments valid against the tool's
  JSON schema (``lib.providers.schema_instance``; the first string argument is the user's last text);
- with ``response_format`` ``json_object`` it answers a JSON object, with ``json_schema`` an instance of
  the schema;
- sampling parameters (temperature, seed, penalties, top_k …) are accepted and have no effect: the reply
  is deterministic by design.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any, Callable, Iterator

from lib.providers.registry import ProviderType
from lib.providers.base import ProviderConfig, completion_id, make_chunk, make_completion, make_usage, now, text_of
from lib.providers.schema_instance import instance

_VOCAB = (
    "gateway request answer token cache budget limit model provider stream chunk latency proxy key "
    "usage cost price route fallback header metric redis worker deterministic sandbox reply sample "
    "example simple quick clear useful steady honest small local fast safe"
).split()
_OPENERS = (
    "This is a sandbox reply from AI Proxy: no provider key is configured, so no model was called.",
)
DEFAULT_WORDS = 48


def _word_tokens(text: str) -> list[str]:
    """Split text into pieces that each count as one token (a word with its leading space)."""
    return re.findall(r"\s*\S+", text)


class SandboxProvider:
    """Deterministic, offline provider (see module docstring)."""

    def __init__(self, config: ProviderConfig | None = None, http: Any = None,
                 tokenize: Callable[[str], list[str]] | None = None,
                 count_prompt: Callable[[list[dict[str, Any]], str], int] | None = None) -> None:
        self.name = (config.name if config is not None else "") or "sandbox"
        self._tokenize = tokenize or _word_tokens
        if count_prompt is None:
            from lib.accounting.tokens import count_chat_tokens

            count_prompt = count_chat_tokens
        self._count_prompt = count_prompt

    def configured(self) -> bool:
        return True

    # -- the four jobs: build the reply, then shape it as OpenAI does -------------------------------
    def _reply_pieces(self, body: dict[str, Any], model: str) -> tuple[list[str], str]:
        messages = body.get("messages") or []
        text = self._structured_text(body, _said(messages)) or self._prose(model, messages)
        pieces = self._tokenize(text)
        finish = "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        stops = body.get("stop")
        if stops:
            stops = [stops] if isinstance(stops, str) else list(stops)
            joined = "".join(pieces)
            cut = min((joined.find(s) for s in stops if s and s in joined), default=-1)
            if cut >= 0:
                kept, acc = [], 0
                for piece in pieces:
                    if acc + len(piece) > cut:
                        break
                    kept.append(piece)
                    acc += len(piece)
                pieces, finish = kept, "stop"
        return pieces, finish

    def _prose(self, model: str, messages: list[dict[str, Any]]) -> str:
        digest = hashlib.sha256(json.dumps([model, messages], sort_keys=True, default=str).encode()).digest()
        rng = random.Random(digest)
        quoted = " ".join(_said(messages).split())[:80]
        words = [rng.choice(_VOCAB) for _ in range(DEFAULT_WORDS)]
        sentences = []
        for i in range(0, len(words), 8):
            part = words[i:i + 8]
            sentences.append(part[0].capitalize() + " " + " ".join(part[1:]) + ".")
        said = "The tool returned" if messages and messages[-1].get("role") in ("tool", "function") else "You said"
        return f"{_OPENERS[0]} {said}: \u201c{quoted}\u201d. " + " ".join(sentences)

    @staticmethod
    def _structured_text(body: dict[str, Any], said: str) -> str | None:
        """The JSON text for a ``json_object`` / ``json_schema`` response format, else ``None``."""
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
            return json.dumps(instance(fmt["json_schema"]["schema"], said), ensure_ascii=False)
        if fmt.get("type") in ("json_object", "json_schema"):
            return json.dumps({"sandbox": True, "reply": said}, ensure_ascii=False)
        return None

    @staticmethod
    def _tool_call(body: dict[str, Any], model: str) -> dict[str, Any] | None:
        """The tool call to answer with (see the module docstring), or ``None`` for a text answer."""
        tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function" and t.get("function")]
        messages = body.get("messages") or []
        choice = body.get("tool_choice")
        if not tools or choice == "none" or (messages and messages[-1].get("role") in ("tool", "function")):
            return None
        wanted = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
        function = next((f for f in tools if f.get("name") == wanted), tools[0])
        arguments = json.dumps(instance(function.get("parameters") or {"type": "object"}, _said(messages)),
                               ensure_ascii=False)
        digest = hashlib.sha256(json.dumps([model, messages, function.get("name")], default=str).encode()).hexdigest()
        return {"id": "call_" + digest[:24], "type": "function",
                "function": {"name": function.get("name"), "arguments": arguments}}

    def _prompt_tokens(self, body: dict[str, Any], model: str) -> int:
        return self._count_prompt(body.get("messages") or [], model)

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` for ``body`` (never raises for a valid body)."""
        call = self._tool_call(body, model)
        if call is not None:
            return make_completion(model=model, content=None, finish_reason="tool_calls", tool_calls=[call],
                                   prompt_tokens=self._prompt_tokens(body, model),
                                   completion_tokens=len(self._tokenize(call["function"]["arguments"])))
        pieces, finish = self._reply_pieces(body, model)
        return make_completion(
            model=model, content="".join(pieces), finish_reason=finish,
            prompt_tokens=self._prompt_tokens(body, model), completion_tokens=len(pieces),
        )

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """The same reply as ``complete`` as OpenAI chunks: role chunk, content in several chunks, finish, usage."""
        cid, created = completion_id(), now()
        call = self._tool_call(body, model)
        step = 4
        if call is not None:
            pieces = self._tokenize(call["function"]["arguments"])
            yield make_chunk(id=cid, model=model, created=created, delta={"role": "assistant", "content": None})
            yield make_chunk(id=cid, model=model, created=created, delta={"tool_calls": [{
                "index": 0, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for i in range(0, len(pieces), step):
                yield make_chunk(id=cid, model=model, created=created, delta={"tool_calls": [{
                    "index": 0, "function": {"arguments": "".join(pieces[i:i + step])}}]})
            finish = "tool_calls"
        else:
            pieces, finish = self._reply_pieces(body, model)
            yield make_chunk(id=cid, model=model, created=created, delta={"role": "assistant", "content": ""})
            for i in range(0, len(pieces), step):
                yield make_chunk(id=cid, model=model, created=created, delta={"content": "".join(pieces[i:i + step])})
        yield make_chunk(id=cid, model=model, created=created, delta={}, finish_reason=finish)
        yield make_chunk(id=cid, model=model, created=created, with_choice=False,
                         usage=make_usage(self._prompt_tokens(body, model), len(pieces)))

    def embed(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Deterministic unit vectors (one per input) in OpenAI's embeddings shape; same text, same vector."""
        import base64
        import math
        import struct

        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or [])
        dims = int(body.get("dimensions") or 256)
        data, total = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            total += len(self._tokenize(text))
            rng = random.Random(hashlib.sha256(f"{model}\0{text}".encode()).digest())
            vec = [rng.gauss(0.0, 1.0) for _ in range(dims)]
            norm = math.sqrt(sum(x * x for x in vec)) or 1.0
            vec = [x / norm for x in vec]
            value: Any = vec
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": total, "total_tokens": total}}


def _said(messages: list[dict[str, Any]]) -> str:
    """What the reply quotes: the last tool result when the conversation ends with one, else the last
    user text."""
    if messages and messages[-1].get("role") in ("tool", "function"):
        return text_of(messages[-1].get("content"))
    return next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")


TYPE = ProviderType(name="sandbox", adapter=SandboxProvider, needs_key=False, prefixes=("sandbox-",))
