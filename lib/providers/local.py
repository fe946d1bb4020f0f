"""Local models (``type: local``): a Hugging Face causal LM from a directory, run on this machine's CPU.

::

    providers:
      tiny: {type: local, path: /models/tinyllama, max_tokens: 256, queue: 8, threads: 1}

The model runs in its own server process, one per model directory and machine, started by the gunicorn
master (``lib.providers.local_server``; the socket reaches this adapter as the ``socket`` option, from
``LOCAL_MODEL_SOCKETS``); outside gunicorn the same scheduler runs in a thread of this process. Either way
requests wait in a bounded queue (``queue``, default 8; a full queue is a 429 the gateway's fallbacks and
cool-downs route around) and generate one at a time. ``max_tokens`` is the answer length when a request sets
none; ``threads`` the server's torch threads.

What it honours: messages (text; the tokenizer's chat template, or ``role: text`` lines without one),
``max_tokens`` / ``max_completion_tokens`` (finish_reason ``length``), ``stop``, ``temperature`` (0 is
greedy), ``top_p``, ``seed``, streaming token by token with usage (prompt and generated token counts). What it
refuses with a 400 naming the parameter: tools, JSON output, ``n`` > 1, log probabilities, logit bias,
penalties, image/audio/file parts, and any parameter it does not know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from lib import errors
from lib.providers.base import ProviderConfig, completion_id, make_chunk, make_completion, make_usage, now, text_of
from lib.providers.httpjson import ClosingStream
from lib.providers.registry import Missing, ProviderType

HANDLED = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
           "stream_options", "seed", "n", "response_format", "tools", "tool_choice", "logprobs", "top_logprobs",
           "logit_bias", "presence_penalty", "frequency_penalty"}
IGNORED = {"store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier", "user", "parallel_tool_calls"}


def unsupported(param: str, why: str, provider: str) -> errors.UpstreamBadRequest:
    return errors.UpstreamBadRequest(f"'{param}' is not supported for local models: {why}.", provider=provider,
                                     param=param, code="unsupported_parameter")


def runner_for(config: ProviderConfig) -> Any:
    """How this instance reaches its model: the machine's server when a socket is known, else in-process."""
    from lib.providers import local_server

    if config.extra.get("socket"):
        return local_server.RemoteModel(str(config.extra["socket"]))
    return local_server.in_process(str(config.extra["path"]), int(config.extra.get("queue") or local_server.DEFAULT_QUEUE),
                                   int(config.extra.get("max_tokens") or 256))


class LocalProvider:
    """Adapter for an in-machine causal LM (see module docstring)."""

    def __init__(self, config: ProviderConfig, http: Any = None) -> None:
        self.name = config.name or "local"
        self._config = config
        self._path = str(config.extra.get("path") or "")
        self._runner: Any = None
        # Checked once: the model server loads from this directory at start; a stat per request buys nothing.
        self._configured = bool(self._path) and (Path(self._path) / "config.json").is_file()

    def configured(self) -> bool:
        """True when the model directory held a model when the instance was made (the server loads it)."""
        return self._configured

    def _run(self, body: dict[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        request = self._request(body)
        if not self.configured():
            raise errors.UpstreamUnavailable(f"Provider '{self.name}' has no model at {self._path or '(no path)'}",
                                             provider=self.name)
        if self._runner is None:
            self._runner = runner_for(self._config)
        return self._runner.run(request, timeout=timeout, provider=self.name)

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return an OpenAI ``chat.completion`` dict. Raises ``UpstreamError`` subclasses."""
        frames = self._run(body, timeout)
        parts: list[str] = []
        final: dict[str, Any] = {}
        for frame in frames:
            if "text" in frame:
                parts.append(frame["text"])
            final = frame
        return make_completion(model=model, content="".join(parts), finish_reason=final.get("finish", "stop"),
                               prompt_tokens=int(final.get("prompt_tokens") or 0),
                               completion_tokens=int(final.get("completion_tokens") or 0))

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI chunks as the model writes: role chunk, text deltas, finish chunk, usage chunk."""
        frames = self._run(body, timeout)
        return ClosingStream(self._chunks(frames, model), getattr(frames, "close", lambda: None))

    def _chunks(self, frames: Iterator[dict[str, Any]], model: str) -> Iterator[dict[str, Any]]:
        cid, created = completion_id(), now()
        yield make_chunk(id=cid, model=model, created=created, delta={"role": "assistant", "content": ""})
        for frame in frames:
            if frame.get("text"):
                yield make_chunk(id=cid, model=model, created=created, delta={"content": frame["text"]})
            if frame.get("done"):
                yield make_chunk(id=cid, model=model, created=created, delta={}, finish_reason=frame.get("finish", "stop"))
                yield make_chunk(id=cid, model=model, created=created, with_choice=False,
                                 usage=make_usage(int(frame.get("prompt_tokens") or 0),
                                                  int(frame.get("completion_tokens") or 0)))

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The model server's request for an OpenAI chat body. Raises ``UpstreamBadRequest`` (400)."""
        p = self.name
        for name, value in body.items():
            if name not in HANDLED and name not in IGNORED and not name.startswith("_") and value is not None:
                raise unsupported(name, "the local runner has no such parameter", p)
        if body.get("tools"):
            raise unsupported("tools", "they do not call tools", p)
        if (body.get("response_format") or {}).get("type") not in (None, "text"):
            raise unsupported("response_format", "their output is not constrained to JSON", p)
        if int(body.get("n") or 1) > 1:
            raise unsupported("n", "they return one choice per request", p)
        for name in ("logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty"):
            if body.get(name):
                raise unsupported(name, "the local runner does not offer it", p)
        messages = []
        for i, message in enumerate(body.get("messages") or []):
            content = message.get("content")
            if isinstance(content, list) and any(isinstance(part, dict) and part.get("type") != "text" for part in content):
                raise unsupported(f"messages.{i}.content", "they read text only", p)
            if message.get("tool_calls") or message.get("role") in ("tool", "function"):
                raise unsupported(f"messages.{i}", "they do not call tools", p)
            role = "system" if message.get("role") == "developer" else str(message.get("role") or "user")
            messages.append({"role": role, "content": text_of(content)})
        stop = body.get("stop")
        request: dict[str, Any] = {"messages": messages,
                                   "stop": [stop] if isinstance(stop, str) else list(stop or []),
                                   "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens")}
        for name in ("temperature", "top_p", "seed"):
            if body.get(name) is not None:
                request[name] = body[name]
        return request


def generate_text(config: ProviderConfig, messages: list[dict[str, str]], *, max_tokens: int | None,
                  timeout: float) -> tuple[str, str, int, int]:
    """``(text, finish, prompt_tokens, completion_tokens)`` from the model ``config`` names, for callers that
    want plain text (the sandbox vendors). Raises ``UpstreamError`` subclasses."""
    provider = LocalProvider(config)
    result = provider.complete({"messages": messages, "max_tokens": max_tokens}, model="local", timeout=timeout)
    usage = result["usage"] or {}
    return (result["choices"][0]["message"]["content"] or "", result["choices"][0]["finish_reason"],
            int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def _check(config: ProviderConfig) -> Missing | None:
    path = config.extra.get("path")
    if not path:
        return Missing("no model directory (give the entry a path)")
    if not (Path(str(path)) / "config.json").is_file():
        return Missing(f"no model at {path} (a directory saved with save_pretrained: config.json, weights, tokenizer)")
    return None


TYPE = ProviderType(name="local", adapter=LocalProvider, needs_key=False, env_default=False, check=_check,
                    options=("path", "max_tokens", "queue", "threads"))
