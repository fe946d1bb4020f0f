"""Prometheus metrics (``prometheus-client``), multi-process safe under gunicorn.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``bin/start.sh`` sets it for gunicorn's workers; the setting
``prometheus_multiproc_dir`` carries it here) every worker writes its samples to that directory and
``/metrics`` aggregates them; otherwise a private in-process registry is used (tests). Metric objects are
created once per app by ``Metrics(...)``.

Label values are bounded: a ``model`` label is passed through ``model_label`` (the gateway maps names it
does not know — anything a client can make up and a prefix route accepts — to ``other``), so a client cannot
grow the time series without bound. A ``deployment`` label (``instance/model`` of a load-balanced route) only
ever holds names the models file declares.
"""

from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The gateway's metrics. One instance per app; a private registry unless running multi-process."""

    def __init__(self, multiprocess_dir: str | None = None,
                 model_label: Callable[[str], str] | None = None) -> None:
        self.multiprocess = bool(multiprocess_dir)
        self._model_label = model_label or (lambda name: name)
        # In multi-process mode samples go to files; a private registry keeps tests' apps independent.
        self.registry = None if self.multiprocess else CollectorRegistry()
        kw: dict[str, Any] = {} if self.multiprocess else {"registry": self.registry}
        self.requests = Counter("aiproxy_requests_total", "Requests by endpoint, status, provider and cache result",
                                ["endpoint", "status", "provider", "cache"], **kw)
        self.latency = Histogram("aiproxy_request_seconds", "Request latency (to the last byte)",
                                 ["endpoint", "provider"], buckets=_LATENCY_BUCKETS, **kw)
        self.ttfb = Histogram("aiproxy_time_to_first_byte_seconds", "Time to the first byte of the answer",
                              ["provider"], buckets=_LATENCY_BUCKETS, **kw)
        self.tokens = Counter("aiproxy_tokens_total", "Tokens by direction and model", ["direction", "model"], **kw)
        self.cost = Counter("aiproxy_cost_usd_total", "Priced cost in USD by model", ["model"], **kw)
        self.unpriced = Counter("aiproxy_unpriced_requests_total", "Requests for models with no price", ["model"], **kw)
        self.redis_degraded = Counter("aiproxy_redis_degraded_total",
                                      "Requests served without rate-limit/budget checks because Redis failed "
                                      "(fail-open)", ["operation"], **kw)
        self.cache_errors = Counter("aiproxy_cache_errors_total", "Cache operations that failed and were bypassed",
                                    ["operation"], **kw)
        self.usage_errors = Counter("aiproxy_usage_record_errors_total", "Request log/usage writes that failed",
                                    ["operation"], **kw)
        self.upstream_errors = Counter("aiproxy_upstream_errors_total", "Failed upstream attempts",
                                       ["provider", "code"], **kw)
        self.deployment_requests = Counter("aiproxy_deployment_requests_total",
                                           "Requests answered by each load-balanced deployment, by status",
                                           ["deployment", "status"], **kw)
        self.deployment_cooldowns = Counter("aiproxy_deployment_cooldowns_total",
                                            "Deployments cooled down after a failure, by reason",
                                            ["deployment", "reason"], **kw)

    def observe_request(self, ctx: Any) -> None:
        """Count one finished request from its ``RequestContext``."""
        provider = ctx.provider or "-"
        self.requests.labels(ctx.endpoint, str(ctx.status), provider, ctx.cache or "-").inc()
        self.latency.labels(ctx.endpoint, provider).observe(ctx.elapsed_ms() / 1000.0)
        if ctx.ttfb_ms is not None:
            self.ttfb.labels(provider).observe(ctx.ttfb_ms / 1000.0)
        if getattr(ctx, "deployment", None):
            self.deployment_requests.labels(ctx.deployment, str(ctx.status)).inc()
        model = self._model_label(ctx.model) if ctx.model else "-"
        if ctx.prompt_tokens:
            self.tokens.labels("input", model).inc(ctx.prompt_tokens)
        if ctx.completion_tokens:
            self.tokens.labels("output", model).inc(ctx.completion_tokens)
        if ctx.cost_usd:
            self.cost.labels(model).inc(float(ctx.cost_usd))

    def unpriced_model(self, model: str) -> None:
        """Count one cost asked for a model with no price (the price book's ``on_unpriced`` hook)."""
        self.unpriced.labels(self._model_label(model)).inc()

    def upstream_failed(self, provider: str, code: str) -> None:
        """Count one failed upstream attempt (fallbacks and key rotation included)."""
        self.upstream_errors.labels(provider, code).inc()

    def deployment_cooled(self, deployment: str, reason: str) -> None:
        """Count one cool-down (the balancer's ``on_cooled`` hook); ``reason`` is ``<status> <code>``."""
        self.deployment_cooldowns.labels(deployment, reason).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self.registry is not None
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
