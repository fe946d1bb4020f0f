"""Response shapes of the gateway's own endpoints, as pydantic models, for ``/openapi.json`` only.

The request models are the ones that validate requests (``lib.protocols``, ``lib.keys``); OpenAI-shaped
answers are described by OpenAI's own schemas (``openai-schemas.json``). What is left — keys, logs, usage,
health, the webhook, the Anthropic-shaped answers — is described here. These models validate nothing at
run time; ``tests/api/test_openapi_spec.py`` checks real answers against them so they cannot drift.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any, Literal, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

Money = str  # a decimal string, e.g. "0.000045" (exact; never a float)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- /api/v1/webhook ---------------------------------------------------------------------------------------
class WebhookRequest(BaseModel):
    """Body of ``POST /api/v1/webhook`` (validated by ``lib.webhook.build_request``, which this mirrors)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = Field(min_length=1, description="The text to process (at most MAX_PROMPT_LENGTH characters).")
    type: Literal["summary", "keywords", "sentiment", "entities", "translation", "custom"] = Field(
        "summary", description="What to do with it; custom sends the prompt as it is.")
    language: str | None = Field(None, max_length=64, description="Answer (or translate) in this language.")
    source: str | None = Field(None, description="A label, echoed back (e.g. the sheet's name).")
    model: str | None = Field(None, description="Model to use; default WEBHOOK_MODEL.")


class WebhookResponse(BaseModel):
    summary: str
    processing_time: float = Field(description="Seconds.")
    type: str
    model: str | None
    proxy_id: str
    source: str | None = None


class ChatTextRequest(BaseModel):
    """The spreadsheet form of ``POST /v1/chat/completions``: a plain ``text`` string instead of ``messages``
    (becomes one user message; the other chat parameters apply as usual)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    text: str = Field(min_length=1)


# -- /v1/models --------------------------------------------------------------------------------------------
class GatewayModel(BaseModel):
    """OpenAI's model object plus where the gateway sends it."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = Field(description="The provider instance the model routes to.")
    configured: bool = Field(description="That provider has credentials (or needs none).")
    served_by: str | None = Field(description="Who answers now: the provider itself, 'sandbox' when the "
                                              "sandbox stands in for an unconfigured provider, null when "
                                              "nobody can (production without credentials).")


class GatewayModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[GatewayModel]


# -- /v1/messages ------------------------------------------------------------------------------------------
class AnthropicUsage(_Open):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class AnthropicMessageResponse(_Open):
    """Anthropic's ``message`` object (``content`` blocks: text, tool_use, thinking ...), plus ``proxy_id``."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    stop_sequence: str | None
    usage: AnthropicUsage
    proxy_id: str | None = None


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Errors of ``/v1/messages`` in Anthropic's shape."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None = None


class CountTokensResponse(BaseModel):
    input_tokens: int


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"]
    deleted: Literal[True]


# -- /admin/keys -------------------------------------------------------------------------------------------
class BudgetSpend(BaseModel):
    """The budget's current period (money as decimal strings)."""

    period: Literal["total", "daily", "monthly"]
    period_id: str
    budget_usd: Money
    spent_usd: Money
    reserved_usd: Money = Field(description="Held by requests in flight.")
    remaining_usd: Money
    resets_at: str | None = Field(description="ISO 8601, UTC; null for a total budget.")


class ApiKey(BaseModel):
    """A gateway key record (never the key itself)."""

    id: str
    object: Literal["api_key"]
    user_id: str
    name: str | None
    active: bool
    revoked_at: str | None
    revoked: bool
    models: list[str] | None = Field(description="Allowed models (wildcards); null = every model.")
    rpm: int | None = Field(description="Requests per minute; null = RATE_LIMIT; 0 = unlimited.")
    tpm: int | None
    budget_usd: Money | None
    budget_period: Literal["total", "daily", "monthly"]
    expires_at: str | None
    created_at: str
    cache: bool
    cache_scope: str
    metadata: dict[str, str]
    key_hint: str = Field(description="The key's first and last characters.")


class ApiKeyWithSpend(ApiKey):
    spend: BudgetSpend | None = Field(description="null when the key has no budget.")


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The plain key: shown once, stored only as a hash.")


class ApiKeyList(BaseModel):
    object: Literal["list"]
    data: list[ApiKeyWithSpend]


class ApiKeyDeleted(BaseModel):
    id: str
    object: Literal["api_key"]
    deleted: Literal[True]
    revoked: Literal[True]


