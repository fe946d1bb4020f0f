"""``POST /v1/responses`` and ``GET`` / ``DELETE /v1/responses/<id>``: the OpenAI Responses API over the chat
pipeline (``lib.protocols.responses`` translates in, ``lib.protocols.responses_out`` out)."""

from __future__ import annotations

import logging
from typing import Any, Iterator

import orjson

from flask import Blueprint, Response, current_app, request

from lib import errors
from lib.records.requestlog import body_text
from lib.protocols.params import RESPONSES, renamed
from lib.protocols.responses import dump_items, input_items, load_items, parse_responses_request
from lib.protocols.responses_chat import to_chat
from lib.protocols.responses_out import EventStream, ResponseShape
from lib.protocols.responses_store import ResponseStore
from src.http import authenticate, body_size, context, json_response, read_json, services
from src.views.chat import cache_controls

bp = Blueprint("responses", __name__)
log = logging.getLogger("aiproxy.responses")
EXTENSION = "aiproxy.responses"


def _json(data: Any, headers: dict[str, str]) -> Response:
    # orjson: several times faster than json for these large objects (see bench/protocols_bench.py)
    return Response(orjson.dumps(data), status=200, headers=headers, mimetype="application/json")


def response_store() -> ResponseStore:
    """The app's ``ResponseStore`` (built in ``create_app``)."""
    return current_app.extensions[EXTENSION]


@bp.post("/v1/responses")
def create_response() -> Response:
    svc = services()
    ctx = context("responses", logged=True)
    authenticate(ctx, pipeline=True)  # the pipeline's rate-limit round trip confirms the key
    data = read_json(request)
    if svc.settings.log_bodies:
        ctx.request_body = body_text(request.get_data(as_text=True))
    req = parse_responses_request(data)
    ctx.requested_model = req.model
    store = response_store()  # taken now: a stream's last event is built outside the app context
    history: list[Any] = []
    if req.previous_response_id:
        stored = store.get(ctx.key_id or "-", req.previous_response_id)
        if stored is None:
            raise errors.NotFound(f"Previous response with id '{req.previous_response_id}' not found.",
                                  param="previous_response_id")
        history = load_items(stored.get("items") or [])
    chat = to_chat(req, history).sized(body_size(request))
    ctx.cache_lookup, ctx.cache_store = cache_controls(request.headers, data)
    shape = ResponseShape(req, proxy_id=ctx.proxy_id)
    conversation = dump_items([*history, *input_items(req)])

    def keep(final: dict[str, Any]) -> None:
        if not req.stored:
            return
        try:
            store.put(ctx.key_id or "-", final, conversation + _as_input(final["output"]))
        except errors.StoreUnavailable:
            log.error("could not store response %s: Redis unreachable", final["id"])
            final["store"] = False  # say so rather than promise a follow-up that will 404

    headers = {**ctx.headers, "x-aiproxy-id": ctx.proxy_id}
    with renamed(RESPONSES):
        if req.stream:
            chunks = svc.gateway.stream(ctx, chat)
            events = EventStream(shape, ctx.model or req.model, on_done=keep).events(chunks)
            return Response(_sse(events, chunks), status=200, mimetype="text/event-stream",
                            headers={**ctx.headers, **headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        result = svc.gateway.complete(ctx, chat)
    final = shape.from_completion(result)
    keep(final)
    if svc.settings.log_bodies:
        ctx.response_body = body_text(final)
    return _json(final, {**ctx.headers, **headers})


@bp.get("/v1/responses/<response_id>")
def retrieve_response(response_id: str) -> Response:
    ctx = context("responses.retrieve", logged=True)
    authenticate(ctx)
    stored = response_store().get(ctx.key_id or "-", response_id)
    if stored is None:
        raise errors.NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return json_response(stored["response"], headers={"x-aiproxy-id": ctx.proxy_id})


@bp.delete("/v1/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    ctx = context("responses.delete", logged=True)
    authenticate(ctx)
    if not response_store().delete(ctx.key_id or "-", response_id):
        raise errors.NotFound(f"Response with id '{response_id}' not found.", param="response_id")
    return json_response({"id": response_id, "object": "response", "deleted": True},
                         headers={"x-aiproxy-id": ctx.proxy_id})


def _as_input(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Output items in the form they take as the next request's input (what a follow-up replays)."""
    items = []
    for item in output:
        if item.get("type") == "message":
            items.append({"type": "message", "role": "assistant", "content": [
                p for p in item.get("content") or [] if p.get("type") in ("output_text", "refusal")]})
        elif item.get("type") == "function_call":
            items.append({"type": "function_call", "call_id": item["call_id"], "name": item["name"],
                          "arguments": item["arguments"]})
    return items


def _sse(events: Iterator[tuple[str, dict[str, Any]]], chunks: Any) -> Iterator[bytes]:
    """Frame typed events as SSE (``event:`` + ``data:``); closing the body closes the upstream stream."""
    try:
        for kind, data in events:
            yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
    finally:
        for it in (events, chunks):
            close = getattr(it, "close", None)
            if close is not None:
                close()
