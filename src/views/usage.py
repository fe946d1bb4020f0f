"""Request logs (``/api/logs``, ``/api/logs/<proxy_id>``, ``/admin/logs``) and usage (``/api/usage``, ``/admin/usage``):
the caller's own with a gateway key, every key's with the master key."""

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


def _page(key_id: str | None) -> Response:
    from lib.records.logs import LogFilter, list_logs

    try:
        limit = int(request.args.get("limit") or 50)
    except ValueError:
        raise errors.InvalidValue("'limit' must be a number.", param="limit") from None
    records, cursor = list_logs(services().usage, key_id=key_id, where=LogFilter.from_query(request.args),
                                limit=limit, cursor=request.args.get("cursor") or None)
    data = [{"object": "request_log", **{k: v for k, v in r.to_dict().items() if not k.endswith("_body")}}
            for r in records]
    return json_response({"object": "list", "data": data, "next_cursor": cursor, "has_more": cursor is not None})


@bp.get("/api/logs")
def my_logs() -> Response:
    """The caller's own recent request logs, newest first (bodies left out: read one log for them)."""
    ctx = context("logs")
    authenticate(ctx)
    return _page(ctx.key_id)


@bp.get("/admin/logs")
def admin_logs() -> Response:
    """Every key's recent request logs (``key_id`` narrows to one key)."""
    context("admin")
    require_master()
    return _page(request.args.get("key_id") or None)


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