# -- logs --------------------------------------------------------------------------------------------------
_LOG_NOTES = {
    "created_at": "Epoch seconds.",
    "requested_model": "The model name the client sent.",
    "model": "The model that answered (after aliases, fallbacks, the sandbox).",
    "cost_usd": "A decimal string; null when the model has no price (unpriced: true).",
    "saved_cost_usd": "A decimal string: what a cache hit saved.",
    "usage_source": "provider, counted (tiktoken) or cache.",
    "cache": "hit-exact, hit-semantic, miss or bypass.",
    "cache_similarity": "Cosine similarity of a semantic hit (or of the nearest refused candidate).",
    "upstream_error": "What a failing provider said before a fallback answered or the request failed (the "
                      "owner's log, when bodies are kept).",
    "failed_attempts": "Each attempt that failed before the answer (or the error), as 'provider/model: status code', "
                       "joined with '; '; null when the first attempt answered.",
    "request_body": "Only in GET /api/logs/{proxy_id}, when LOG_BODIES is on.",
    "response_body": "Only in GET /api/logs/{proxy_id}, when LOG_BODIES is on.",
}


def _log_model() -> type[BaseModel]:
    """``RequestLog``: one field per ``RequestRecord`` field (read from the dataclass, so a field added there
    is described here too), money as decimal strings."""
    from lib.records.requestlog import RequestRecord

    hints = get_type_hints(RequestRecord)
    fields: dict[str, Any] = {"object": (Literal["request_log"], ...)}
    for f in dataclasses.fields(RequestRecord):
        kind = hints[f.name]
        if Decimal in get_args(kind) or kind is Decimal:
            kind = Money | None
        optional = f.name.endswith("_body")
        fields[f.name] = (kind, Field(None if optional else ..., description=_LOG_NOTES.get(f.name)))
    return create_model("RequestLog", __doc__="One request's log record (lib/records/requestlog.py).", **fields)


RequestLog = _log_model()


class RequestLogList(BaseModel):
    """A page of logs, newest first (bodies left out: read one log for them)."""

    object: Literal["list"]
    data: list[RequestLog]  # type: ignore[valid-type]
    next_cursor: str | None = Field(description="Pass as cursor for the next page.")
    has_more: bool


# -- usage -------------------------------------------------------------------------------------------------
class Latency(BaseModel):
    p50: float | None
    p95: float | None
    mean: float | None


class UsageMetrics(BaseModel):
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: Money
    unpriced_requests: int
    cache_hits: int
    cache_misses: int
    cache_hit_rate: float = Field(description="hits / (hits + misses), 0..1.")
    saved_tokens: int
    saved_cost_usd: Money
    streams: int
    client_disconnects: int
    counted_usage_requests: int
    latency_ms: Latency


class UsageReport(BaseModel):
    object: Literal["usage"]
    key_id: str | None = Field(None, description="GET /api/usage only.")
    user_id: str | None = Field(None, description="GET /api/usage only.")
    start: str
    end: str
    filters: dict[str, Any]
    totals: UsageMetrics
    by_day: dict[str, UsageMetrics] = Field(description="Every UTC day in the range.")
    by_model: dict[str, UsageMetrics] = Field(description="By the model that answered.")
    by_requested_model: dict[str, UsageMetrics] = Field(description="By the model name the client asked for.")
    by_provider: dict[str, UsageMetrics]
    by_key: dict[str, UsageMetrics] | None = Field(None, description="GET /admin/usage only.")
    latency_buckets_ms: list[float | str]


# -- operations --------------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str
    environment: str
    redis: str | None = Field(None, description="GET /health only: ok, unreachable, lost its data.")


class VendorRequest(_Open):
    """Body of the sandbox vendors: ``messages`` (OpenAI style) or ``prompt``, plus simulation controls."""

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    system: str | None = None
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=4096)
    simulate: Literal["none", "error", "rate_limit", "timeout", "overloaded", "bad_json"] | None = None
    delay: float | None = Field(None, ge=0, le=5)
    failure_rate: float | None = Field(None, ge=0, le=1)


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    WebhookRequest, WebhookResponse, ChatTextRequest, GatewayModel, GatewayModelList, AnthropicMessageResponse,
    AnthropicError, CountTokensResponse, ResponseDeleted, ApiKey, ApiKeyWithSpend, ApiKeyCreated, ApiKeyList,
    ApiKeyDeleted, RequestLog, RequestLogList, UsageReport, Health, VendorRequest,
)
