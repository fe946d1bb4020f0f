"""Small HTTP helpers shared by the views: reading JSON bodies, finding the caller's key, JSON responses."""

from __future__ import annotations

from typing import Any

import orjson

from flask import Request, Response, current_app, g, request

from lib import errors, offload
from lib.context import RequestContext
from lib.protocols.body import decode_json_body

ACCEPTED_TYPES = ("application/json", "text/plain", "")


def services() -> Any:
    """The app's collaborators (``lib.services.Services``)."""
    return current_app.extensions["aiproxy"]


def to_json(data: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; Decimals and other stragglers as strings)."""
    return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(to_json(data), status=status, headers=headers or {}, mimetype="application/json")


def read_json(req: Request) -> Any:
    """The request body decoded as JSON.

    Accepts ``application/json`` (and ``*+json``), ``text/plain`` (what ``fetch`` in Excel Office Scripts
    sends for a string body) and no Content-Type. Raises ``InvalidRequest`` (400 ``invalid_content_type``)
    for any other type, ``InvalidJSON`` for bad bytes or bad JSON, ``RequestTooLarge`` (413) past the limit.
    """
    mimetype = (req.mimetype or "").lower()
    if mimetype not in ACCEPTED_TYPES and not mimetype.endswith("+json"):
        raise errors.InvalidRequest(
            f"Invalid Content-Type header ({req.mimetype}); expected application/json.",
            code="invalid_content_type")
    raw = read_body(req, services().settings.max_request_bytes)
    return offload.cpu(decode_json_body, raw, heavy=len(raw) >= offload.HEAVY_BYTES)


def body_size(req: Request) -> int:
    """Bytes of the request body already read (``read_json``)."""
    return len(req.get_data(cache=True))


# -- the body, read with a bound ------------------------------------------------------------------------------
def read_body(req: Request, limit: int) -> bytes:
    """The request body (cached for later ``get_data`` calls), at most ``limit`` bytes.

    Raises ``RequestTooLarge`` (413) past the limit, whether the body has a Content-Length or is chunked.
    werkzeug stops reading a chunked body silently at MAX_CONTENT_LENGTH, so a 5 MB chunked body would be
    taken for its first megabyte; reading at most one byte more than the limit tells the two apart. A body
    that arrives too slowly raises ``RequestTimeout`` (408) from the server (``src/worker.py``).
    """
    if req.content_length is not None and req.content_length > limit:
        raise errors.RequestTooLarge(f"The request body is larger than the {limit}-byte limit.")
    req.max_content_length = limit + 1
    raw = req.get_data(cache=True)
    if len(raw) > limit:
        raise errors.RequestTooLarge(f"The request body is larger than the {limit}-byte limit.")
    return raw


def presented_key(req: Request) -> tuple[str | None, str | None]:
    """The key the caller sent and where: ``Authorization: Bearer``, ``X-API-Key``, ``X-API-Token``,
    then the ``api_key`` / ``api_token`` query parameters (least safe: they end up in access logs)."""
    auth = req.headers.get("Authorization", "")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "authorization"
    for header in ("X-API-Key", "X-API-Token"):
        value = req.headers.get(header, "").strip()
        if value:
            return value, header.lower()
    for param in ("api_key", "api_token"):
        value = req.args.get(param, "").strip()
        if value:
            return value, "query"
    return None, None


def context(endpoint: str, *, logged: bool = False) -> RequestContext:
    """A fresh ``RequestContext`` for this request, kept in ``g``. ``logged`` requests get exactly one
    request-log record however they end (success, error, refusal, client gone)."""
    from src.cors import request_id

    ctx = RequestContext(endpoint=endpoint, client_ip=request.remote_addr or "", logged=logged)
    ctx.request_id = request_id(request, ctx.proxy_id)
    g.aiproxy_ctx = ctx
    return ctx


def authenticate(ctx: RequestContext, *, allow_master: bool = False, pipeline: bool = False) -> None:
    """Resolve the caller's gateway key into ``ctx.key`` (or ``ctx.is_master``). Raises 401/403 errors, or
    429 when this address keeps presenting bad keys (a valid key is never refused for others' failures).

    ``pipeline``: the request goes through the gateway's pipeline, whose rate-limit round trip confirms the
    key record, so a copy this worker holds may be used without reading Redis first.
    """
    svc = services()
    key, _where = presented_key(request)
    from lib.keys import is_master

    if is_master(key, svc.settings.master_key):
        if allow_master:
            ctx.is_master = True
            return
        raise errors.AuthenticationError(
            "The master key is for /admin endpoints only; issue a gateway key with POST /admin/keys.",
            code="invalid_api_key")
    try:
        ctx.key = svc.keys.authenticate(key, confirm_later=pipeline)
    except errors.AuthenticationError as exc:
        svc.auth_failed(ctx.client_ip, exc)
        raise


def require_master() -> None:
    """Raise 401 unless the request carries the master key (compared in constant time)."""
    from lib.keys import is_master

    svc = services()
    key, _ = presented_key(request)
    if not key:
        raise errors.AuthenticationError("This endpoint needs the master key as 'Authorization: Bearer <key>'.",
                                         code="missing_api_key")
    if not is_master(key, svc.settings.master_key):
        exc = errors.AuthenticationError("Incorrect master key.", code="invalid_api_key")
        svc.auth_failed(request.remote_addr or "", exc)
        raise exc
