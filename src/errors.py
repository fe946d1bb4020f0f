"""Error handlers: every error leaves as the OpenAI envelope, never a stack trace. The one HTML answer is the
404 page a browser gets for a page that does not exist (``wants_html_404``); API clients get JSON."""

from __future__ import annotations

import logging

from flask import Flask, Request, Response, g
from werkzeug.exceptions import HTTPException

from lib import errors
from src.http import json_response

log = logging.getLogger("aiproxy.http")

_HTTP_MAP = {
    400: (errors.InvalidRequest, "invalid_request", "The request could not be understood."),
    404: (errors.NotFound, "not_found", "Unknown endpoint: {path}."),
    405: (errors.InvalidRequest, "method_not_allowed", "Method {method} is not allowed on {path}."),
    413: (errors.RequestTooLarge, "request_too_large", "The request body is too large."),
}


def error_response(exc: errors.GatewayError) -> Response:
    """The envelope response for ``exc``, with its headers (``Retry-After`` ...) and the request's id."""
    ctx = g.get("aiproxy_ctx")
    headers = exc.response_headers()
    if ctx is not None:
        ctx.status, ctx.error_code, ctx.error_message = exc.status, exc.code, exc.message
        headers.update(ctx.headers)
        headers["x-aiproxy-id"] = ctx.proxy_id
    return json_response(exc.to_dict(), status=exc.status, headers=headers)


API_PREFIXES = ("/v1/", "/api/", "/admin/", "/vendor-", "/metrics", "/health", "/openapi.json")


def wants_html_404(request: Request) -> bool:
    """True for a browser navigating to a page that does not exist: GET/HEAD outside the API paths, with an
    Accept header that prefers HTML to JSON (``*/*`` alone, as API clients send, means JSON)."""
    if request.method not in ("GET", "HEAD") or request.path.startswith(API_PREFIXES):
        return False
    accept = request.accept_mimetypes
    return accept.best_match(["application/json", "text/html"]) == "text/html" and accept["text/html"] > accept["application/json"]


def register(app: Flask, notify: "callable | None" = None) -> None:
    """Install the handlers on ``app``; ``notify(exc)`` reports unexpected exceptions (Honeybadger)."""

    @app.errorhandler(errors.GatewayError)
    def _gateway(exc: errors.GatewayError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        from flask import request

        if exc.code == 404 and wants_html_404(request):
            from src.views.pages import not_found_page

            return not_found_page(request.path)
        cls, code, template = _HTTP_MAP.get(exc.code or 500, (errors.GatewayError, "http_error", "{name}"))
        message = template.format(path=request.path, method=request.method, name=exc.name)
        err = cls(message, code=code, status=exc.code)
        resp = error_response(err)
        if exc.code == 405 and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error: %s", type(exc).__name__)
        if notify is not None:
            try:
                notify(exc)
            except Exception:  # the reporter must never turn a 500 into a crash
                log.debug("error reporter failed", exc_info=True)
        return error_response(errors.GatewayError("The server had an error while processing your request."))
