"""``/openapi.json``: the OpenAPI 3.1 description of every endpoint, built from the models that validate requests.

Components come from three places, each in its own namespace so names never collide:

- the request models themselves (``lib.protocols.chat`` / ``embeddings``, ``lib.keys``): ``Model.model_json_schema``
  output, unprefixed; ``lib.protocols.responses`` under ``Responses.``, ``lib.protocols.messages`` under
  ``Anthropic.`` (OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic writes);
- OpenAI's own response schemas, vendored from openai/openai-openapi (MIT, ``openai-openapi.LICENSE``), under
  ``OpenAI.``: the same file the conformance tests validate real answers against;
- the gateway's own response shapes (``src.apispec.models``), unprefixed.

The path table is ``src.apispec.paths``. The document is built once per app (``spec_for``) and served as is.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import lib
from lib.keys import KeyCreate, KeyPatch
from lib.protocols.chat import ChatCompletionRequest
from lib.protocols.embeddings import EmbeddingRequest
from lib.protocols.messages import CountTokensRequest, MessagesRequest
from lib.protocols.responses import ResponsesRequest
from src.apispec.models import RESPONSE_MODELS

HERE = Path(__file__).resolve().parent
OPENAI_SCHEMAS = HERE / "openai-schemas.json"
REF = "#/components/schemas/"

#: (namespace prefix, models): the request models validate requests; RESPONSE_MODELS describe answers.
GROUPS: tuple[tuple[str, tuple[type[BaseModel], ...]], ...] = (
    ("", (ChatCompletionRequest, EmbeddingRequest, KeyCreate, KeyPatch, *RESPONSE_MODELS)),
    ("Responses.", (ResponsesRequest,)),
    ("Anthropic.", (MessagesRequest, CountTokensRequest)),
)

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "gatewayKey": {"type": "http", "scheme": "bearer", "bearerFormat": "sk-aip-<id>-<secret>",
                   "description": "A gateway key issued by POST /admin/keys, as `Authorization: Bearer <key>` "
                                  "(what the OpenAI SDKs send)."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "The gateway key as `X-API-Key` (what the Anthropic SDK sends)."},
    "apiTokenHeader": {"type": "apiKey", "in": "header", "name": "X-API-Token",
                       "description": "The gateway key as `X-API-Token`."},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key",
                    "description": "The gateway key in the query string (`api_key` or `api_token`), for "
                                   "spreadsheet clients. The least safe: query strings end up in logs."},
    "masterKey": {"type": "http", "scheme": "bearer",
                  "description": "The master key (AIPROXY_MASTER_KEY) for /admin/*: printed once at start-up "
                                 "in development when unset."},
}


def _namespaced(prefix: str, models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """The JSON Schemas of ``models`` and everything they use, as components named ``prefix + name``."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF + prefix + "{model}")
    defs = {prefix + name: schema for name, schema in top.get("$defs", {}).items()}
    clashing = [name for name in defs if "__" in name]
    if clashing:  # two models of one name in one namespace: give one of them a namespace of its own
        raise ValueError(f"component names clash in namespace {prefix!r}: {clashing}")
    return defs


def _openai_schemas() -> dict[str, Any]:
    """OpenAI's schemas under ``OpenAI.``, their references rewritten to match, as JSON Schema 2020-12 (what
    OpenAPI 3.1 means): ``nullable: true`` as a type admitting null (as the conformance tests read it), draft
    2019-09's ``$recursiveRef: "#"`` as a reference to the component itself; ``x-oaiMeta`` left out."""
    raw = json.loads(OPENAI_SCHEMAS.read_text(encoding="utf-8"))["components"]["schemas"]

    def rewrite(node: Any, own: str) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key in ("x-oaiMeta", "$recursiveAnchor"):
                    continue
                if key == "$recursiveRef" and value == "#":
                    key, value = "$ref", REF + own
                elif key == "$ref" and isinstance(value, str) and value.startswith(REF):
                    value = REF + "OpenAI." + value[len(REF):]
                out[key] = rewrite(value, own)
            if out.pop("nullable", False) is True:  # OpenAPI 3.0's spelling, left in a few places
                if isinstance(out.get("type"), str):
                    out["type"] = [out["type"], "null"]
                    if "enum" in out and None not in out["enum"]:
                        out["enum"] = [*out["enum"], None]
                else:
                    return {"anyOf": [out, {"type": "null"}]}
            return out
        if isinstance(node, list):
            return [rewrite(v, own) for v in node]
        return node

    return {"OpenAI." + name: rewrite(schema, "OpenAI." + name) for name, schema in raw.items()}


@lru_cache(maxsize=1)
def components_schemas() -> dict[str, Any]:
    """Every component schema, by name (built once per process; treat as read-only)."""
    schemas: dict[str, Any] = {}
    for prefix, models in GROUPS:
        schemas.update(_namespaced(prefix, models))
    schemas.update(_openai_schemas())
    return dict(sorted(schemas.items()))


def build_spec(*, vendors_enabled: bool) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document. ``vendors_enabled``: include the sandbox vendors (development, test)."""
    from src.apispec import paths

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Proxy",
            "version": lib.__version__,
            "summary": "A self-hosted, OpenAI-compatible LLM gateway.",
            "description": paths.INFO_DESCRIPTION,
            "license": {"name": "Proprietary"},
        },
        "servers": [{"url": "/", "description": "This gateway"}],
        "tags": paths.tags(vendors_enabled),
        "security": [{"gatewayKey": []}],
        "paths": paths.paths(vendors_enabled),
        "components": {
            "schemas": components_schemas(),
            "securitySchemes": SECURITY_SCHEMES,
            "responses": paths.ERROR_RESPONSES,
            "headers": paths.HEADERS,
        },
    }


_SPECS: dict[bool, dict[str, Any]] = {}
_BYTES: dict[bool, bytes] = {}


def spec(*, vendors_enabled: bool) -> dict[str, Any]:
    """``build_spec``, built once per process and flag (treat as read-only)."""
    if vendors_enabled not in _SPECS:
        _SPECS[vendors_enabled] = build_spec(vendors_enabled=vendors_enabled)
    return _SPECS[vendors_enabled]


def spec_bytes(*, vendors_enabled: bool) -> bytes:
    """``spec`` as compact JSON, serialised once per process and flag."""
    if vendors_enabled not in _BYTES:
        _BYTES[vendors_enabled] = json.dumps(spec(vendors_enabled=vendors_enabled), ensure_ascii=False,
                                             separators=(",", ":")).encode()
    return _BYTES[vendors_enabled]
