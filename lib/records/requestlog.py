"""One record per request through the gateway, and the one-line billing fact printed to stdout for it.

Every request — success, error, refusal, cache hit, stream cut off by the client — produces exactly one
``RequestRecord`` under its ``proxy_id``. ``UsageStore.record`` (``lib/records/usage.py``) stores it and counts it;
``billing_line`` turns it into the JSON line that goes to stdout / CloudWatch.

Money: the gateway accounts in whole micro-dollars (``lib.accounting.money.to_micros``, round half up, per
request); the stored log, the billing line and the usage counters all carry that same rounded amount, so
usage totals equal the sum of the logs to the last digit. ``to_json``/``from_json`` themselves keep any
``Decimal`` exactly as given.
"""

from __future__ import annotations

import dataclasses
import json

import orjson
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from lib.accounting.money import quantize_usd

_DECIMAL_FIELDS = ("cost_usd", "saved_cost_usd")
USAGE_SOURCES = ("provider", "counted")
CACHE_STATES = ("hit-exact", "hit-semantic", "miss", "bypass")
CACHE_HITS = ("hit-exact", "hit-semantic")


def truncate_body(text: str | None, max_chars: int) -> str | None:
    """``text`` cut to at most ``max_chars`` characters of the original plus a visible truncation marker.

    Returns ``text`` unchanged when it fits, ``None`` for ``None``, and only the marker when ``max_chars`` <= 0.
    """
    if text is None or len(text) <= max_chars:
        return text
    keep = max(0, max_chars)
    return f"{text[:keep]}…[truncated {len(text) - keep} of {len(text)} chars]"


@dataclass
class RequestRecord:
    """The log of one request. ``key_id`` is the gateway key's id (never the key); ``None`` before auth."""

    proxy_id: str
    created_at: float
    endpoint: str
    key_id: str | None = None
    user_id: str | None = None
    requested_model: str | None = None
    model: str | None = None
    provider: str | None = None
    status: int = 200
    error_code: str | None = None
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal | None = None
    unpriced: bool = False
    usage_source: str | None = None
    cache: str | None = None
    cache_similarity: float | None = None
    cache_entry: str | None = None
    cache_veto: str | None = None
    saved_tokens: int = 0
    saved_cost_usd: Decimal | None = None
    client_disconnected: bool = False
    request_body: str | None = None
    response_body: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    upstream_error: str | None = None
    budget_clamped: bool = False
    deployment: str | None = None  # the load-balanced deployment that answered (``instance/model``)
    failed_attempts: str | None = None  # ``provider/model: status code`` of each attempt that failed, ``; ``-joined

    @property
    def total_tokens(self) -> int:
        """``prompt_tokens + completion_tokens``."""
        return int(self.prompt_tokens) + int(self.completion_tokens)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field; ``Decimal`` amounts as exact strings."""
        # Every field is a scalar, so a shallow copy is enough (asdict's deep copy cost ~0.1 ms a request).
        out = {f.name: getattr(self, f.name) for f in _FIELDS}
        for name in _DECIMAL_FIELDS:
            value = out[name]
            out[name] = None if value is None else str(value)
        return out

    def to_json(self) -> str:
        """Compact JSON of ``to_dict()``."""
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        """Rebuild a record from ``to_dict()`` output; unknown fields are ignored (older/newer writers).

        Raises ``ValueError`` when a required field is missing or an amount is not a number.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for required in ("proxy_id", "created_at", "endpoint"):
            if required not in kwargs:
                raise ValueError(f"request record lacks '{required}'")
        for name in _DECIMAL_FIELDS:
            value = kwargs.get(name)
            if value is not None:
                try:
                    kwargs[name] = Decimal(str(value))
                except InvalidOperation as exc:
                    raise ValueError(f"request record field '{name}' is not a decimal: {value!r}") from exc
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> RequestRecord:
        """Parse ``to_json()`` output. Raises ``ValueError`` on malformed JSON or a malformed record."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("request record JSON is not an object")
        return cls.from_dict(data)


def _iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def billing_line(record: RequestRecord) -> str:
    """One JSON line of billing facts for stdout / CloudWatch: who, which model, tokens, cost, cache.

    Never carries the prompt, the response, an error message or any key material — only ids and numbers.
    ``cost_usd`` is the micro-dollar-rounded amount that the usage counters add up (``null`` when unpriced).
    """
    cost = quantize_usd(record.cost_usd)
    facts = {
        "event": "billing",
        "ts": _iso_utc(record.created_at),
        "proxy_id": record.proxy_id,
        "key_id": record.key_id,
        "user_id": record.user_id,
        "model": record.model,
        "provider": record.provider,
        "status": record.status,
        "prompt_tokens": int(record.prompt_tokens),
        "completion_tokens": int(record.completion_tokens),
        "total_tokens": record.total_tokens,
        "cost_usd": None if cost is None else str(cost),
        "unpriced": bool(record.unpriced),
        "cache": record.cache,
    }
    return orjson.dumps(facts).decode()


_FIELDS = dataclasses.fields(RequestRecord)


def body_text(data: Any) -> str | None:
    """``data`` as the text a request log keeps (strings as they are, anything else as JSON). Not cut here:
    ``UsageStore`` cuts every logged body once, to ``LOG_BODY_MAX_CHARS``, saying how long it was."""
    if data is None:
        return None
    return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
