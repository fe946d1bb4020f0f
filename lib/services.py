"""Wiring without HTTP: ``build_services`` builds every collaborator of the gateway once, from settings.

``src.app.create_app`` calls it and then only wires Flask (blueprints, error handlers, extensions), as
flaskr's factory does. Tests call it directly with fakes: a Redis client, an ``httpx.Client`` over an
``httpx.MockTransport``, a clock.
"""

from __future__ import annotations

import logging
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from lib import errors, store
from lib.accounting import Accounting
from lib.accounting import tokens as token_tables
from lib.accounting.pricing import PriceBook
from lib.balancer import Balancer
from lib.cache.exact import ExactCache
from lib.cache.service import CacheService
from lib.gateway import Gateway
from lib.keys import KeyStore
from lib.limits.auththrottle import AuthThrottle
from lib.limits.quota import Quota
from lib.limits.ratelimit import Limiter
from lib.metrics import Metrics
from lib.observability import configure_error_reporting, configure_logging
from lib.policy import Policy
from lib.providers import REGISTRY, Provider, build_providers, transport
from lib.providers.registry import ProviderConfig
from lib.records.recorder import Recorder
from lib.records.spool import Spool, spool_dir_for
from lib.records.usage import UsageStore
from lib.router import Router
from lib.settings import Settings

log = logging.getLogger("aiproxy")


@dataclass
class Services:
    """The collaborators every view uses, built once per app (kept in ``app.extensions['aiproxy']``)."""

    settings: Settings
    redis: Any
    http: httpx.Client
    keys: KeyStore
    router: Router
    providers: dict[str, Provider]
    gateway: Gateway
    usage: UsageStore
    metrics: Metrics
    auth_throttle: AuthThrottle | None = None
    balancer: Balancer | None = None
    vendor_models: dict[str, ProviderConfig] = field(default_factory=dict)  # vendor → its local model
    notify: Callable[[BaseException], Any] | None = None
    embedded_redis: Any = None
    _owned_http: bool = field(default=False, repr=False)

    def auth_failed(self, ip: str, exc: errors.AuthenticationError) -> None:
        """A presented key did not check out. Raises 429 when ``ip`` keeps failing (its failing attempts are
        throttled, never its valid keys); otherwise returns and the caller answers ``exc`` (401)."""
        if self.auth_throttle is not None:
            try:
                self.auth_throttle.failed(ip)
            except errors.StoreUnavailable:
                log.error("could not record a failed authentication from %s: Redis unreachable", ip)

    def configured_providers(self) -> list[str]:
        """Names of the provider instances that have what they need to make calls (the sandbox excluded)."""
        return [name for name, provider in self.providers.items() if name != "sandbox" and provider.configured()]

    def close(self) -> None:
        """Release what ``build_services`` opened (HTTP pool it made, Redis pool, a private Redis)."""
        if self._owned_http:
            self.http.close()
        try:
            self.redis.close()
        except Exception:  # noqa: BLE001 - closing at exit must not raise
            log.debug("closing Redis raised", exc_info=True)
        if self.embedded_redis is not None:
            self.embedded_redis.stop()


def with_runtime_defaults(settings: Settings, *, start_redis: bool = True) -> tuple[Settings, Any]:
    """``settings`` with a Redis URL and a master key, starting a private Redis (when ``start_redis``) and
    generating a master key when they are unset (the latter outside production, printed once). Returns
    ``(settings, embedded)``; ``embedded`` is the private Redis (or ``None``), for the caller to stop."""
    embedded = None
    if start_redis and not settings.redis_url:
        embedded = store.start_embedded_redis()
        settings = settings.model_copy(update={"redis_url": embedded.url})
    if not settings.master_key and not settings.is_production:
        generated = "sk-aip-master-" + secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"master_key": generated})
        print(f"AI Proxy: AIPROXY_MASTER_KEY is unset; generated a master key for this run: {generated}",
              file=sys.stderr, flush=True)
    return settings, embedded


def build_cache(settings: Settings, client: Any, metrics: Metrics) -> CacheService:
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
    """``settings.providers`` with each local model's server socket (``LOCAL_MODEL_SOCKETS``, filled in by the
    gunicorn master) in its options."""
    from dataclasses import replace

    out = dict(settings.providers)
    for name, config in out.items():
        path = config.extra.get("path")
        if config.type == "local" and path and settings.local_model_sockets.get(str(path)):
            out[name] = replace(config, extra={**config.extra, "socket": settings.local_model_sockets[str(path)]})
    return out


def vendor_models(settings: Settings) -> dict[str, ProviderConfig]:
    """The sandbox vendors that answer with a local model (``VENDOR_A_MODEL_PATH`` / ``VENDOR_B_MODEL_PATH``)."""
    out: dict[str, ProviderConfig] = {}
    for vendor, path in (("vendor-a", settings.vendor_a_model_path), ("vendor-b", settings.vendor_b_model_path)):
        if path:
            extra: dict[str, Any] = {"path": path}
            if settings.local_model_sockets.get(path):
                extra["socket"] = settings.local_model_sockets[path]
            out[vendor] = ProviderConfig(name=vendor, type="local", extra=extra)
    return out


