"""The app factory: builds the gateway's services once (``lib.services``) and wires Flask around them."""

from __future__ import annotations

from flask import Flask, Response, g, request

from lib.context import RequestContext
from lib.services import Services, build_services
from lib.settings import Settings


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the Flask app. ``settings`` defaults to ``Settings.from_env()``; ``services`` (built by
    ``lib.services.build_services``) may be given instead, e.g. with an ``httpx.MockTransport``.

    With no ``REDIS_URL`` a private Redis is started (and stopped at exit); in development and test a
    missing master key is generated and printed once.
    """
    svc = services or build_services(settings or Settings.from_env())
    settings = svc.settings
    app = Flask(__name__, static_folder=None)
    if settings.trust_proxy_headers:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Behind the ALB the client's address is the last X-Forwarded-For entry the ALB appended.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trust_proxy_headers, x_proto=1)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["aiproxy"] = svc

    from src import errors as error_handlers
    from src.views import admin, chat, health, pages, usage, vendors

    error_handlers.register(app, svc.notify)
    for view in (chat, admin, health, usage, pages, vendors):
        app.register_blueprint(view.bp)

    @app.after_request
    def _finish(response: Response) -> Response:
        ctx: RequestContext | None = g.get("aiproxy_ctx")
        if settings.cors_allowed_origins:
            origin = request.headers.get("Origin")
            if origin and (origin in settings.cors_allowed_origins or "*" in settings.cors_allowed_origins):
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Vary"] = "Origin"
                response.headers["Access-Control-Expose-Headers"] = "x-aiproxy-id, x-aiproxy-cache, Retry-After"
        if ctx is not None and ctx.logged:
            response.headers.setdefault("x-aiproxy-id", ctx.proxy_id)
            if not response.is_streamed:
                ctx.status = response.status_code
            # After the body is sent, so logging stays off the client's latency; idempotent for streams.
            response.call_on_close(lambda: svc.gateway.finish(ctx))
        return response

    return app
