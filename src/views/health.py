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
    return json_response(body)


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
