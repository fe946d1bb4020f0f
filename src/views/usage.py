"""``GET /api/logs/<proxy_id>``, ``GET /api/usage`` (the caller's own) and ``GET /admin/usage`` (all keys)."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, Response, request

from lib import errors
from src.http import authenticate, context, json_response, require_master, services

bp = Blueprint("usage", __name__)


def _date(name: str) -> date | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise errors.InvalidValue(f"'{name}' must be a date as YYYY-MM-DD.", param=name) from None


@bp.get("/api/logs/<proxy_id>")
def get_log(proxy_id: str) -> Response:
    svc = services()
    ctx = context("logs")
    authenticate(ctx, allow_master=True)
    record = svc.usage.get_log(proxy_id, key_id=None if ctx.is_master else ctx.key_id)
    if record is None:
        raise errors.LogNotFound(f"No request log with id '{proxy_id[:64]}' for this key.", param="proxy_id")
    return json_response({"object": "request_log", **record.to_dict()})


@bp.get("/api/usage")
def my_usage() -> Response:
    svc = services()
    ctx = context("usage")
    authenticate(ctx)
    assert ctx.key is not None
    data = svc.usage.usage(key_ids=[ctx.key.id], model=request.args.get("model") or None,
                           start=_date("start"), end=_date("end"))
    data.pop("by_key", None)
    return json_response({"object": "usage", "key_id": ctx.key.id, "user_id": ctx.key.user_id, **data})


@bp.get("/admin/usage")
def admin_usage() -> Response:
    context("admin")
    require_master()
    svc = services()
    args: dict[str, Any] = {
        "key_ids": [k for k in request.args.get("key_id", "").split(",") if k] or None,
        "user_id": request.args.get("user_id") or None,
        "model": request.args.get("model") or None,
        "provider": request.args.get("provider") or None,
        "start": _date("start"),
        "end": _date("end"),
    }
    return json_response({"object": "usage", **svc.usage.usage(**args)})
