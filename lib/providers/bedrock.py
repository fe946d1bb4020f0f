"""Amazon Bedrock (``type: bedrock``) through boto3's ``bedrock-runtime`` Converse and ConverseStream APIs.

Request mapping lives in ``lib.providers.bedrock_request``. Here: the client, and the response side — a
Converse answer or the ConverseStream events (``messageStart``, ``contentBlockStart`` / ``Delta`` / ``Stop``,
``messageStop``, then ``metadata`` with the usage) become an OpenAI ``chat.completion`` or chunks.

Credentials come from boto3's standard chain (the ECS task role in AWS; ``AWS_PROFILE`` or the shared files
on a laptop), unless the entry names variables holding static keys (``aws_access_key_id_env`` /
``aws_secret_access_key_env``). ``region`` falls back to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``;
``endpoint_url`` points at a VPC endpoint, or a fake in tests.

botocore's sockets are blocking, which gevent's patched ``socket`` module makes cooperative. A client is
thread-safe and made once per instance and read timeout: botocore fixes timeouts per client, so a call with
``timeout`` seconds left in the request's deadline uses the client for ``timeout_step(timeout)`` (whole
seconds, rounded down; quarter seconds below 2 s), made on first use. In practice that is one or two clients per
instance: the first attempt always has about ``REQUEST_TIMEOUT`` left, and only fallbacks see less. Retries are
off: the gateway's fallback loop and deadline decide what happens after a failure.

Errors: Bedrock's exceptions (``ThrottlingException`` …, also inside a stream) map by ``ERRORS``; botocore's
own (read/connect timeouts, no connection, no credentials) by type. Converse returns no completion id, so the
request id stands in; it returns no model name either, so the route's model id is the priced one.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterator

from lib import errors
from lib.providers.anthropic_request import JsonMode
from lib.providers.base import ProviderConfig, completion_id, failed, make_chunk, make_completion, make_usage, now
from lib.providers.bedrock_request import build_request
from lib.providers.httpjson import ClosingStream
from lib.providers.registry import Missing, ProviderType

log = logging.getLogger("aiproxy.providers.bedrock")

SHORT_STEPS = (0.25, 0.5, 1.0, 1.5)
CONNECT_TIMEOUT_S = 5.0
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
          "model_context_window_exceeded": "length", "malformed_model_output": "stop", "malformed_tool_use": "stop"}
UpstreamFactory = Callable[[str, str], errors.UpstreamError]
ERRORS: dict[str, UpstreamFactory] = {
    "ThrottlingException": lambda p, m: errors.UpstreamRateLimited(f"Provider '{p}' is rate limiting the proxy: {m}",
                                                                   provider=p),
    "ServiceQuotaExceededException": lambda p, m: errors.UpstreamRateLimited(
        f"Provider '{p}' is over a service quota: {m}", provider=p),
    "ValidationException": lambda p, m: errors.UpstreamBadRequest(m, provider=p),
    "AccessDeniedException": lambda p, m: errors.UpstreamAuthError(
        f"The proxy may not invoke this model on provider '{p}' (AccessDenied): the task role needs "
        "bedrock:InvokeModel / InvokeModelWithResponseStream on it and the account needs model access. This is a "
        "gateway configuration problem, not your key.", provider=p),
    "ResourceNotFoundException": lambda p, m: errors.UpstreamNotFound(m, provider=p),
    "ModelNotReadyException": lambda p, m: errors.UpstreamUnavailable(f"Provider '{p}': the model is not ready: {m}",
                                                                      provider=p),
    "ServiceUnavailableException": lambda p, m: errors.UpstreamUnavailable(
        f"Provider '{p}' is unavailable (ServiceUnavailable)", provider=p),
    "InternalServerException": lambda p, m: errors.UpstreamError(f"Provider '{p}' failed (InternalServer)", provider=p),
    "ModelErrorException": lambda p, m: errors.UpstreamError(f"Provider '{p}': the model failed (ModelError)", provider=p),
    "ModelStreamErrorException": lambda p, m: errors.UpstreamError(f"Provider '{p}' failed mid-stream (ModelStreamError)",
                                                                   provider=p),
    "ModelTimeoutException": lambda p, m: errors.UpstreamTimeout(f"Provider '{p}': the model timed out", provider=p),
}
_BAD_CREDENTIALS = ("UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
                    "IncompleteSignature", "MissingAuthenticationToken")


class BedrockProvider:
    """Adapter for Bedrock's Converse API (see module docstring)."""

    def __init__(self, config: ProviderConfig, http: Any = None) -> None:
        self.name = config.name or "bedrock"
        self._region = str(config.extra.get("region") or "")
        self._endpoint = config.extra.get("endpoint_url") or None
        self._profile = config.extra.get("profile") or None
        self._pool = int(config.extra.get("max_connections") or 64)
        self._keys = (config.secrets.get("aws_access_key_id") or None, config.secrets.get("aws_secret_access_key") or None)
        self._clients: dict[float, Any] = {}
        self._lock = threading.Lock()
        self._session: Any = None

    def configured(self) -> bool:
        """True when a region is known (credentials are the standard chain's, checked on the first call)."""
        return bool(self._region)

    # -- clients ----------------------------------------------------------------------------------
    def _client(self, timeout: float) -> Any:
        step = timeout_step(timeout)
        client = self._clients.get(step)
        if client is not None:
            return client
        with self._lock:  # boto3 sessions are not thread-safe; the clients they make are
            if step not in self._clients:
                import boto3
                from botocore.config import Config

                if self._session is None:
                    self._session = boto3.session.Session(profile_name=self._profile, aws_access_key_id=self._keys[0],
                                                          aws_secret_access_key=self._keys[1])
                config = Config(connect_timeout=min(CONNECT_TIMEOUT_S, step), read_timeout=step,
                                retries={"total_max_attempts": 1, "mode": "standard"},
                                max_pool_connections=self._pool, user_agent_extra="aiproxy")
                self._clients[step] = self._session.client("bedrock-runtime", region_name=self._region,
                                                           endpoint_url=self._endpoint, config=config)
            return self._clients[step]

    # -- calls --------------------------------------------------------------------------------------
    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        """Return an OpenAI ``chat.completion`` dict. Raises ``UpstreamError`` subclasses."""
        request, json_mode = build_request(body, model)
        data = self._call("converse", request, timeout)
        return from_converse(data, model, json_mode)

    def stream(self, body: dict[str, Any], *, model: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Yield OpenAI chunks: role chunk, deltas, finish chunk, usage chunk. Raises ``UpstreamError``."""
        request, json_mode = build_request(body, model)
        response = self._call("converse_stream", request, timeout)
        events = response["stream"]
        request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
        parser = StreamParser(model, json_mode, request_id, self.name)
        return ClosingStream(self._iterate(events, parser), events.close)

    def _iterate(self, events: Any, parser: "StreamParser") -> Iterator[dict[str, Any]]:
        try:
            try:
                for event in events:
                    yield from parser.feed(event)
            except errors.GatewayError:
                raise
            except Exception as exc:  # noqa: BLE001 - EventStreamError, urllib3 and socket errors alike
                raise self._convert(exc, mid_stream=True) from exc
            parser.finish()
        finally:
            events.close()

    def _call(self, operation: str, request: dict[str, Any], timeout: float) -> Any:
        if not self._region:
            raise errors.UpstreamUnavailable(f"Provider '{self.name}' is not configured (no region)", provider=self.name)
        try:
            return getattr(self._client(timeout), operation)(**request)
        except Exception as exc:  # noqa: BLE001 - every botocore failure is converted at this one edge
            raise self._convert(exc) from exc

    def _convert(self, exc: Exception, *, mid_stream: bool = False) -> errors.UpstreamError:
        """Map a botocore exception (or one raised while reading a stream) to the gateway's error."""
        from botocore import exceptions as boto
        from urllib3 import exceptions as http_errors

        p = self.name
        if isinstance(exc, boto.ClientError):
            error = exc.response.get("Error") or {}
            code = str(error.get("Code") or "")
            code = code[:1].upper() + code[1:]  # stream exceptions arrive as "throttlingException"
            message = str(error.get("Message") or code)[:500]
            meta = exc.response.get("ResponseMetadata") or {}
            status = int(meta.get("HTTPStatusCode") or 0)
            if code in ERRORS:
                out = ERRORS[code](p, message)
            elif code in _BAD_CREDENTIALS:
                out = errors.from_status(403, message, provider=p)
            else:
                out = errors.from_status(status or 500, message, provider=p)
            out.retry_after = _retry_after(meta.get("HTTPHeaders") or {})
            return failed(out, {"error": {"type": code, "code": status or None, "message": message}}, status or None)
        if isinstance(exc, (boto.ReadTimeoutError, boto.ConnectTimeoutError, http_errors.ReadTimeoutError, TimeoutError)):
            return errors.UpstreamTimeout(f"Provider '{p}' did not answer in time", provider=p)
        if mid_stream:
            return errors.UpstreamError(f"Provider '{p}' broke off the stream", provider=p)
        if isinstance(exc, (boto.EndpointConnectionError, boto.ConnectionClosedError)):
            return errors.UpstreamUnavailable(f"Provider '{p}' could not be reached", provider=p)
        if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError, boto.ProfileNotFound)):
            return errors.UpstreamAuthError(f"Provider '{p}' has no usable AWS credentials. This is a gateway "
                                            "configuration problem, not your key.", provider=p)
        log.warning("bedrock %s call failed: %s", p, type(exc).__name__)
        return errors.UpstreamError(f"Provider '{p}' failed: {type(exc).__name__}", provider=p)


