"""CORS for browser apps on ``CORS_ALLOWED_ORIGINS``, and the ``x-request-id`` every response carries.

CORS is ``flask-cors``: it matches the ``Origin`` (a disallowed one gets no CORS headers at all), answers
preflights with the allowed methods, echoes back those of the ``Access-Control-Request-Headers`` that match
``ALLOW_HEADERS`` (literal names, and regular expressions for families such as ``x-stainless-*``), and adds
the headers to error responses too. Two things it does not do are added in ``finish_cors``: a preflight is
answered ``204 No Content`` (Flask's automatic ``OPTIONS`` answers 200 with a body), and ``Vary: Origin`` is
sent whenever an origin is echoed (flask-cors leaves it out when exactly one origin is configured, which
would let a shared cache serve one origin's answer to another).
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Request, Response

ALLOW_HEADERS = ["authorization", "content-type", "x-api-key", "x-api-token", "anthropic-version", "anthropic-beta",
                 "anthropic-dangerous-direct-browser-access", "openai-organization", "openai-project",
                 "x-request-id", "cache-control", "x-aiproxy-cache", "idempotency-key", re.compile(r"^x-stainless-[a-z0-9-]+$", re.I)]
EXPOSE_HEADERS = ["x-aiproxy-id", "x-aiproxy-cache", "x-aiproxy-cache-similarity", "x-aiproxy-provider",
                  "x-aiproxy-sandbox", "x-aiproxy-unpriced",
                  "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
                  "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
                  "retry-after", "x-request-id", "request-id"]
METHODS = ["GET", "POST", "PATCH", "DELETE", "OPTIONS"]
MAX_AGE_S = 600
_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")


def init_cors(app: Flask, origins: tuple[str, ...]) -> None:
    """Install flask-cors for ``origins`` (``*`` allows any, echoed back rather than sent as ``*``).
    Register this after the app's own ``after_request`` hooks: Flask runs them last-registered first."""
    if not origins:
        return
    from flask_cors import CORS

    CORS(app, origins=["*"] if "*" in origins else list(origins), methods=METHODS, allow_headers=ALLOW_HEADERS,
         expose_headers=EXPOSE_HEADERS, max_age=MAX_AGE_S, send_wildcard=False, vary_header=True)


def finish_cors(request: Request, response: Response) -> Response:
    """204 for an answered preflight; ``Vary: Origin`` whenever an origin was echoed (see the module docstring)."""
    if "Access-Control-Allow-Origin" not in response.headers:
        return response
    if "origin" not in response.headers.get("Vary", "").lower():
        response.headers.add("Vary", "Origin")
    if request.method == "OPTIONS" and "Access-Control-Allow-Methods" in response.headers and response.status_code < 300:
        response.status_code = 204
        response.set_data(b"")
        response.headers.pop("Content-Type", None)
    return response


def request_id(request: Request, generated: str | None = None) -> str:
    """The client's ``X-Request-Id`` when well formed (1-128 of ``A-Za-z0-9._:-``), else ``generated`` (the
    request's proxy_id when it has one), else a fresh id."""
    sent = request.headers.get("X-Request-Id", "")
    if sent and _REQUEST_ID.match(sent):
        return sent
    return generated or "req_" + uuid.uuid4().hex
