"""The exact cache: a cryptographic hash of the canonical request → the stored answer, per scope.

The canonical request is the resolved provider and upstream model, the messages, and every parameter
that can change the answer (everything except ``stream``, ``stream_options``, ``user`` and the proxy's own
fields). Entries live in Redis for ``CACHE_TTL_SECONDS`` under ``{prefix}cache:{<scope>}:<hash>``; the
scope (per user by default, or per key, or a named shared scope) is the hash tag, so one scope's entries
share a Cluster slot. Only single-choice (``n=1``) successful answers are stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis

# Parameters that never change the answer's content.
NON_SEMANTIC_PARAMS = frozenset({"stream", "stream_options", "user", "metadata", "store", "service_tier",
                                 "parallel_tool_calls_hint", "text", "cache", "aiproxy"})


def scope_for(cache_scope: str, *, key_id: str, user_id: str) -> str:
    """The cache scope string for a key's setting: ``user`` → per user, ``key`` → per key, ``shared:<n>``."""
    if cache_scope == "key":
        return "k:" + key_id
    if cache_scope.startswith("shared:"):
        return "s:" + cache_scope[len("shared:"):]
    return "u:" + user_id


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                     default=str).encode("utf-8")).hexdigest()


def request_hash(body: dict[str, Any], *, provider: str, model: str) -> str:
    """SHA-256 of the canonical request (see module docstring)."""
    canonical = {k: v for k, v in body.items() if k not in NON_SEMANTIC_PARAMS and k != "model"}
    if "max_completion_tokens" in canonical and "max_tokens" not in canonical:
        canonical["max_tokens"] = canonical.pop("max_completion_tokens")
    canonical["__route__"] = [provider, model]
    return _digest(canonical)


def context_hash(body: dict[str, Any], *, scope: str, provider: str, model: str) -> str:
    """SHA-256 of everything but the last user message: what must match exactly for a semantic hit."""
    messages = list(body.get("messages") or [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is not None:
        messages = messages[:last_user] + [{"role": "user", "content": "<<last>>"}] + messages[last_user + 1:]
    canonical = {k: v for k, v in body.items() if k not in NON_SEMANTIC_PARAMS and k not in ("model", "messages")}
    canonical["messages"] = messages
    canonical["__route__"] = [scope, provider, model]
    return _digest(canonical)


@dataclass
class CachedAnswer:
    """A stored answer: the completion (OpenAI shape, without ids) and what it cost when first made."""

    entry_key: str
    completion: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str | None
    created_at: float
    source_proxy_id: str
    prompt: str = ""


class ExactCache:
    """Exact-match answers in Redis (see module docstring). Redis errors propagate; callers bypass."""

    def __init__(self, redis_client: redis.Redis, *, prefix: str, ttl_s: int) -> None:
        self._r = redis_client
        self._prefix = prefix
        self.ttl_s = ttl_s

    def entry_key(self, scope: str, req_hash: str) -> str:
        return f"{self._prefix}cache:{{{_digest(scope)[:24]}}}:{req_hash}"

    def get(self, entry_key: str) -> CachedAnswer | None:
        """The stored answer at ``entry_key``, or None (missing, expired or unreadable)."""
        raw = self._r.get(entry_key)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return CachedAnswer(entry_key=entry_key, **data)
        except (ValueError, TypeError):
            return None

    def put(self, entry_key: str, answer: CachedAnswer) -> None:
        """Store ``answer`` at ``entry_key`` for the cache TTL."""
        data = {k: v for k, v in answer.__dict__.items() if k != "entry_key"}
        self._r.set(entry_key, json.dumps(data, separators=(",", ":"), default=str), ex=max(1, self.ttl_s))
