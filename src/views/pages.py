"""The browser pages: ``/`` (landing), ``/chat`` (playground), ``/docs`` (API reference with try-it) and
``/dashboard`` (usage). Server-rendered HTML with inline CSS and JS only, nothing loaded from elsewhere.

The one place the proxy answers with HTML (API errors stay JSON). Every page carries a Content-Security-Policy
whose script and style sources are ``'self'`` plus a per-response nonce on the inline blocks, so injected
markup cannot run. Keys typed into the pages live in ``sessionStorage`` and go out only as
``Authorization: Bearer``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import Blueprint, Response, render_template

import lib
from lib import vendors
from src.http import services

bp = Blueprint("pages", __name__)

NAV = (("/", "Home"), ("/chat", "Chat"), ("/docs", "API docs"), ("/dashboard", "Dashboard"))

_CHAT_BODY = {"model": "sandbox", "messages": [{"role": "system", "content": "You are concise."},
                                               {"role": "user", "content": "Say hello in five words."}],
              "max_tokens": 64}

# The try-it catalogue of /docs: one entry per endpoint in API.md. ``auth``: key | master | open | either.
ENDPOINTS: tuple[dict[str, Any], ...] = (
    {"id": "chat", "group": "Client", "method": "POST", "path": "/v1/chat/completions", "auth": "key",
     "title": "Chat completions",
     "desc": "OpenAI chat completions (alias POST /api/proxy). \"stream\": true answers as server-sent events. "
             "A plain \"text\" string may replace \"messages\". Headers: x-aiproxy-id, x-aiproxy-cache, "
             "x-aiproxy-provider, x-ratelimit-*.",
     "body": _CHAT_BODY},
    {"id": "models", "group": "Client", "method": "GET", "path": "/v1/models", "auth": "key",
     "title": "List models", "desc": "The models this key may use (GET /v1/models/<id> reads one)."},
    {"id": "embeddings", "group": "Client", "method": "POST", "path": "/v1/embeddings", "auth": "key",
     "title": "Embeddings",
     "desc": "OpenAI embeddings, passed to the provider; sandbox-embedding gives deterministic vectors offline.",
     "body": {"model": "sandbox-embedding", "input": ["first text", "second text"], "dimensions": 8}},
    {"id": "webhook", "group": "Client", "method": "POST", "path": "/api/v1/webhook", "auth": "key",
     "title": "Webhook (spreadsheet clients)",
     "desc": "{prompt, source?, language?, type?} → {summary, processing_time}. Types: summary, keywords, "
             "sentiment, entities, translation, custom.",
     "body": {"prompt": "AI Proxy routes, limits, caches and logs LLM requests for many clients.",
              "type": "summary", "source": "docs"}},
    {"id": "logs", "group": "Client", "method": "GET", "path": "/api/logs/PROXY_ID", "auth": "either",
     "title": "Request log",
     "desc": "The stored log of one request, by the proxy_id a chat answer returned (owner's key or master). "
             "Replace PROXY_ID in the path."},
    {"id": "usage", "group": "Client", "method": "GET", "path": "/api/usage", "auth": "key",
     "title": "My usage",
     "desc": "The caller's own usage: totals, by_day, by_model, by_provider. Query: start, end (YYYY-MM-DD), "
             "model."},
    {"id": "keys-create", "group": "Admin", "method": "POST", "path": "/admin/keys", "auth": "master",
     "title": "Issue a key",
     "desc": "Issue a gateway key (shown once). The playground and dashboard pick it up automatically here.",
     "body": {"user_id": "alice", "name": "playground", "rpm": 60, "budget_usd": "5.00",
              "budget_period": "monthly"}},
    {"id": "keys-list", "group": "Admin", "method": "GET", "path": "/admin/keys", "auth": "master",
     "title": "List keys", "desc": "Every key record (never the key itself; key_hint shows its ends)."},
    {"id": "keys-get", "group": "Admin", "method": "GET", "path": "/admin/keys/KEY_ID", "auth": "master",
     "title": "Read a key", "desc": "One key record. Replace KEY_ID in the path."},
    {"id": "keys-patch", "group": "Admin", "method": "PATCH", "path": "/admin/keys/KEY_ID", "auth": "master",
     "title": "Change a key", "desc": "Change active, name, models, limits, budget, expiry (null clears a limit).",
     "body": {"active": True, "rpm": 120, "tpm": None}},
    {"id": "keys-delete", "group": "Admin", "method": "DELETE", "path": "/admin/keys/KEY_ID", "auth": "master",
     "title": "Revoke a key", "desc": "Revoke: the key stops working at once; its usage keeps its owner."},
    {"id": "admin-usage", "group": "Admin", "method": "GET", "path": "/admin/usage", "auth": "master",
     "title": "Usage across keys",
     "desc": "Usage of every key, with by_key. Query: key_id (comma-separated), user_id, model, provider, "
             "start, end."},
    {"id": "health", "group": "Operations", "method": "GET", "path": "/health", "auth": "open",
     "title": "Health (with Redis)", "desc": "{status, version, environment, redis}; 503 when Redis is unreachable."},
    {"id": "health-v1", "group": "Operations", "method": "GET", "path": "/api/v1/health", "auth": "open",
     "title": "Liveness", "desc": "{status, version, environment}, no dependency checked."},
    {"id": "metrics", "group": "Operations", "method": "GET", "path": "/metrics", "auth": "either",
     "title": "Prometheus metrics", "desc": "Open in development, master key in production. Plain text."},
)

_VENDOR_BODY = {"messages": [{"role": "user", "content": "Hello vendor"}], "max_tokens": 32}
VENDOR_ENDPOINTS: tuple[dict[str, Any], ...] = tuple(
    {"id": name, "group": "Sandbox vendors (development and test only)", "method": "POST",
     "path": f"/{name}/messages", "auth": "open", "title": f"{name} — {shape}",
     "desc": f"{shape}. Simulate failures with the X-Simulate header or \"simulate\": error, rate_limit, "
             "timeout, overloaded, bad_json; \"delay\" (≤ 5 s), \"failure_rate\" (0–1, seeded by the request).",
     "body": {**_VENDOR_BODY, "simulate": simulate} if simulate else _VENDOR_BODY}
    for name, shape, simulate in (
        ("vendor-o", "OpenAI chat.completion shape", None),
        ("vendor-a", "Anthropic Messages shape", "overloaded"),
        ("vendor-b", "simple {id, output.text, usage, latency_ms} shape", None),
        ("vendor-e", "enterprise {status, data.result, meta} envelope", "rate_limit"),
    )
)


def _csp(nonce: str) -> str:
    return "; ".join((
        "default-src 'self'",
        f"script-src 'self' 'nonce-{nonce}'",
        f"style-src 'self' 'nonce-{nonce}'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


def _page(template: str, active: str, **context: Any) -> Response:
    """Render ``template`` with the shared layout values and the security headers every page carries."""
    nonce = secrets.token_urlsafe(16)
    settings = services().settings
    html = render_template(template, nonce=nonce, nav=NAV, active=active, version=lib.__version__,
                           environment=settings.environment, **context)
    return Response(html, mimetype="text/html", headers={
        "Content-Security-Policy": _csp(nonce),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    })


_FAVICON = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='8' "
            "fill='#4f46e5'/><path d='M9 23 16 8l7 15M12 18h8' stroke='white' stroke-width='3' fill='none' "
            "stroke-linecap='round' stroke-linejoin='round'/></svg>")


@bp.get("/favicon.svg")
def favicon() -> Response:
    return Response(_FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "public, max-age=86400",
                                                                 "X-Content-Type-Options": "nosniff"})


@bp.get("/")
def index() -> Response:
    return _page("index.html", "/", vendors_enabled=vendors.enabled(services().settings.environment))


@bp.get("/chat")
def chat() -> Response:
    return _page("chat.html", "/chat")


@bp.get("/docs")
def docs() -> Response:
    catalogue = list(ENDPOINTS)
    if vendors.enabled(services().settings.environment):
        catalogue += VENDOR_ENDPOINTS
    # Serialized here, in the catalogue's order (Jinja's tojson would sort the keys).
    catalogue = [{**ep, "body_text": json.dumps(ep["body"], indent=2, ensure_ascii=False) if ep.get("body") else ""}
                 for ep in catalogue]
    return _page("docs.html", "/docs", endpoints=catalogue)


@bp.get("/dashboard")
def dashboard() -> Response:
    return _page("dashboard.html", "/dashboard")
