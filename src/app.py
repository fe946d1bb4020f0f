"""The app factory: builds settings, Redis, providers and the gateway once, and wires the blueprints."""

from __future__ import annotations

import logging
from decimal import Decimal
import secrets
import sys
from dataclasses import dataclass
from typing import Any

import httpx
import redis
from flask import Flask, Response, g, request

from lib import store as redis_store
from lib.context import RequestContext
from lib.gateway import Gateway
from lib.keys import KeyStore
from lib.metrics import Metrics
from lib.providers import build_providers
from lib.providers.base import ProviderConfig
from lib.accounting import tokens
from lib.errors import ServiceUnavailable
from lib.accounting import Accounting
from lib.limits.auththrottle import AuthThrottle
from lib.cache.exact import ExactCache
from lib.cache.service import CacheService
from lib.policy import Policy
from lib.accounting.pricing import PriceBook
from lib.limits.quota import Quota
from lib.limits.ratelimit import Limiter
from lib.records.requestlog import RequestRecord, billing_line
from lib.router import Router
from lib.settings import Settings
from lib.records.usage import UsageStore

log = logging.getLogger("aiproxy")


@dataclass
class Services:
    """The collaborators every view uses, built once per app and kept in ``app.extensions['aiproxy']``."""

    settings: Settings
    redis: redis.Redis
    keys: KeyStore
    router: Router
    gateway: Gateway
    http: httpx.Client
    usage: UsageStore
    metrics: Metrics
    auth_throttle: AuthThrottle | None = None
    embedded_redis: Any = None

    def auth_throttle_check(self, ip: str) -> None:
        """Raise 429 when ``ip`` has failed authentication too often (fail-open: skipped if Redis is down)."""
        if self.auth_throttle is not None:
            try:
                self.auth_throttle.check(ip)
            except ServiceUnavailable:
                if self.settings.redis_failure_mode != "fail-open":
                    raise
                self.metrics.redis_degraded.labels("auth_throttle").inc()

    def auth_throttle_failure(self, ip: str) -> None:
        if self.auth_throttle is not None:
            try:
                self.auth_throttle.record_failure(ip)
            except ServiceUnavailable:
                log.error("could not record a failed authentication from %s: Redis unreachable", ip)