def timeout_step(timeout: float) -> float:
    """The read timeout of the client a call with ``timeout`` seconds left uses (never above it, but 0.25 s)."""
    if timeout >= 2:
        return float(int(timeout))
    return max([s for s in SHORT_STEPS if s <= timeout] or [SHORT_STEPS[0]])


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return float(value) if value else None
    except ValueError:
        return None


# -- response mapping ---------------------------------------------------------------------------------

def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Converse's; prompt-cache reads and writes count as prompt tokens and are itemised."""
    read = int(usage.get("cacheReadInputTokens") or 0)
    write = int(usage.get("cacheWriteInputTokens") or 0)
    return make_usage(int(usage.get("inputTokens") or 0) + read + write, int(usage.get("outputTokens") or 0),
                      {"prompt_tokens_details": {"cached_tokens": read, "cache_creation_tokens": write}})


def _json_text(value: Any, json_mode: JsonMode) -> str:
    if json_mode.wrapped and isinstance(value, dict):
        value = value.get("value")
    return json.dumps(value, ensure_ascii=False)


def from_converse(data: dict[str, Any], model: str, json_mode: JsonMode | None = None) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` dict from a Converse response (the forced JSON tool's input, when
    ``json_mode`` names one, as the message text with finish_reason ``stop``)."""
    blocks = ((data.get("output") or {}).get("message") or {}).get("content") or []
    texts = [b["text"] for b in blocks if isinstance(b.get("text"), str)]
    tool_calls = []
    for block in blocks:
        use = block.get("toolUse")
        if not isinstance(use, dict):
            continue
        if json_mode is not None and use.get("name") == json_mode.tool:
            texts = [_json_text(use.get("input"), json_mode)]
        else:
            tool_calls.append({"id": use.get("toolUseId"), "type": "function",
                               "function": {"name": use.get("name"), "arguments": json.dumps(use.get("input") or {})}})
    text = "".join(texts)
    finish = FINISH.get(str(data.get("stopReason") or ""), "stop")
    if finish == "tool_calls" and not tool_calls:
        finish = "stop"
    request_id = (data.get("ResponseMetadata") or {}).get("RequestId")
    result = make_completion(model=model, content=text if text or not tool_calls else None, finish_reason=finish,
                             prompt_tokens=None, completion_tokens=None, tool_calls=tool_calls or None,
                             id=f"chatcmpl-{request_id}" if request_id else None)
    if isinstance(data.get("usage"), dict):
        result["usage"] = _usage(data["usage"])
    return result


class StreamParser:
    """Turns ConverseStream events into OpenAI chunks (one parser per stream)."""

    def __init__(self, model: str, json_mode: JsonMode | None, request_id: str | None, provider: str) -> None:
        self.id = f"chatcmpl-{request_id}" if request_id else completion_id()
        self.model = model
        self.created = now()
        self.json_mode = json_mode
        self.provider = provider
        self.tool_index: dict[int, int] = {}  # Bedrock block index → OpenAI tool_calls index
        self.json_blocks: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.stopped = False

    def _chunk(self, delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
        return make_chunk(id=self.id, model=self.model, created=self.created, delta=delta, finish_reason=finish)

    def feed(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The chunks for one event (a dict with one key: the event's type)."""
        if "messageStart" in event:
            yield self._chunk({"role": "assistant", "content": ""})
        elif "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = (start.get("start") or {}).get("toolUse")
            index = int(start.get("contentBlockIndex") or 0)
            if isinstance(use, dict) and self.json_mode is not None and use.get("name") == self.json_mode.tool:
                self.json_blocks[index] = []
            elif isinstance(use, dict):
                n = self.tool_index[index] = len(self.tool_index)
                yield self._chunk({"tool_calls": [{"index": n, "id": use.get("toolUseId"), "type": "function",
                                                   "function": {"name": use.get("name"), "arguments": ""}}]})
        elif "contentBlockDelta" in event:
            yield from self._delta(event["contentBlockDelta"])
        elif "contentBlockStop" in event:
            index = int(event["contentBlockStop"].get("contentBlockIndex") or 0)
            if index in self.json_blocks and self.json_mode is not None and self.json_mode.wrapped:
                try:
                    value = json.loads("".join(self.json_blocks[index]) or "{}")
                except ValueError:
                    value = {}
                yield self._chunk({"content": _json_text(value, self.json_mode)})
        elif "messageStop" in event:
            finish = FINISH.get(str(event["messageStop"].get("stopReason") or ""), "stop")
            if finish == "tool_calls" and not self.tool_index:
                finish = "stop"  # only the JSON tool was called: that is the answer
            self.stopped = True
            yield self._chunk({}, finish)
        elif "metadata" in event:
            usage = event["metadata"].get("usage")
            if isinstance(usage, dict):
                yield make_chunk(id=self.id, model=self.model, created=self.created, with_choice=False,
                                 usage=_usage(usage))

    def _delta(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        delta = payload.get("delta") or {}
        index = int(payload.get("contentBlockIndex") or 0)
        if isinstance(delta.get("text"), str) and delta["text"]:
            yield self._chunk({"content": delta["text"]})
        elif isinstance(delta.get("toolUse"), dict):
            partial = str(delta["toolUse"].get("input") or "")
            if index in self.json_blocks:
                self.json_blocks[index].append(partial)
                if not self.json_mode.wrapped and partial:  # type: ignore[union-attr]
                    yield self._chunk({"content": partial})
            elif index in self.tool_index and partial:
                yield self._chunk({"tool_calls": [{"index": self.tool_index[index], "function": {"arguments": partial}}]})
        # reasoningContent and citations have nothing for OpenAI clients

    def finish(self) -> None:
        """Raise ``UpstreamError`` when the stream ended before ``messageStop``."""
        if not self.stopped:
            raise errors.UpstreamError(f"Provider '{self.provider}' ended the stream early", provider=self.provider)


def _check(config: ProviderConfig) -> Missing | None:
    if not config.extra.get("region"):
        return Missing("no region (give the entry a region)", "AWS_REGION")
    return None


TYPE = ProviderType(
    name="bedrock", adapter=BedrockProvider, needs_key=False, env_default=False, check=_check,
    options=("region", "endpoint_url", "profile", "max_connections", "aws_access_key_id_env",
             "aws_secret_access_key_env"),
    option_env={"region": ("AWS_REGION", "AWS_DEFAULT_REGION")},
)
