"""``GET /health`` (checks Redis) and ``GET /api/v1/health`` (liveness only)."""

from __future__ import annotations

from flask import Blueprint, Response

import lib
from lib import errors
from lib.store import store_errors
from src.http import json_response, require_master, services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    svc = services()
    body = {"status": "ok", "version": lib.__version__, "environment": svc.settings.environment, "redis": "ok"}
    try:
        with store_errors("health ping"):
            svc.redis.ping()
    except errors.StoreUnavailable:
        body.update(status="unavailable", redis="unreachable")
        return json_response(body, status=503)
    if svc.keys.store_lost():
        body.update(status="unavailable", redis="lost its data")
        return json_response(body, status=503)
    body["providers"] = provider_states(svc)
    return json_response(body)


def provider_states(svc) -> dict:
    """Per instance: its type, whether it can make calls, its upstream host, and which of its deployments are
    cooling down (seconds left). Never a key, a header or a path."""
    deployments = svc.router.deployments()
    cooling = svc.balancer.cooling([d.name for d in deployments], fresh=True) if svc.balancer and deployments else {}
    out = {}
    for name, provider in svc.providers.items():
        config = svc.settings.providers.get(name)
        out[name] = {"type": config.type if config is not None else name, "configured": bool(provider.configured()),
                     "host": config.host if config is not None else None,
                     "cooling": {d.name: cooling[d.name] for d in deployments if d.provider == name and d.name in cooling}}
    return out


@bp.get("/api/v1/health")
def health_v1() -> Response:
    svc = services()
    return json_response({"status": "ok", "version": lib.__version__, "environment": svc.settings.environment})


@bp.get("/metrics")
def metrics() -> Response:
    svc = services()
    if not svc.settings.metrics_public:
        require_master()
    body, content_type = svc.metrics.render()
    return Response(body, mimetype=content_type.split(";")[0], headers={"Content-Type": content_type})