def configure_logging(level: str) -> None:
    """Plain one-line logs to stderr; billing lines go to stdout as JSON (see ``record``)."""
    root = logging.getLogger()
    if not any(getattr(h, "_aiproxy", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._aiproxy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def configure_error_reporting(settings: Settings) -> Any:
    """Honeybadger for unhandled exceptions and for ERROR/CRITICAL log lines; returns the notify function
    (or None when ``HONEYBADGER_API_KEY`` is unset). Notices carry no request bodies or keys."""
    if not settings.honeybadger_api_key:
        return None
    from honeybadger import Honeybadger
    from honeybadger.contrib.logger import HoneybadgerHandler

    options = {"api_key": settings.honeybadger_api_key, "environment": settings.environment,
               "force_report_data": True, "endpoint": settings.honeybadger_endpoint}
    reporter = Honeybadger()
    reporter.configure(**options)
    root = logging.getLogger()
    if not any(isinstance(h, HoneybadgerHandler) for h in root.handlers):
        handler = HoneybadgerHandler(settings.honeybadger_api_key)
        handler.honeybadger.configure(**options)
        handler.setLevel(logging.ERROR)
        root.addHandler(handler)
    return reporter.notify


def build_cache(settings: Settings, client: redis.Redis, metrics: Metrics) -> CacheService:
    """The exact cache, plus the semantic index when ``SEMANTIC_CACHE`` is on and its libraries import.

    Embeddings come from the machine's embedding server (``EMBED_SOCKET``, started by the gunicorn master)
    or, outside gunicorn, from an in-process model shared by every app in the process, run off the loop.
    """
    exact = ExactCache(client, prefix=settings.redis_prefix, ttl_s=settings.cache_ttl_seconds)
    on_error = lambda op: metrics.cache_errors.labels(op).inc()  # noqa: E731
    if not settings.semantic_cache:
        return CacheService(exact, on_error=on_error)
    try:
        from lib.cache.embed_server import RemoteEmbedder, local_embedder
        from lib.cache.offload import offload
        from lib.cache.semantic import MAX_TOKENS, SemanticIndex
    except ImportError as exc:  # the ML stack is optional: exact caching still works
        log.warning("semantic cache disabled: %s", exc)
        return CacheService(exact, on_error=on_error)
    if settings.embed_socket:
        embedder: Any = RemoteEmbedder(settings.embed_socket)
        embed, token_length = embedder.embed, embedder.token_length
    else:
        embedder = local_embedder()
        embed, token_length = offload(embedder.embed), offload(embedder.token_length)
    index = SemanticIndex(client, prefix=settings.redis_prefix, embedder=None,
                          threshold=settings.semantic_cache_threshold,
                          max_entries_per_scope=settings.semantic_cache_max_entries,
                          ttl_s=max(1, settings.cache_ttl_seconds))
    return CacheService(exact, semantic=index, embed=embed, token_length=token_length,
                        max_semantic_tokens=MAX_TOKENS, on_error=on_error)


def provider_configs(settings: Settings) -> dict[str, ProviderConfig]:
    return {
        "openai": ProviderConfig(api_keys=settings.openai_api_keys, base_url=settings.openai_base_url),
        "anthropic": ProviderConfig(api_keys=(settings.anthropic_api_key,) if settings.anthropic_api_key else (),
                                    base_url=settings.anthropic_base_url),
        "gemini": ProviderConfig(api_keys=(settings.gemini_api_key,) if settings.gemini_api_key else (),
                                 base_url=settings.gemini_base_url),
        "sandbox": ProviderConfig(),
    }


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def to_record(ctx: RequestContext) -> RequestRecord:
    """The request log record for a finished request."""
    return RequestRecord(
        proxy_id=ctx.proxy_id, created_at=ctx.started_wall, endpoint=ctx.endpoint, key_id=ctx.key_id,
        user_id=ctx.user_id, requested_model=ctx.requested_model, model=ctx.model, provider=ctx.provider,
        status=ctx.status, error_code=ctx.error_code, latency_ms=round(ctx.elapsed_ms(), 3),
        ttfb_ms=None if ctx.ttfb_ms is None else round(ctx.ttfb_ms, 3), stream=ctx.stream,
        prompt_tokens=ctx.prompt_tokens, completion_tokens=ctx.completion_tokens,
        cost_usd=_decimal(ctx.cost_usd), unpriced=ctx.unpriced, usage_source=ctx.usage_source, cache=ctx.cache,
        cache_similarity=ctx.cache_similarity, cache_entry=ctx.cache_entry, saved_tokens=ctx.saved_tokens,
        saved_cost_usd=_decimal(ctx.saved_cost_usd), client_disconnected=ctx.client_disconnected,
        request_body=ctx.request_body, response_body=ctx.response_body, error_message=ctx.error_message,
    )


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app. ``settings`` defaults to ``Settings.from_env()``.

    With no ``REDIS_URL`` a private Redis is started (and stopped at exit); in development and test a
    missing master key is generated and printed once.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    embedded = None
    if not settings.redis_url:
        embedded = redis_store.start_embedded_redis()
        settings = settings.model_copy(update={"redis_url": embedded.url})
    if not settings.master_key:
        generated = "sk-aip-master-" + secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"master_key": generated})
        print(f"AI Proxy: AIPROXY_MASTER_KEY is unset; generated a master key for this run: {generated}",
              file=sys.stderr, flush=True)
    assert settings.redis_url
    client = redis_store.connect(settings.redis_url)
    http = httpx.Client(
        timeout=httpx.Timeout(settings.request_timeout, connect=min(10.0, settings.request_timeout)),
        limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
        follow_redirects=False,
    )
    router = Router.load(settings.models_file)
    providers = build_providers(provider_configs(settings), http)
    tokens.preload()  # ~0.4 s once per worker, before traffic, instead of on the first request
    prices = PriceBook.load(settings.pricing_file, on_unpriced=lambda model: metrics.unpriced.labels(model).inc())
    accounting = Accounting(prices, default_max_output=settings.default_max_output_tokens)
    limiter = Limiter(client, prefix=settings.redis_prefix, window_s=settings.rate_limit_window_seconds)
    quota = Quota(limiter, accounting,
                  default_rpm=settings.rate_limit if settings.rate_limit_enabled else None,
                  fail_mode=settings.redis_failure_mode,
                  on_degraded=lambda exc: metrics.redis_degraded.labels("limits").inc())
    policy = Policy.from_sources(",".join(settings.banned_words) or None, settings.banned_words_file)
    metrics = Metrics()
    keys = KeyStore(client, prefix=settings.redis_prefix,
                    serve_stale_on_outage=settings.redis_failure_mode == "fail-open",
                    on_stale=lambda: metrics.redis_degraded.labels("auth").inc(),
                    fresh_for_s=settings.key_cache_seconds)

    usage = UsageStore(client, prefix=settings.redis_prefix, retention_days=settings.log_retention_days,
                       store_bodies=settings.log_bodies, max_body_chars=settings.log_body_max_chars,
                       on_error=lambda op, exc: metrics.usage_errors.labels(op).inc())

    def record(ctx: RequestContext) -> None:
        rec = to_record(ctx)
        print(billing_line(rec), flush=True)
        usage.record(rec)
        metrics.observe_request(ctx)

    cache = build_cache(settings, client, metrics)
    gateway = Gateway(settings=settings, router=router, providers=providers, recorder=record, cache=cache,
                      accounting=accounting, limits=quota, policy=policy if policy.rules else None)
    svc = Services(settings=settings, redis=client, keys=keys, router=router, gateway=gateway, http=http,
                   usage=usage, metrics=metrics, embedded_redis=embedded)
    if settings.auth_failures_per_minute:
        svc.auth_throttle = AuthThrottle(client, prefix=settings.redis_prefix,
                                         max_failures=settings.auth_failures_per_minute, window_s=60)

    app = Flask(__name__, static_folder=None)
    if settings.trust_proxy_headers:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Behind the ALB the client's address is the last X-Forwarded-For entry the ALB appended.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trust_proxy_headers, x_proto=1)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["aiproxy"] = svc

    from src import errors as error_handlers
    from src.views import admin, chat, health, usage as usage_views
    from src.views import pages, vendors as vendor_views

    notify = configure_error_reporting(settings)
    error_handlers.register(app, notify)
    app.register_blueprint(chat.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(usage_views.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(vendor_views.bp)

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
            response.call_on_close(lambda: gateway.finish(ctx))
        return response

    log.info("AI Proxy ready: environment=%s providers=%s redis=%s", settings.environment,
             ",".join(p for p in ("openai", "anthropic", "gemini") if settings.provider_configured(p)) or "sandbox only",
             settings.redacted()["redis_url"])
    return app
