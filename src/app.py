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

    from lib.protocols.responses_store import ResponseStore
    from src import errors as error_handlers
    from src.cors import finish_cors, init_cors, request_id
    from src.views import admin, chat, health, messages, openapi, pages, responses, usage, vendors

    error_handlers.register(app, svc.notify)
    for view in (chat, responses, messages, admin, health, usage, openapi, pages, vendors):
        app.register_blueprint(view.bp)
    app.extensions[responses.EXTENSION] = ResponseStore(svc.redis, prefix=settings.redis_prefix,
                                                        ttl_s=settings.log_retention_days * 86400)

    @app.before_request
    def _preflight() -> Response | None:
        # A CORS preflight carries no credentials: answer it before any blueprint's auth check runs.
        if request.method == "OPTIONS" and request.url_rule is not None and "Access-Control-Request-Method" in request.headers:
            return app.make_default_options_response()
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        ctx: RequestContext | None = g.get("aiproxy_ctx")
        finish_cors(request, response)
        if ctx is not None:
            ctx.request_id = ctx.request_id or request_id(request, ctx.proxy_id)
        response.headers["x-request-id"] = ctx.request_id if ctx is not None else request_id(request)
        if ctx is not None and ctx.logged:
            response.headers.setdefault("x-aiproxy-id", ctx.proxy_id)
            if not response.is_streamed:
                ctx.status = response.status_code
            # After the body is sent, so logging stays off the client's latency; idempotent for streams.
            response.call_on_close(lambda: svc.gateway.finish(ctx))
        return response

    init_cors(app, settings.cors_allowed_origins)  # after _finish: its hook must run first (Flask runs them in reverse)
    return app
