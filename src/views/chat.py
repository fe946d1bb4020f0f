"""``POST /v1/chat/completions`` (alias ``POST /api/proxy``) and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any, Iterator

from flask import Blueprint, Response, request

from lib import offload
from lib.records.requestlog import body_text
from lib.protocols.chat import parse_chat_request
from src.http import authenticate, body_size, context, json_response, read_json, services, to_json

bp = Blueprint("chat", __name__)


@bp.post("/v1/chat/completions")
@bp.post("/api/proxy")
def chat_completions() -> Response:
    svc = services()
    ctx = context("chat.completions", logged=True)
    authenticate(ctx, pipeline=True)
    data = read_json(request)
    if svc.settings.log_bodies:
        ctx.request_body = body_text(request.get_data(as_text=True))
    size = body_size(request)
    req = offload.cpu(parse_chat_request, data, heavy=size >= offload.HEAVY_BYTES).sized(size)
    ctx.cache_lookup, ctx.cache_store = cache_controls(request.headers, data)
    if req.stream:
        chunks = svc.gateway.stream(ctx, req)
        headers = {**ctx.headers, "x-aiproxy-id": ctx.proxy_id, "Cache-Control": "no-cache",
                   "X-Accel-Buffering": "no"}
        return Response(_sse(chunks), status=200, headers=headers, mimetype="text/event-stream")
    result = svc.gateway.complete(ctx, req)
    if svc.settings.log_bodies:
        ctx.response_body = body_text(result)
    return json_response(result, headers={**ctx.headers, "x-aiproxy-id": ctx.proxy_id})


def cache_controls(headers: Any, data: Any) -> tuple[bool, bool]:
    """``(lookup, store)`` for this request from ``Cache-Control`` (``no-cache``: skip the lookup but store the
    answer; ``no-store``: neither), ``X-AIProxy-Cache: off`` and the body's ``"cache": false``."""
    directives = {d.strip().split("=")[0].lower() for d in headers.get("Cache-Control", "").split(",")}
    lookup, store = True, True
    if "no-cache" in directives:
        lookup = False
    if "no-store" in directives:
        lookup = store = False
    if headers.get("X-AIProxy-Cache", "").strip().lower() in ("off", "bypass", "false", "0", "no"):
        lookup = store = False
    if isinstance(data, dict) and data.get("cache") is False:
        lookup = store = False
    return lookup, store


def _sse(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Frame chunk dicts as server-sent events; ``[DONE]`` after a clean end, nothing after an error."""
    errored = False
    try:
        for chunk in chunks:
            if "error" in chunk and "choices" not in chunk:
                errored = True
            yield b"data: " + to_json(chunk) + b"\n\n"
        if not errored:
            yield b"data: [DONE]\n\n"
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


@bp.get("/v1/models")
def list_models() -> Response:
    svc = services()
    ctx = context("models")
    authenticate(ctx)
    data = [_model_obj(r.name, r.provider) for r in svc.router.listed() if ctx.key is None or ctx.key.allows_model(r.name)]
    return json_response({"object": "list", "data": data})


@bp.get("/v1/models/<path:model>")
def retrieve_model(model: str) -> Response:
    svc = services()
    ctx = context("models")
    authenticate(ctx)
    route = svc.router.resolve(model)
    if ctx.key is not None and not ctx.key.allows_model(model):
        from lib import errors

        raise errors.ModelNotFound(f"The model '{model}' does not exist or you do not have access to it.",
                                   param="model")
    return json_response(_model_obj(route.name, route.provider))


def _model_obj(name: str, provider: str) -> dict[str, Any]:
    """OpenAI's model object, plus ``configured`` (the provider has credentials) and ``served_by`` (who answers
    now: the provider, ``sandbox`` standing in for an unconfigured one, or ``None``), for the playground."""
    svc = services()
    instance = svc.gateway.providers.get(provider)
    configured = instance is not None and instance.configured()
    stand_in = svc.settings.sandbox_fallback and "sandbox" in svc.gateway.providers
    return {"id": name, "object": "model", "created": 0, "owned_by": provider, "configured": configured,
            "served_by": provider if configured else ("sandbox" if stand_in else None)}


@bp.post("/api/v1/webhook")
def webhook() -> Response:
    """``{prompt, source?, language?, type?}`` → ``{summary, processing_time}`` through the chat pipeline."""
    import time

    from lib.webhook import answer_text, build_request

    svc = services()
    ctx = context("webhook", logged=True)
    started = time.monotonic()
    authenticate(ctx, pipeline=True)
    data = read_json(request)
    if svc.settings.log_bodies:
        ctx.request_body = body_text(request.get_data(as_text=True))
    req, kind = build_request(data, model=svc.settings.webhook_model, max_prompt_length=svc.settings.max_prompt_length)
    ctx.cache_lookup, ctx.cache_store = cache_controls(request.headers, data)
    result = svc.gateway.complete(ctx, req)
    body = {"summary": answer_text(result), "processing_time": round(time.monotonic() - started, 3), "type": kind,
            "model": result.get("model"), "proxy_id": ctx.proxy_id}
    if isinstance(data, dict) and data.get("source"):
        body["source"] = data["source"]
    if svc.settings.log_bodies:
        ctx.response_body = body_text(body)
    return json_response(body, headers={**ctx.headers, "x-aiproxy-id": ctx.proxy_id})


@bp.post("/v1/embeddings")
def embeddings() -> Response:
    """OpenAI embeddings, passed to the provider that serves the model (sandbox vectors offline)."""
    from lib.protocols.embeddings import parse_embedding_request

    svc = services()
    ctx = context("embeddings", logged=True)
    authenticate(ctx, pipeline=True)
    data = read_json(request)
    req = parse_embedding_request(data)
    if svc.settings.log_bodies:
        ctx.request_body = body_text(request.get_data(as_text=True))
    result = svc.gateway.embed(ctx, req)
    return json_response(result, headers={**ctx.headers, "x-aiproxy-id": ctx.proxy_id})
