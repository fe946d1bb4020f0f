"""``POST /vendor-{a,b,e,o}/messages``: the sandbox vendors (``lib.vendors``), open in development and test.

No key is needed. In production every vendor path answers ``404 not_found`` (the OpenAI envelope), whatever
the method, so the sandbox cannot be told apart from an unknown path. Two SDK-shaped aliases let the real
SDKs (and this proxy's own providers) talk to them: ``/vendor-o/chat/completions`` (OpenAI SDK with
``base_url=<host>/vendor-o``) and ``/vendor-a/v1/messages`` (Anthropic SDK with ``base_url=<host>/vendor-a``).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from lib import errors, vendors
from src.http import services

bp = Blueprint("vendors", __name__)

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _answer(vendor: str) -> Response:
    if not vendors.enabled(services().settings.environment):
        raise errors.NotFound(f"Unknown endpoint: {request.path}.", code="not_found")
    if request.method != "POST":
        abort(405, valid_methods=["POST"])
    svc = services()
    writer = vendors.model_writer(svc.vendor_models, svc.settings.request_timeout)
    reply = vendors.Vendors(writer=writer).handle(vendor, request.get_data(cache=False), request.headers)
    return Response(reply.body, status=reply.status, headers=reply.headers, mimetype=reply.mimetype)


@bp.route("/<any('vendor-a', 'vendor-b', 'vendor-e', 'vendor-o'):vendor>/messages", methods=_METHODS)
def messages(vendor: str) -> Response:
    return _answer(vendor)


@bp.route("/vendor-o/chat/completions", methods=_METHODS)
def vendor_o_sdk() -> Response:
    return _answer("vendor-o")


@bp.route("/vendor-a/v1/messages", methods=_METHODS)
def vendor_a_sdk() -> Response:
    return _answer("vendor-a")
