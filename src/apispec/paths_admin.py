"""The admin, operations, sandbox-vendor and browser-page operations of ``/openapi.json`` (see ``paths``)."""

from __future__ import annotations

from typing import Any

from src.apispec.paths import EXAMPLES, MASTER, OPEN, _errors, _json, _LOG_FILTERS, _op, _param, _USAGE_RANGE, ref

_KEY_ID = _param("key_id", "path", "The key's id (the 16 hex characters after sk-aip-).", example="cdf434214a7f0b9a")


def admin_paths() -> dict[str, Any]:
    key = EXAMPLES["key"]
    return {
        "/admin/keys": {
            "post": _op("createKey", "Admin: keys", "Issue a key",
                        "Issue a gateway key. The answer holds `key`, shown this once (only its hash is kept). "
                        "Unknown fields are `400 unknown_parameter`.", MASTER,
                        body=_json(ref("KeyCreate"), EXAMPLES["key_create"]), status="201",
                        ok={"description": "The key record and the plain key.",
                            "content": _json(ref("ApiKeyCreated"), {**{k: v for k, v in key.items() if k != "spend"},
                                                                     "key": EXAMPLES["plain_key"]})},
                        errors=_errors("BadRequest", "Unauthorized")),
            "get": _op("listKeys", "Admin: keys", "List keys",
                       "Every key, newest first, with its budget period's spend (never the key itself).", MASTER,
                       ok={"description": "The keys.", "content": _json(ref("ApiKeyList"),
                                                                        {"object": "list", "data": [key]})},
                       errors=_errors("Unauthorized")),
        },
        "/admin/keys/{key_id}": {
            "get": _op("getKey", "Admin: keys", "Read a key", "One key record, with its budget period's spend.",
                       MASTER, params=(_KEY_ID,),
                       ok={"description": "The key.", "content": _json(ref("ApiKeyWithSpend"), key)},
                       errors=_errors("Unauthorized", "NotFound")),
            "patch": _op("updateKey", "Admin: keys", "Change a key",
                         "Change `active`, name, models, limits, budget, expiry, cache settings; only the fields "
                         "given change, `null` clears a limit. Takes effect on the next request everywhere.",
                         MASTER, params=(_KEY_ID,), body=_json(ref("KeyPatch"), {"active": False, "rpm": 120,
                                                                                  "tpm": None}),
                         ok={"description": "The new record.", "content": _json(ref("ApiKey"), {
                             k: v for k, v in key.items() if k != "spend"})},
                         errors=_errors("BadRequest", "Unauthorized", "NotFound")),
            "delete": _op("revokeKey", "Admin: keys", "Revoke a key",
                          "Revoke for good: the key stops working at once (401); it stays listed, marked revoked, "
                          "so its usage keeps an owner.", MASTER, params=(_KEY_ID,),
                          ok={"description": "Revoked.", "content": _json(ref("ApiKeyDeleted"), {
                              "id": key["id"], "object": "api_key", "deleted": True, "revoked": True})},
                          errors=_errors("Unauthorized", "NotFound")),
        },
        "/admin/logs": {"get": _op(
            "listLogs", "Admin: logs and usage", "List request logs (every key)",
            "Recent request logs across keys, newest first; `key_id` and `user_id` narrow them.", MASTER,
            params=(_param("key_id", "query", "Only this key."), _param("user_id", "query", "Only this user."),
                    *_LOG_FILTERS),
            ok={"description": "A page of logs.", "content": _json(ref("RequestLogList"), EXAMPLES["log_list"])},
            errors=_errors("BadRequest", "Unauthorized"))},
        "/admin/usage": {"get": _op(
            "getUsage", "Admin: logs and usage", "Usage across keys",
            "Usage of every key (or those asked for): totals, by day, model (answering and asked for), provider "
            "and key, with cache savings and latency p50/p95.", MASTER,
            params=(_param("key_id", "query", "Comma-separated key ids."), _param("user_id", "query", "Only this user."),
                    _param("provider", "query", "Only this provider."), *_USAGE_RANGE),
            ok={"description": "The report.", "content": _json(ref("UsageReport"), {
                **{k: v for k, v in EXAMPLES["usage"].items() if k not in ("key_id", "user_id")},
                "by_key": {key["id"]: EXAMPLES["usage"]["totals"]}})},
            errors=_errors("BadRequest", "Unauthorized"))},
    }


