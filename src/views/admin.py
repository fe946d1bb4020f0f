"""``/admin/keys``: issue, list, read, change and revoke gateway keys (master key only)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from src.http import context, json_response, read_json, require_master, services

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _master_only() -> None:
    context("admin")
    require_master()


@bp.post("/keys")
def create_key() -> Response:
    record, plain = services().keys.create(read_json(request))
    return json_response({**record.public(), "key": plain}, status=201)


def _with_spend(record) -> dict:  # noqa: ANN001 - a KeyRecord
    """The admin view of a key, with its budget's current period (spent, held by requests in flight)."""
    return {**record.public(), "spend": services().gateway.limits.spend(record)}


@bp.get("/keys")
def list_keys() -> Response:
    records = services().keys.list()
    return json_response({"object": "list", "data": [_with_spend(r) for r in records]})


@bp.get("/keys/<key_id>")
def get_key(key_id: str) -> Response:
    return json_response(_with_spend(services().keys.require(key_id)))


@bp.patch("/keys/<key_id>")
def update_key(key_id: str) -> Response:
    return json_response(services().keys.update(key_id, read_json(request)).public())


@bp.delete("/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    record = services().keys.revoke(key_id)
    return json_response({"id": record.id, "object": "api_key", "deleted": True, "revoked": True})
