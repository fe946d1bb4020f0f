"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the Anthropic Messages API for any model,
with Anthropic's event stream and error shape (``lib.protocols.messages`` in, ``messages_out`` out).

A model whose first route is an Anthropic instance is served natively (the request as sent, the answer as
Anthropic sent it); any other provider through the chat translation. ``count_tokens`` is counted locally
(``lib.accounting.tokens``): exact for OpenAI models, an estimate for Claude and Gemini, whose tokenizers
are not public or not local.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import orjson

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from lib import errors
from lib.records.requestlog import body_text
from lib.protocols.messages import CountTokensRequest, MessagesRequest, check_headers, native_body, parse, to_chat
from lib.protocols.messages_out import EventStream, error_of, from_completion
from lib.protocols.params import MESSAGES, renamed
from lib.providers.anthropic import AnthropicProvider
from lib.providers.sandbox import SandboxProvider
from src.errors import error_response
from src.http import authenticate, body_size, context, json_response, read_json, services
from src.views.chat import cache_controls

bp = Blueprint("messages", __name__)
log = logging.getLogger("aiproxy.messages")


def _json(data: Any, headers: dict[str, str]) -> Response:
    # orjson: several times faster than json for these large objects (see bench/protocols_bench.py)
    return Response(orjson.dumps(data), status=200, headers=headers, mimetype="application/json")


def _anthropic_shaped(exc: errors.GatewayError) -> Response:
    response = error_response(exc)  # status, headers (Retry-After, x-aiproxy-id) and the log fields
    response.set_data(json.dumps(error_of(exc), ensure_ascii=False))
    return response


@bp.errorhandler(errors.GatewayError)
def _gateway_error(exc: errors.GatewayError) -> Response:
    return _anthropic_shaped(exc)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return _anthropic_shaped(errors.GatewayError(exc.description or exc.name, status=exc.code or 500,
                                                 code="request_too_large" if exc.code == 413 else "http_error"))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled error: %s", type(exc).__name__)
    notify = services().notify
    if notify is not None:
        try:
            notify(exc)
        except Exception:  # the reporter must never turn a 500 into a crash
            log.debug("error reporter failed", exc_info=True)
    return _anthropic_shaped(errors.GatewayError("The server had an error while processing your request."))


def _served_by(svc: Any, ctx: Any, model: str) -> tuple[bool, str, bool]:
    """``(native, provider that sets the rules, lenient)`` for ``model``'s routes: native when the first is an
    Anthropic instance; the rules are those of the first route that is neither Anthropic nor the sandbox
    (a fallback too must honour what the request asks); lenient when there is none."""
    targets = svc.gateway.targets(ctx, model)
    first = targets[0]
    native = isinstance(first.provider, AnthropicProvider) and not first.substituted
    strict = next((t.provider.name for t in targets
                   if not isinstance(t.provider, (AnthropicProvider, SandboxProvider))), None)
    return native, strict or first.provider.name, strict is None


@bp.post("/v1/messages")
def create_message() -> Response:
    svc = services()
    ctx = context("messages", logged=True)
    authenticate(ctx, pipeline=True)  # the pipeline's rate-limit round trip confirms the key
    beta = request.headers.get("anthropic-beta")
    check_headers(request.headers.get("anthropic-version"), beta)
    data = read_json(request)
    if svc.settings.log_bodies:
        ctx.request_body = body_text(request.get_data(as_text=True))
    req = parse(MessagesRequest, data)
    ctx.requested_model = req.model
    native, served_by, lenient = _served_by(svc, ctx, req.model)
    with renamed(MESSAGES):
        chat = to_chat(req, served_by=served_by, lenient=lenient).sized(body_size(request))
        if native:
            chat.with_native("anthropic", {"body": native_body(data), "beta": beta.strip() if beta else None})
        ctx.cache_lookup, ctx.cache_store = cache_controls(request.headers, data)
        headers = {**ctx.headers, "x-aiproxy-id": ctx.proxy_id, "request-id": ctx.request_id or ctx.proxy_id}
        if req.stream:
            chunks = svc.gateway.stream(ctx, chat)
            events = EventStream(req.model, ctx.proxy_id).events(chunks)
            return Response(_sse(events, chunks), status=200, mimetype="text/event-stream",
                            headers={**ctx.headers, **headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        result = svc.gateway.complete(ctx, chat)
    message = from_completion(result, ctx.proxy_id)
    if svc.settings.log_bodies:
        ctx.response_body = body_text(message)
    return _json(message, {**ctx.headers, **headers})


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    svc = services()
    ctx = context("messages.count_tokens", logged=True)
    authenticate(ctx)
    check_headers(request.headers.get("anthropic-version"), request.headers.get("anthropic-beta"))
    req = parse(CountTokensRequest, read_json(request))
    ctx.requested_model = ctx.model = req.model
    svc.gateway.targets(ctx, req.model)  # the model must exist and be allowed for this key
    chat = to_chat(req, served_by="anthropic", lenient=True)
    counted = svc.gateway.accounting.prompt_tokens(chat, req.model)
    return json_response({"input_tokens": counted}, headers={"x-aiproxy-id": ctx.proxy_id,
                                                            "request-id": ctx.request_id or ctx.proxy_id})


def _sse(events: Iterator[tuple[str, dict[str, Any]]], chunks: Any) -> Iterator[bytes]:
    """Frame events as Anthropic does (``event:`` + ``data:``); closing the body closes the upstream stream."""
    try:
        for kind, data in events:
            yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    finally:
        for it in (events, chunks):
            close = getattr(it, "close", None)
            if close is not None:
                close()
