"""The path table of ``/openapi.json``: one operation per endpoint in API.md, with its request and response
schemas (component references, see ``src.apispec``), parameters, auth and examples (``examples.json``:
real answers of the sandbox provider, checked against these schemas by ``tests/api/test_openapi_spec.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REF = "#/components/schemas/"
EXAMPLES: dict[str, Any] = json.loads((Path(__file__).with_name("examples.json")).read_text(encoding="utf-8"))

INFO_DESCRIPTION = (
    "Clients call this gateway as they would call OpenAI (or Anthropic's Messages API) with a **gateway key** "
    "issued by `POST /admin/keys`; the gateway routes to the configured provider (or the offline `sandbox`), "
    "enforces the key's limits and budget, caches, and logs every request.\n\n"
    "Every error is the OpenAI envelope `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}` "
    "(Anthropic's shape on `/v1/messages`). Every response carries `x-request-id`; chat answers carry "
    "`x-aiproxy-id` (the request's log id), `x-aiproxy-cache` and `x-aiproxy-provider`."
)

KEY = [{"gatewayKey": []}, {"apiKeyHeader": []}, {"apiTokenHeader": []}, {"apiKeyQuery": []}]
MASTER = [{"masterKey": []}]
EITHER = KEY + MASTER
OPEN: list[dict[str, list[str]]] = []


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _hdr(description: str, type_: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": type_}}


HEADERS: dict[str, Any] = {
    "x-aiproxy-id": _hdr("The request's proxy_id: GET /api/logs/{proxy_id} reads its log."),
    "x-aiproxy-cache": {"description": "Whether the gateway cache answered.",
                        "schema": {"type": "string", "enum": ["hit-exact", "hit-semantic", "miss", "bypass"]}},
    "x-aiproxy-provider": _hdr("The provider that answered (for a cache hit: whose answer is replayed)."),
    "x-aiproxy-sandbox": _hdr("Present when the sandbox stood in for a provider with no credentials."),
    "x-request-id": _hdr("The client's X-Request-Id when well formed, else the proxy_id."),
    "x-ratelimit-limit-requests": _hdr("The key's requests per minute.", "integer"),
    "x-ratelimit-remaining-requests": _hdr("Requests left in this minute.", "integer"),
    "x-ratelimit-reset-requests": _hdr("When the request window resets, e.g. 1m0s."),
    "Retry-After": _hdr("Seconds to wait, on a 429 that waiting cures.", "integer"),
}
_CHAT_HEADERS = {name: {"$ref": "#/components/headers/" + name} for name in (
    "x-aiproxy-id", "x-aiproxy-cache", "x-aiproxy-provider", "x-aiproxy-sandbox", "x-request-id",
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests")}


def _error(status: int, description: str, type_: str, code: str, message: str, param: str | None = None,
           schema: str = "OpenAI.ErrorResponse") -> dict[str, Any]:
    example = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    out: dict[str, Any] = {"description": description, "content": {"application/json": {
        "schema": ref(schema), "example": example}}}
    if status == 429:
        out["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return out


ERROR_RESPONSES: dict[str, Any] = {
    "BadRequest": _error(400, "Invalid request (bad JSON, a missing or invalid field).", "invalid_request_error",
                         "missing_field", "Missing required parameter: 'model'.", "model"),
    "Unauthorized": _error(401, "No key, or not a valid one.", "authentication_error", "invalid_api_key",
                           "Incorrect API key provided: sk-aip********abcd."),
    "Forbidden": _error(403, "The key may not do this (inactive, expired, model not allowed, content policy).",
                        "permission_error", "model_not_allowed",
                        "This key is not allowed to use the model 'gpt-4o'.", "model"),
    "NotFound": _error(404, "No such model, log, key or endpoint.", "not_found_error", "model_not_found",
                       "The model 'gpt-9' does not exist or is not served by this gateway.", "model"),
    "TooLarge": _error(413, "The body is larger than MAX_REQUEST_BYTES.", "invalid_request_error",
                       "request_too_large", "The request body is larger than the 1048576-byte limit."),
    "RateLimited": _error(429, "Rate limit or budget reached (Retry-After when waiting helps).",
                          "rate_limit_error", "rate_limit_exceeded", "Rate limit reached: 60 requests per minute."),
    "ServerError": _error(500, "The gateway failed.", "server_error", "internal_error",
                          "The server had an error while processing your request."),
    "Upstream": _error(502, "The provider failed, timed out or is not configured (after fallbacks).",
                       "upstream_error", "upstream_error", "The provider returned an error."),
    "StoreUnavailable": _error(503, "Redis is unreachable (fail-closed), or the provider is (upstream_unavailable).",
                               "server_error", "service_unavailable", "The key store is unreachable; try again shortly."),
}
ANTHROPIC_ERROR = {"description": "Errors in Anthropic's shape (status as in the OpenAI table).", "content": {
    "application/json": {"schema": ref("AnthropicError"), "example": {
        "type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": "4d061cb9-ab69-4d72-a27e-fd71858b119b"}}}}


def _errors(*names: str) -> dict[str, Any]:
    status = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404", "TooLarge": "413",
              "RateLimited": "429", "ServerError": "500", "Upstream": "502", "StoreUnavailable": "503"}
    return {status[n]: {"$ref": "#/components/responses/" + n} for n in names}


_CLIENT_ERRORS = ("BadRequest", "Unauthorized", "Forbidden", "NotFound", "TooLarge", "RateLimited", "ServerError",
                  "Upstream", "StoreUnavailable")


def _param(name: str, where: str, description: str, schema: dict[str, Any] | None = None,
           required: bool = False, example: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "description": description, "required": required or where == "path",
                           "schema": schema or {"type": "string"}}
    if example is not None:
        out["example"] = example
    return out


def _json(schema: dict[str, Any], example: Any = None, examples: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    if examples:
        media["examples"] = {k: {"value": v} for k, v in examples.items()}
    return {"application/json": media}


def _op(op_id: str, tag: str, summary: str, description: str, security: list[dict[str, list[str]]], *,
        ok: dict[str, Any], body: dict[str, Any] | None = None, params: tuple[dict[str, Any], ...] = (),
        errors: dict[str, Any] | None = None, status: str = "200") -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "tags": [tag], "summary": summary, "description": description,
                           "security": security}
    if params:
        out["parameters"] = list(params)
    if body is not None:
        out["requestBody"] = {"required": True, "content": body}
    out["responses"] = {status: ok, **(errors or {})}
    return out


_CACHE_PARAMS = (
    _param("Cache-Control", "header", "`no-cache`: skip the cache lookup (the answer is still stored); "
                                      "`no-store`: neither look up nor store."),
    _param("X-AIProxy-Cache", "header", "`off`: bypass the gateway cache entirely.", {"type": "string", "enum": ["off"]}),
    _param("X-Request-Id", "header", "Your id for this request (1-128 of A-Za-z0-9._:-), echoed and logged."),
)
_LOG_FILTERS = (
    _param("model", "query", "The model asked for or the one that answered."),
    _param("provider", "query", "Provider instance."),
    _param("status", "query", "A status code (429) or a class: 2xx, 4xx, 5xx, error.", example="error"),
    _param("cache", "query", "Cache result.", {"type": "string", "enum": ["hit", "hit-exact", "hit-semantic", "miss", "bypass"]}),
    _param("since", "query", "From this time (ISO 8601 or epoch seconds)."),
    _param("until", "query", "Up to this time (ISO 8601 or epoch seconds)."),
    _param("limit", "query", "Records per page.", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}),
    _param("cursor", "query", "next_cursor of the previous page."),
)
_USAGE_RANGE = (
    _param("start", "query", "First UTC day (default: 29 days before end).", {"type": "string", "format": "date"}),
    _param("end", "query", "Last UTC day (default: today).", {"type": "string", "format": "date"}),
    _param("model", "query", "Only this (answering) model."),
)


def _chat_ok() -> dict[str, Any]:
    return {"description": "A chat completion; with `\"stream\": true`, server-sent events: one "
                           "`data: {chat.completion.chunk}` per event, then `data: [DONE]`.",
            "headers": _CHAT_HEADERS,
            "content": {**_json(ref("OpenAI.CreateChatCompletionResponse"), EXAMPLES["chat_response"]),
                        "text/event-stream": {"schema": ref("OpenAI.CreateChatCompletionStreamResponse"),
                                              "example": EXAMPLES["chat_stream"]}}}


def _chat_body() -> dict[str, Any]:
    return _json({"anyOf": [ref("ChatCompletionRequest"), ref("ChatTextRequest")]}, examples={
        "messages": EXAMPLES["chat_request"], "stream": EXAMPLES["chat_stream_request"],
        "json_mode": EXAMPLES["chat_json_request"], "text": EXAMPLES["chat_text_request"]})


def _client_paths() -> dict[str, Any]:
    chat_desc = ("OpenAI chat completions through the gateway: routing, limits, cache, fallbacks, logging. "
                 "`\"stream\": true` answers as server-sent events (`stream_options.include_usage` adds a last "
                 "chunk with the usage). A plain `text` string may replace `messages`. A parameter the provider "
                 "cannot honour is `400 unsupported_parameter`.")
    return {
        "/v1/chat/completions": {"post": _op(
            "createChatCompletion", "Chat", "Chat completions", chat_desc, KEY, body=_chat_body(), ok=_chat_ok(),
            params=_CACHE_PARAMS, errors=_errors(*_CLIENT_ERRORS))},
        "/api/proxy": {"post": {**_op(
            "createChatCompletionAlias", "Chat", "Chat completions (alias)", "The same as POST /v1/chat/completions.",
            KEY, body=_chat_body(), ok=_chat_ok(), params=_CACHE_PARAMS, errors=_errors(*_CLIENT_ERRORS))}},
        "/v1/responses": {"post": _op(
            "createResponse", "Responses", "Create a response",
            "The OpenAI Responses API for any model (translated to the chat pipeline). `stream: true` answers "
            "with its typed events; `previous_response_id` continues a stored response (owner only).", KEY,
            body=_json(ref("Responses.ResponsesRequest"), EXAMPLES["responses_request"]),
            ok={"description": "A response object; with `stream: true`, its typed events (`event:` + `data:`).",
                "headers": _CHAT_HEADERS,
                "content": {**_json(ref("OpenAI.Response"), EXAMPLES["responses_response"]),
                            "text/event-stream": {"schema": ref("OpenAI.ResponseStreamEvent")}}},
            params=_CACHE_PARAMS, errors=_errors(*_CLIENT_ERRORS))},
        "/v1/responses/{response_id}": {
            "get": _op("getResponse", "Responses", "Retrieve a stored response", "Owner only.", KEY,
                       params=(_param("response_id", "path", "The response's id.", example="resp_0123"),),
                       ok={"description": "The stored response.", "content": _json(ref("OpenAI.Response"))},
                       errors=_errors("Unauthorized", "NotFound")),
            "delete": _op("deleteResponse", "Responses", "Delete a stored response", "Owner only.", KEY,
                          params=(_param("response_id", "path", "The response's id.", example="resp_0123"),),
                          ok={"description": "Deleted.", "content": _json(ref("ResponseDeleted"), {
                              "id": "resp_0123", "object": "response", "deleted": True})},
                          errors=_errors("Unauthorized", "NotFound"))},
        "/v1/messages": {"post": _op(
            "createMessage", "Anthropic Messages", "Create a message (Anthropic Messages API)",
            "Any model through Anthropic's Messages API: Claude models natively, others translated. The key may "
            "come as `x-api-key` (what the Anthropic SDK sends). Errors are in Anthropic's shape.", KEY,
            params=(_param("anthropic-version", "header", "Anthropic API version.", example="2023-06-01"),
                    _param("anthropic-beta", "header", "Anthropic beta flags, passed through natively.")),
            body=_json(ref("Anthropic.MessagesRequest"), EXAMPLES["messages_request"]),
            ok={"description": "An Anthropic message; with `stream: true`, Anthropic's events.",
                "headers": _CHAT_HEADERS,
                "content": {**_json(ref("AnthropicMessageResponse"), EXAMPLES["messages_response"]),
                            "text/event-stream": {"schema": {"type": "object"}}}},
            errors={"400": ANTHROPIC_ERROR, "401": ANTHROPIC_ERROR, "429": ANTHROPIC_ERROR})},
        "/v1/messages/count_tokens": {"post": _op(
            "countMessageTokens", "Anthropic Messages", "Count a message's input tokens",
            "Counted locally: exact for OpenAI models, an estimate for Claude and Gemini.", KEY,
            body=_json(ref("Anthropic.CountTokensRequest"), {k: v for k, v in EXAMPLES["messages_request"].items()
                                                            if k != "max_tokens"}),
            ok={"description": "The count.", "content": _json(ref("CountTokensResponse"), {"input_tokens": 8})},
            errors={"400": ANTHROPIC_ERROR, "401": ANTHROPIC_ERROR})},
        "/v1/models": {"get": _op(
            "listModels", "Models", "List models",
            "The models this key may use. `owned_by` is the provider it routes to; `configured` says whether "
            "that provider has credentials, `served_by` who answers now (`sandbox` when it stands in).", KEY,
            ok={"description": "OpenAI's model list, with the gateway's routing fields.",
                "content": _json({"allOf": [ref("OpenAI.ListModelsResponse"), ref("GatewayModelList")]},
                                 EXAMPLES["models"])},
            errors=_errors("Unauthorized"))},
        "/v1/models/{model}": {"get": _op(
            "retrieveModel", "Models", "Retrieve a model", "One model, by name (aliases and prefixes resolve).", KEY,
            params=(_param("model", "path", "Model name.", example="sandbox"),),
            ok={"description": "The model.", "content": _json({"allOf": [ref("OpenAI.Model"), ref("GatewayModel")]},
                                                              EXAMPLES["models"]["data"][0])},
            errors=_errors("Unauthorized", "NotFound"))},
        "/v1/embeddings": {"post": _op(
            "createEmbedding", "Embeddings", "Create embeddings",
            "OpenAI embeddings, passed to the provider; `sandbox-embedding` gives deterministic vectors offline.",
            KEY, body=_json(ref("EmbeddingRequest"), EXAMPLES["embeddings_request"]),
            ok={"description": "The vectors.", "headers": _CHAT_HEADERS,
                "content": _json(ref("OpenAI.CreateEmbeddingResponse"), EXAMPLES["embeddings_response"])},
            errors=_errors(*_CLIENT_ERRORS))},
        "/api/v1/webhook": {"post": _op(
            "webhook", "Webhook", "Process a prompt (spreadsheet clients)",
            "`{prompt, type?, language?, source?}` → `{summary, processing_time}` through the chat pipeline "
            "(keys, limits, cache and logs apply). Types: summary, keywords, sentiment, entities, translation, "
            "custom. The body is checked by lib/webhook.py; WebhookRequest describes what it accepts.", KEY,
            body=_json(ref("WebhookRequest"), EXAMPLES["webhook_request"]),
            ok={"description": "The processed text.", "headers": _CHAT_HEADERS,
                "content": _json(ref("WebhookResponse"), EXAMPLES["webhook_response"])},
            errors=_errors(*_CLIENT_ERRORS))},
        "/api/logs": {"get": _op(
            "listMyLogs", "Logs and usage", "List my request logs",
            "The caller's own recent request logs, newest first, with filters and cursor paging (bodies left out).",
            KEY, params=_LOG_FILTERS,
            ok={"description": "A page of logs.", "content": _json(ref("RequestLogList"), EXAMPLES["log_list"])},
            errors=_errors("BadRequest", "Unauthorized"))},
        "/api/logs/{proxy_id}": {"get": _op(
            "getLog", "Logs and usage", "Read one request log",
            "The stored log of one request, by the proxy_id its answer carried (owner's key, or the master key). "
            "Any other key gets 404, as does a malformed id.", EITHER,
            params=(_param("proxy_id", "path", "The request's proxy_id (x-aiproxy-id).",
                           {"type": "string", "format": "uuid"}, example=EXAMPLES["log"]["proxy_id"]),),
            ok={"description": "The log, with bodies when LOG_BODIES is on.",
                "content": _json(ref("RequestLog"), EXAMPLES["log"])},
            errors=_errors("Unauthorized", "NotFound"))},
        "/api/usage": {"get": _op(
            "getMyUsage", "Logs and usage", "My usage",
            "The caller's own usage: totals, by day, by model (answering and asked for), by provider.", KEY,
            params=_USAGE_RANGE,
            ok={"description": "The report.", "content": _json(ref("UsageReport"), EXAMPLES["usage"])},
            errors=_errors("BadRequest", "Unauthorized"))},
    }


TAGS = (
    ("Chat", "OpenAI chat completions."),
    ("Responses", "OpenAI Responses API, for every provider."),
    ("Anthropic Messages", "Anthropic's Messages API, for every model."),
    ("Models", "What a key may use, and who serves it."),
    ("Embeddings", "OpenAI embeddings."),
    ("Webhook", "One prompt in, one processed text out."),
    ("Logs and usage", "A key's own request logs and usage."),
    ("Admin: keys", "Gateway keys (master key)."),
    ("Admin: logs and usage", "Every key's logs and usage (master key)."),
    ("Operations", "Health, metrics, this description."),
    ("Sandbox vendors", "Fake vendors with simulated failures (development and test only)."),
    ("Browser pages", "The console's HTML pages."),
)


def tags(vendors_enabled: bool) -> list[dict[str, str]]:
    return [{"name": n, "description": d} for n, d in TAGS if vendors_enabled or n != "Sandbox vendors"]


def paths(vendors_enabled: bool) -> dict[str, Any]:
    """Every operation, grouped by path (the sandbox vendors only where they are served)."""
    from src.apispec import paths_admin

    out = {**_client_paths(), **paths_admin.admin_paths(), **paths_admin.ops_paths()}
    if vendors_enabled:
        out.update(paths_admin.vendor_paths())
    out.update(paths_admin.page_paths())
    return out