def _model_label(router: Router, prices: PriceBook) -> Callable[[str], str]:
    """Metric label for a model name: a name the router lists or the pricing entry it is priced as, else
    ``other`` (names routed by prefix are whatever a client sends; they must not grow the series)."""
    known = {name for route in router.listed() for name in (route.name, route.model)}

    def label(model: str) -> str:
        if model in known:
            return model
        price = prices.price_for(model)
        return price.model if price is not None else "other"

    return label


def build_services(settings: Settings, *, redis: Any = None, http: httpx.Client | None = None,
                   clock: Callable[[], float] | None = None) -> Services:
    """Build every collaborator from ``settings``. Returns the ``Services``.

    ``redis``: a client to use instead of connecting to ``REDIS_URL`` (with neither, a private Redis is
    started). ``http``: the ``httpx.Client`` providers call through (default: a pool sized by settings).
    ``clock``: wall-clock seconds for keys, limits and logs (default ``time.time``; limits then use Redis
    ``TIME``). Raises ``ValueError`` for a bad models or pricing file.
    """
    configure_logging(settings.log_level)
    settings, embedded = with_runtime_defaults(settings, start_redis=redis is None)
    if redis is None:
        assert settings.redis_url
        redis = store.connect(settings.redis_url, timeout=settings.redis_socket_timeout,
                              max_connections=settings.redis_max_connections,
                              breaker=store.Breaker(settings.redis_retry_after_seconds))
    owned_http = http is None
    if http is None:
        http = transport.client(timeout=settings.request_timeout, max_connections=settings.http_max_connections,
                                max_keepalive=settings.http_max_keepalive_connections,
                                transport=settings.http_transport)
    wall = clock or time.time
    providers = build_providers(provider_configs(settings), http)
    kinds = {name: REGISTRY.get(settings.providers[name].type if name in settings.providers else name)
             for name in providers}
    router = Router.load(settings.models_file, providers=kinds)
    token_tables.preload()  # ~0.4 s once per worker, before traffic, instead of on the first request
    metrics_ref: list[Metrics] = []
    prices = PriceBook.load(settings.pricing_file, on_unpriced=lambda model: metrics_ref[0].unpriced_model(model))
    metrics = Metrics(settings.prometheus_multiproc_dir, model_label=_model_label(router, prices))
    metrics_ref.append(metrics)
    accounting = Accounting(prices, default_max_output=settings.default_max_output_tokens)
    limiter = Limiter(redis, prefix=settings.redis_prefix, window_s=settings.rate_limit_window_seconds,
                      hold_ttl_s=settings.budget_hold_seconds, clock=clock)
    keys = KeyStore(redis, prefix=settings.redis_prefix, clock=wall,
                    serve_stale_on_outage=settings.redis_failure_mode == "fail-open",
                    stale_for_s=settings.key_cache_seconds,
                    on_stale=lambda: metrics.redis_degraded.labels("auth").inc())
    keys.observe()
    quota = Quota(limiter, accounting, keys,
                  default_rpm=settings.rate_limit if settings.rate_limit_enabled else None,
                  fail_mode=settings.redis_failure_mode,
                  on_degraded=lambda exc: metrics.redis_degraded.labels("limits").inc())
    policy = Policy.from_sources(",".join(settings.banned_words) or None, settings.banned_words_file)
    usage = UsageStore(redis, prefix=settings.redis_prefix, retention_days=settings.log_retention_days,
                       store_bodies=settings.log_bodies, max_body_chars=settings.log_body_max_chars, clock=wall,
                       on_error=lambda op, exc: metrics.usage_errors.labels(op).inc())
    spool = Spool(settings.spool_dir or spool_dir_for(settings.redis_url or "", settings.redis_prefix),
                  max_bytes=settings.spool_max_bytes, on_dropped=lambda kind: metrics.usage_errors.labels(kind).inc())
    recorder = Recorder(usage, metrics, spool=spool)
    quota.spool = spool
    spool.handlers = {"record": recorder.replay, "settle": quota.replay_settle, "charge": quota.replay_charge}
    spool.resume()
    balancer = Balancer(redis, prefix=settings.redis_prefix, default_s=settings.deployment_cooldown_seconds,
                        on_cooled=metrics.deployment_cooled)
    gateway = Gateway(settings=settings, router=router, providers=providers, recorder=recorder,
                      cache=build_cache(settings, redis, metrics), accounting=accounting, limits=quota, keys=keys,
                      policy=policy if policy.rules else None, on_upstream_error=metrics.upstream_failed,
                      balancer=balancer)
    throttle = None
    if settings.auth_failures_per_minute:
        throttle = AuthThrottle(redis, prefix=settings.redis_prefix, max_failures=settings.auth_failures_per_minute,
                                window_s=60)
    services = Services(settings=settings, redis=redis, http=http, keys=keys, router=router, providers=providers,
                        gateway=gateway, usage=usage, metrics=metrics, auth_throttle=throttle, balancer=balancer,
                        vendor_models=vendor_models(settings),
                        notify=configure_error_reporting(settings), embedded_redis=embedded, _owned_http=owned_http)
    log.info("AI Proxy ready: environment=%s providers=%s redis=%s", settings.environment,
             ",".join(services.configured_providers()) or "sandbox only", settings.redacted()["redis_url"])
    return services
