"""Sandbox "vendor" APIs for demos and client testing: four fake LLM vendors, each with its own wire shape.

No network, no model: the reply is generated text that depends only on the vendor and the request, so the
same request always gets the same answer (ids included) — unless ``VENDOR_A_MODEL_PATH`` /
``VENDOR_B_MODEL_PATH`` give vendor-a / vendor-b a local causal LM (``lib.providers.local``), which then
writes the reply text and counts its tokens (``max_tokens`` honoured; a busy or failing model answers in the
vendor's own error style: 429 when its queue is full, 504 on a timeout, 503 otherwise). Each vendor speaks its
own dialect:

    vendor-o   OpenAI ``chat.completion``               errors {"error": {message, type, param, code}}
    vendor-a   Anthropic Messages ``message``            errors {"type": "error", "error": {type, message}}
    vendor-b   simple {id, output: {text}, usage, latency_ms}  errors {"error": code, "message", "status"}
    vendor-e   enterprise {status: "success", data: {result: {content}}, meta: {request_id, tokens}}
               errors {"status": "error", "data": null, "error": {code, message, details}, "meta": {...}}

Input is ``{"messages": [...]}`` (OpenAI style; content a string or text parts; an Anthropic-style top-level
``system`` string is accepted too) or ``{"prompt": "..."}``, with optional ``model`` and ``max_tokens``.

Failures are simulated on request; a header wins over the body field of the same meaning:

    X-Simulate / "simulate"                 error (500), rate_limit (429 + Retry-After), timeout (sleep, 504),
                                            overloaded (529 vendor-a, 503 others), bad_json (200, cut body)
    X-Simulate-Delay / "delay"              seconds (0..5) to wait before answering; timeout's wait (default 1)
    X-Simulate-Failure-Rate / "failure_rate" 0..1: fail at random (500, 429 or overload), drawn from an RNG
                                            seeded with the request, so one request always draws the same
    X-Simulate-Seed                         extra seed: vary it to draw again for the same body

Tokens are counted as whitespace-separated words (one word with its leading space = one token).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

VENDORS = ("vendor-a", "vendor-b", "vendor-e", "vendor-o")
SIMULATIONS = ("error", "rate_limit", "timeout", "overloaded", "bad_json")
RANDOM_FAILURES = ("error", "rate_limit", "overloaded")
ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_DELAY_S = 5.0
TIMEOUT_DEFAULT_DELAY_S = 1.0
RETRY_AFTER_S = 2
MAX_TOKENS_LIMIT = 4096
DEFAULT_WORDS = 40
ENABLED_ENVIRONMENTS = ("development", "test")

_VOCAB = (
    "vendor sandbox reply sample token latency request answer stream model client retry backoff header "
    "status shape envelope usage deterministic simple steady quick clear local offline test demo"
).split()

# kind -> HTTP status (vendor-a's overload is Anthropic's 529)
_STATUS = MappingProxyType({"invalid_request": 400, "error": 500, "rate_limit": 429, "timeout": 504, "overloaded": 503})
_MESSAGES = MappingProxyType({
    "error": "The vendor had an internal error while processing the request (simulated).",
    "rate_limit": "Rate limit reached for requests (simulated). Retry after the Retry-After seconds.",
    "timeout": "The vendor did not answer in time (simulated).",
    "overloaded": "The vendor is overloaded, try again later (simulated).",
})


def enabled(environment: str) -> bool:
    """True when the sandbox vendors are served in ``environment`` (development and test, never production)."""
    return environment in ENABLED_ENVIRONMENTS


def count_words(text: str) -> int:
    """Tokens in ``text`` as the sandbox vendors count them: whitespace-separated words."""
    return len(re.findall(r"\s*\S+", text))


@dataclass(frozen=True)
class VendorReply:
    """One HTTP answer of a sandbox vendor: status, the exact body text and the headers to send."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    mimetype: str = "application/json"

    def json(self) -> Any:
        """The body decoded (raises ``ValueError`` for the ``bad_json`` simulation, on purpose)."""
        return json.loads(self.body)


