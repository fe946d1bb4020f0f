"""Stored Responses API responses (``store``, ``previous_response_id``, ``GET``/``DELETE /v1/responses/<id>``).

One Redis string per response, owned by the gateway key that created it and kept as long as request logs
(``LOG_RETENTION_DAYS``)::

    P resp:{K}:<response id>   STRING  {"response": <the response object>, "items": [<conversation items>]}

``items`` is the whole conversation up to and including this response's output (earlier turns, this
input, this output), so a follow-up reads one key. The key carries the owner's key id as its hash tag, like
the request logs, so another key's lookup is simply a miss: it gets 404, never another owner's data. Every
Redis call runs inside ``lib.store.store_errors`` (503 when Redis is unreachable).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from lib.store import store_errors

_ID = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")


class ResponseStore:
    """Responses kept for their owner (see the module docstring)."""

    def __init__(self, redis: Any, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self._prefix = prefix
        self.ttl_s = max(1, int(ttl_s))

    def key(self, key_id: str, response_id: str) -> str:
        """The Redis key of ``response_id`` owned by ``key_id``."""
        return f"{self._prefix}resp:{{{key_id}}}:{response_id}"

    def put(self, key_id: str, response: dict[str, Any], items: list[dict[str, Any]]) -> None:
        """Keep ``response`` and the conversation ``items`` for ``key_id``. Raises ``StoreUnavailable``."""
        payload = orjson.dumps({"response": response, "items": items})
        with store_errors("store response"):
            self.redis.set(self.key(key_id, response["id"]), payload, ex=self.ttl_s)

    def get(self, key_id: str, response_id: str) -> dict[str, Any] | None:
        """``{"response", "items"}`` of ``response_id`` if ``key_id`` owns it, else ``None``. Raises
        ``StoreUnavailable``."""
        if not _ID.match(response_id or ""):
            return None
        with store_errors("read response"):
            raw = self.redis.get(self.key(key_id, response_id))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) and isinstance(data.get("response"), dict) else None

    def delete(self, key_id: str, response_id: str) -> bool:
        """Forget ``response_id``; ``True`` when ``key_id`` owned it. Raises ``StoreUnavailable``."""
        if not _ID.match(response_id or ""):
            return False
        with store_errors("delete response"):
            return bool(self.redis.delete(self.key(key_id, response_id)))
