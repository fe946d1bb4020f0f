"""``GET /openapi.json``: the OpenAPI 3.1 description of every endpoint (``src.apispec``), open to anyone."""

from __future__ import annotations

from flask import Blueprint, Response

from lib import vendors
from src.apispec import spec_bytes
from src.http import services

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    body = spec_bytes(vendors_enabled=vendors.enabled(services().settings.environment))
    return Response(body, mimetype="application/json", headers={"Cache-Control": "public, max-age=300",
                                                                "X-Content-Type-Options": "nosniff"})
