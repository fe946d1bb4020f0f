"""What ``/docs`` renders from the OpenAPI document: its operations by tag, each with its auth, parameters,
request examples and responses, as plain values for the template (the page's script reads the schemas
themselves from ``/openapi.json`` when they are opened)."""

from __future__ import annotations

import json
import re
from typing import Any

from markupsafe import Markup, escape

REF = "#/components/schemas/"
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline_md(text: str | None) -> Markup:
    """``text`` escaped, then its `code` and **bold** spans marked up (nothing else: no raw HTML gets through)."""
    html = str(escape(text or ""))
    html = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html)
    return Markup(_BOLD.sub(lambda m: f"<b>{m.group(1)}</b>", html))


def auth_of(security: list[dict[str, Any]]) -> str:
    """``key``, ``master``, ``either``, ``open`` or ``open-or-master`` for an operation's security list."""
    names = {name for req in security for name in req}
    if not security:
        return "open"
    if {} in security:
        return "open-or-master" if "masterKey" in names else "open"
    if names == {"masterKey"}:
        return "master"
    return "either" if "masterKey" in names else "key"


def schema_names(schema: dict[str, Any] | None) -> list[str]:
    """The component names a media type's schema refers to directly (``$ref``, or each of an anyOf/allOf)."""
    if not schema:
        return []
    if "$ref" in schema:
        return [schema["$ref"][len(REF):]]
    out = []
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            out.extend(schema_names(sub))
    return out


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    return str(schema.get("type", "string")) + (f" ({schema['format']})" if schema.get("format") else "")


def _operation(path: str, method: str, op: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False), "type": _type(p.get("schema", {})),
               "description": inline_md(p.get("description")), "example": p.get("example")}
              for p in op.get("parameters", [])]
    body = None
    if "requestBody" in op:
        media = op["requestBody"]["content"]["application/json"]
        examples = dict(media.get("examples", {}))
        if "example" in media:
            examples = {"example": {"value": media["example"]}, **examples}
        body = {"schemas": schema_names(media["schema"]),
                "examples": [(name, json.dumps(ex["value"], indent=2, ensure_ascii=False)) for name, ex in examples.items()]}
    responses = []
    for status, resp in op["responses"].items():
        if "$ref" in resp:  # a shared error response: its description and the error envelope's schema
            resp = shared[resp["$ref"].rsplit("/", 1)[-1]]
        media = [{"type": mt, "schemas": schema_names(m.get("schema")), "example": "example" in m}
                 for mt, m in resp.get("content", {}).items()]
        responses.append({"status": status, "description": inline_md(resp.get("description")), "media": media})
    return {"id": op["operationId"], "method": method.upper(), "path": path, "summary": op["summary"],
            "description": inline_md(op.get("description")), "auth": auth_of(op.get("security", [])),
            "params": params, "body": body, "responses": responses,
            "try": op["tags"][0] != "Browser pages"}


def catalogue(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The spec's tags in order, each with its operations (in the order of ``paths``)."""
    tags = [{"name": t["name"], "slug": re.sub(r"[^a-z0-9]+", "-", t["name"].lower()).strip("-"),
             "description": t.get("description", ""), "ops": []} for t in spec["tags"]]
    by_name = {t["name"]: t for t in tags}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            by_name[op["tags"][0]]["ops"].append(_operation(path, method, op, spec["components"]["responses"]))
    return [t for t in tags if t["ops"]]


_CACHE: dict[bool, tuple[list[dict[str, Any]], dict[str, Any]]] = {}


def for_docs(*, vendors_enabled: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(catalogue, security schemes)`` of the served document, built once per process and flag."""
    if vendors_enabled not in _CACHE:
        from src.apispec import spec

        doc = spec(vendors_enabled=vendors_enabled)
        _CACHE[vendors_enabled] = (catalogue(doc), doc["components"]["securitySchemes"])
    return _CACHE[vendors_enabled]