def ops_paths() -> dict[str, Any]:
    health = {"status": "ok", "version": EXAMPLES["health"]["version"], "environment": "development"}
    return {
        "/health": {"get": _op("health", "Operations", "Readiness",
                               "Checks Redis: 503 when it is unreachable (or lost its data).", OPEN,
                               ok={"description": "Ready.", "content": _json(ref("Health"), {**health, "redis": "ok"})},
                               errors={"503": {"description": "Not ready.", "content": _json(ref("Health"), {
                                   **health, "status": "unavailable", "redis": "unreachable"})}})},
        "/api/v1/health": {"get": _op("liveness", "Operations", "Liveness",
                                      "Never depends on Redis or a provider (the ALB's health check).", OPEN,
                                      ok={"description": "Alive.", "content": _json(ref("Health"), health)})},
        "/metrics": {"get": _op("metrics", "Operations", "Prometheus metrics",
                                "Open in development, the master key in production.", [{}, *MASTER],
                                ok={"description": "Prometheus text format.",
                                    "content": {"text/plain": {"schema": {"type": "string"},
                                                               "example": "aiproxy_requests_total{...} 42\n"}}},
                                errors=_errors("Unauthorized"))},
        "/openapi.json": {"get": _op("openapi", "Operations", "This description",
                                     "OpenAPI 3.1, generated from the models that validate requests.", OPEN,
                                     ok={"description": "The document.",
                                         "content": {"application/json": {"schema": {"type": "object"}}}})},
    }


def vendor_paths() -> dict[str, Any]:
    shapes = {"vendor-o": "OpenAI chat.completion shape", "vendor-a": "Anthropic Messages shape",
              "vendor-b": "simple {id, output.text, usage, latency_ms} shape",
              "vendor-e": "enterprise {status, data.result, meta} envelope"}
    out = {}
    for name, shape in shapes.items():
        out[f"/{name}/messages"] = {"post": _op(
            name.replace("-", "_"), "Sandbox vendors", f"{name}: {shape}",
            "A fake vendor (development and test only; 404 in production). Simulate failures with the "
            "X-Simulate header or `simulate`: error, rate_limit, timeout, overloaded, bad_json; `delay` (≤ 5 s), "
            "`failure_rate` (0-1, seeded by the request).", OPEN,
            params=(_param("X-Simulate", "header", "A failure to simulate.",
                           {"type": "string", "enum": ["none", "error", "rate_limit", "timeout", "overloaded",
                                                       "bad_json"]}),),
            body=_json(ref("VendorRequest"), EXAMPLES["vendor_request"]),
            ok={"description": f"The vendor's answer ({shape}).",
                "content": _json({"type": "object"}, EXAMPLES["vendors"][name])},
            errors={"400": {"description": "Invalid input, in the vendor's own style."},
                    "429": {"description": "Simulated rate limit (Retry-After: 2)."},
                    "500": {"description": "Simulated error."}})}
    return out


PAGES = {"/": "Landing page: what it is, live health, quick start", "/chat": "Chat playground",
         "/docs": "This API reference, rendered from /openapi.json, with try-it",
         "/dashboard": "Spend and traffic: usage by day, model, provider and key",
         "/keys": "Gateway keys: issue, edit, deactivate, revoke (master key)",
         "/logs": "Request logs with filters and a detail view"}


def page_paths() -> dict[str, Any]:
    return {path: {"get": _op(f"page{path.strip('/').title() or 'Home'}", "Browser pages", summary,
                              "HTML for a browser (nothing loaded from elsewhere; a strict CSP).", OPEN,
                              ok={"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}})}
            for path, summary in PAGES.items()}
