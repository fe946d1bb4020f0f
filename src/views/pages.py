"""The browser pages (the operator console): ``/`` (landing), ``/chat`` (playground), ``/docs`` (the API
reference, rendered from ``/openapi.json``, with try-it), ``/dashboard`` (spend and traffic), ``/keys`` (gateway
keys) and ``/logs`` (request logs), plus the HTML 404 page browsers get for an unknown page.

Server-rendered HTML with inline CSS and JS, and vendored libraries from ``/static/`` (``src/static/vendor``:
marked and DOMPurify for the playground's markdown); nothing is loaded from elsewhere. The one place the proxy
answers with HTML (API errors stay JSON). Every page carries a Content-Security-Policy whose script and style
sources are ``'self'`` plus a per-response nonce on the inline blocks, so injected markup cannot run. Keys
typed into the pages live in ``sessionStorage`` and go out only as ``Authorization: Bearer``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, render_template, send_from_directory

import lib
from lib import vendors
from src.http import services

bp = Blueprint("pages", __name__)

NAV = (("/", "Home"), ("/chat", "Chat"), ("/keys", "Keys"), ("/logs", "Logs"), ("/dashboard", "Dashboard"),
       ("/docs", "API docs"))
STATIC = Path(__file__).resolve().parent.parent / "static"


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


def _page(template: str, active: str, status: int = 200, **context: Any) -> Response:
    """Render ``template`` with the shared layout values and the security headers every page carries."""
    nonce = secrets.token_urlsafe(16)
    settings = services().settings
    html = render_template(template, nonce=nonce, nav=NAV, active=active, version=lib.__version__,
                           environment=settings.environment, **context)
    return Response(html, status=status, mimetype="text/html", headers={
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
    from src.apispec.catalogue import for_docs

    tags, schemes = for_docs(vendors_enabled=vendors.enabled(services().settings.environment))
    return _page("docs.html", "/docs", tags=tags, schemes=schemes)


@bp.get("/dashboard")
def dashboard() -> Response:
    return _page("dashboard.html", "/dashboard")


@bp.get("/keys")
def keys() -> Response:
    return _page("keys.html", "/keys")


@bp.get("/logs")
def logs() -> Response:
    return _page("logs.html", "/logs")


@bp.get("/static/<path:filename>")
def static(filename: str) -> Response:
    """Vendored assets (``src/static``); the pages ask for them with ``?v=<version>``, so they may be cached."""
    resp = send_from_directory(STATIC, filename, max_age=86400)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def not_found_page(path: str) -> Response:
    """The HTML 404 page, for a browser asking for a page that does not exist (``src.errors``)."""
    return _page("404.html", "", status=404, path=path)