class VendorInputError(ValueError):
    """The request was invalid; becomes a 400 in the vendor's own error style."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class VendorRequest:
    """A validated request: the conversation as ``(role, text)`` pairs and the simulation controls."""

    model: str | None
    messages: tuple[tuple[str, str], ...]
    max_tokens: int | None
    simulate: str | None
    delay: float | None
    failure_rate: float
    seed: bytes


def _number(value: Any, name: str, low: float, high: float) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise VendorInputError(f"'{name}' must be a number from {low:g} to {high:g}.", name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VendorInputError(f"'{name}' must be a number from {low:g} to {high:g}.", name) from None
    if not low <= number <= high:  # also rejects NaN
        raise VendorInputError(f"'{name}' must be a number from {low:g} to {high:g}.", name)
    return number


def _pick(headers: Mapping[str, str], header: str, data: dict[str, Any], name: str) -> Any:
    """The header's value when present (headers win), else the body field's."""
    value = headers.get(header)
    return value if value is not None and value.strip() != "" else data.get(name)


def _text_of(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise VendorInputError(f"'{param}[{i}]' must be a text part {{\"type\": \"text\", \"text\": ...}}.",
                                       f"{param}[{i}]")
            texts.append(part["text"])
        return "\n".join(texts)
    raise VendorInputError(f"'{param}' must be a string or a list of text parts.", param)


def _messages(data: dict[str, Any]) -> list[tuple[str, str]]:
    has_messages, has_prompt = "messages" in data, "prompt" in data
    if has_messages and has_prompt:
        raise VendorInputError("Send either 'messages' or 'prompt', not both.", "messages")
    if not has_messages and not has_prompt:
        raise VendorInputError("'messages' (a list) or 'prompt' (a string) is required.", "messages",
                               code="missing_field")
    out: list[tuple[str, str]] = []
    system = data.get("system")
    if system is not None:
        out.append(("system", _text_of(system, "system")))
    if has_prompt:
        prompt = data["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise VendorInputError("'prompt' must be a non-empty string.", "prompt")
        return out + [("user", prompt)]
    messages = data["messages"]
    if not isinstance(messages, list) or not messages:
        raise VendorInputError("'messages' must be a non-empty list.", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise VendorInputError(f"'messages[{i}]' must be an object with 'role' and 'content'.", f"messages[{i}]")
        role = message.get("role")
        if role not in ROLES:
            raise VendorInputError(f"'messages[{i}].role' must be one of {', '.join(ROLES)}.", f"messages[{i}].role")
        if "content" not in message or message["content"] is None:
            raise VendorInputError(f"'messages[{i}].content' is required.", f"messages[{i}].content",
                                   code="missing_field")
        out.append((role, _text_of(message["content"], f"messages[{i}].content")))
    if not any(role == "user" and text.strip() for role, text in out):
        raise VendorInputError("At least one non-empty 'user' message is required.", "messages")
    return out


def parse_request(raw: bytes, headers: Mapping[str, str]) -> VendorRequest:
    """Validate a vendor request body and its ``X-Simulate*`` headers.

    Returns a ``VendorRequest``. Raises ``VendorInputError`` (code ``invalid_json``, ``missing_field`` or
    ``invalid_value``) for an empty or malformed body, a body that is not an object, bad messages or prompt,
    ``stream: true`` (the vendors do not stream), an unknown simulation, ``delay`` outside 0..5,
    ``failure_rate`` outside 0..1 or ``max_tokens`` outside 1..4096.
    """
    if not raw.strip():
        raise VendorInputError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VendorInputError("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise VendorInputError("The request body must be a JSON object.", code="invalid_json")
    messages = _messages(data)
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not 0 < len(model) <= 256):
        raise VendorInputError("'model' must be a non-empty string of at most 256 characters.", "model")
    if data.get("stream") is True:
        raise VendorInputError("The sandbox vendors do not stream; leave 'stream' unset or false.", "stream")
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or not 1 <= max_tokens <= MAX_TOKENS_LIMIT):
        raise VendorInputError(f"'max_tokens' must be an integer from 1 to {MAX_TOKENS_LIMIT}.", "max_tokens")
    simulate = _pick(headers, "X-Simulate", data, "simulate") or ""
    if not isinstance(simulate, str) or simulate.strip().lower() not in SIMULATIONS + ("", "none"):
        raise VendorInputError(f"'simulate' must be one of {', '.join(SIMULATIONS)}.", "simulate")
    simulate = simulate.strip().lower()
    delay = _number(_pick(headers, "X-Simulate-Delay", data, "delay"), "delay", 0.0, MAX_DELAY_S)
    rate = _number(_pick(headers, "X-Simulate-Failure-Rate", data, "failure_rate"), "failure_rate", 0.0, 1.0)
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    seed = hashlib.sha256(f"{canonical}\0{headers.get('X-Simulate-Seed', '')}".encode()).digest()
    return VendorRequest(model=model, messages=tuple(messages), max_tokens=max_tokens,
                         simulate=simulate if simulate not in ("", "none") else None,
                         delay=delay, failure_rate=rate or 0.0, seed=seed)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


class Vendors:
    """The four sandbox vendors. ``sleep`` and ``clock`` are injected (gevent-friendly, testable);
    ``count_tokens`` counts the tokens of a text (default: words)."""

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 count_tokens: Callable[[str], int] = count_words, writer: "ModelWriter | None" = None) -> None:
        self._sleep = sleep
        self._clock = clock
        self._count = count_tokens
        self._writer = writer

    def handle(self, vendor: str, raw: bytes, headers: Mapping[str, str]) -> VendorReply:
        """Answer one ``POST /<vendor>/messages``.

        Returns the vendor's success body, its own error body (400 for invalid input; 500, 429, 504, 503/529
        when simulated) or, for ``bad_json``, a 200 whose body is cut mid-way. Sleeps for ``delay`` (and for
        ``timeout``) through the injected ``sleep``. Raises ``ValueError`` for an unknown vendor.
        """
        if vendor not in VENDORS:
            raise ValueError(f"unknown vendor {vendor!r}")
        try:
            req = parse_request(raw, headers)
        except VendorInputError as exc:
            rid = hashlib.sha256(vendor.encode() + b"\0" + raw).hexdigest()[:24]
            return self._error(vendor, "invalid_request", exc.message, rid, param=exc.param, code=exc.code)
        rng = random.Random(req.seed)
        rid = hashlib.sha256(vendor.encode() + b"\0" + req.seed).hexdigest()[:24]
        kind = req.simulate
        if kind is None and req.failure_rate > 0 and rng.random() < req.failure_rate:
            kind = rng.choice(RANDOM_FAILURES)
        wait = req.delay if req.delay is not None else (TIMEOUT_DEFAULT_DELAY_S if kind == "timeout" else 0.0)
        if wait > 0:
            self._sleep(wait)
        if kind in _MESSAGES:
            return self._error(vendor, kind, _MESSAGES[kind], rid)
        written = self._write(vendor, req, rid)
        if isinstance(written, VendorReply):
            return written
        text, finish, prompt_tokens, output_tokens = written or self._generate(vendor, req, rng)
        body = self._success(vendor, req, rid, text, finish, prompt_tokens, output_tokens, wait)
        headers_out = {"X-Request-Id": rid}
        if kind == "bad_json":
            headers_out["X-Simulated"] = "bad_json"
            return VendorReply(200, body[: max(1, len(body) // 2)], headers_out)
        return VendorReply(200, body, headers_out)

    def _write(self, vendor: str, req: VendorRequest, rid: str) -> "tuple[str, str, int, int] | VendorReply | None":
        """The local model's reply for ``vendor`` (None when it has none), or the vendor's error reply."""
        if self._writer is None:
            return None
        try:
            return self._writer(vendor, req.messages, req.max_tokens)
        except Exception as exc:  # noqa: BLE001 - the model's failure, in the vendor's own error style
            status = getattr(exc, "status", 500)
            kind = {400: "invalid_request", 429: "rate_limit", 504: "timeout", 503: "overloaded"}.get(status, "error")
            return self._error(vendor, kind, getattr(exc, "message", "The vendor's model failed."), rid)

    # -- the reply --------------------------------------------------------------------------------------
    def _generate(self, vendor: str, req: VendorRequest, rng: random.Random) -> tuple[str, str, int, int]:
        last_user = next(text for role, text in reversed(req.messages) if role == "user" and text.strip())
        quoted = " ".join(last_user.split())[:80]
        words = [rng.choice(_VOCAB) for _ in range(DEFAULT_WORDS)]
        sentences = [" ".join(words[i:i + 8]).capitalize() + "." for i in range(0, len(words), 8)]
        text = f"Sandbox reply from {vendor} (an AI Proxy test vendor). You said: \u201c{quoted}\u201d. " + " ".join(
            sentences)
        finish = "stop"
        pieces = re.findall(r"\s*\S+", text)
        if req.max_tokens is not None and req.max_tokens < len(pieces):
            text, finish = "".join(pieces[:req.max_tokens]), "length"
        prompt_tokens = sum(self._count(t) for _, t in req.messages)
        return text, finish, prompt_tokens, self._count(text)

    def _success(self, vendor: str, req: VendorRequest, rid: str, text: str, finish: str,
                 prompt_tokens: int, output_tokens: int, waited: float) -> str:
        if vendor == "vendor-o":
            return _dumps({
                "id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(self._clock()),
                "model": req.model or "vendor-o-1", "system_fingerprint": "fp_vendor_o",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
                          "total_tokens": prompt_tokens + output_tokens},
            })
        if vendor == "vendor-a":
            return _dumps({
                "id": f"msg_{rid}", "type": "message", "role": "assistant", "model": req.model or "vendor-a-1",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if finish == "length" else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
            })
        if vendor == "vendor-b":
            return _dumps({
                "id": f"vb_{rid}", "output": {"text": text},
                "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
                "latency_ms": 20 + 2 * output_tokens + round(waited * 1000),  # simulated, deterministic
            })
        return _dumps({
            "status": "success",
            "data": {"result": {"content": text, "finish_reason": finish}},
            "meta": {"request_id": f"req_{rid}", "model": req.model or "vendor-e-1",
                     "tokens": {"input": prompt_tokens, "output": output_tokens,
                                "total": prompt_tokens + output_tokens}},
        })

    # -- errors, in each vendor's own style ------------------------------------------------------------
    def _error(self, vendor: str, kind: str, message: str, rid: str, *, param: str | None = None,
               code: str | None = None) -> VendorReply:
        status = 529 if (kind == "overloaded" and vendor == "vendor-a") else _STATUS[kind]
        headers = {"X-Request-Id": rid}
        if kind != "invalid_request":
            headers["X-Simulated"] = kind
        if kind == "rate_limit":
            headers["Retry-After"] = str(RETRY_AFTER_S)
        if vendor == "vendor-o":
            types = {"invalid_request": "invalid_request_error", "error": "server_error", "rate_limit": "requests",
                     "timeout": "timeout", "overloaded": "server_error"}
            codes = {"error": None, "rate_limit": "rate_limit_exceeded", "timeout": "timeout",
                     "overloaded": "overloaded"}
            if kind == "rate_limit":
                headers.update({"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0",
                                "x-ratelimit-reset-requests": f"{RETRY_AFTER_S}s"})
            body: dict[str, Any] = {"error": {"message": message, "type": types[kind], "param": param,
                                              "code": code if kind == "invalid_request" else codes[kind]}}
        elif vendor == "vendor-a":
            types = {"invalid_request": "invalid_request_error", "error": "api_error", "rate_limit": "rate_limit_error",
                     "timeout": "timeout_error", "overloaded": "overloaded_error"}
            headers["request-id"] = f"req_{rid}"
            if kind == "rate_limit":
                headers["anthropic-ratelimit-requests-remaining"] = "0"
            body = {"type": "error", "error": {"type": types[kind], "message": message}, "request_id": f"req_{rid}"}
        elif vendor == "vendor-b":
            codes = {"invalid_request": "bad_request", "error": "internal_error", "rate_limit": "rate_limited",
                     "timeout": "timeout", "overloaded": "unavailable"}
            body = {"error": codes[kind], "message": message, "status": status}
        else:
            codes = {"invalid_request": "VALIDATION_ERROR", "error": "INTERNAL_ERROR", "rate_limit": "RATE_LIMITED",
                     "timeout": "GATEWAY_TIMEOUT", "overloaded": "SERVICE_UNAVAILABLE"}
            details = [{"field": param, "issue": code}] if kind == "invalid_request" and param else []
            body = {"status": "error", "data": None, "error": {"code": codes[kind], "message": message,
                                                               "details": details},
                    "meta": {"request_id": f"req_{rid}", "tokens": None}}
        return VendorReply(status, _dumps(body), headers)


ModelWriter = Callable[[str, tuple[tuple[str, str], ...], "int | None"], "tuple[str, str, int, int] | None"]


def model_writer(configs: Mapping[str, Any], timeout: float) -> ModelWriter | None:
    """A writer for ``Vendors``: the reply of the local model ``configs[vendor]`` (``ProviderConfig`` of type
    local), or None for a vendor without one. None when no vendor has a model."""
    if not configs:
        return None
    from lib.providers.local import generate_text

    def write(vendor: str, messages: tuple[tuple[str, str], ...], max_tokens: int | None) -> tuple[str, str, int, int] | None:
        config = configs.get(vendor)
        if config is None:
            return None
        return generate_text(config, [{"role": role, "content": text} for role, text in messages],
                             max_tokens=max_tokens, timeout=timeout)

    return write
