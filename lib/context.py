"""What the gateway knows about one request while it runs; the request log is made from it."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lib.keys import KeyRecord


@dataclass
class RequestContext:
    """Mutable per-request state, created by the HTTP layer and filled in by the gateway."""

    endpoint: str
    client_ip: str = ""
    proxy_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    request_id: str | None = None  # the x-request-id answered (the client's when well formed, else proxy_id)
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    key: KeyRecord | None = None
    is_master: bool = False
    requested_model: str | None = None
    model: str | None = None
    provider: str | None = None
    deployment: str | None = None  # ``instance/model`` of the load-balanced deployment that answered
    stream: bool = False
    status: int = 200
    error_code: str | None = None
    error_message: str | None = None
    upstream_error: str | None = None  # what a failing provider said (owner's log only, when bodies are kept)
    attempts: list[str] = field(default_factory=list)  # ``provider/model: status code`` of each failed attempt
    ttfb_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_source: str | None = None
    cost_usd: Any = None
    unpriced: bool = False
    priced: bool = False
    cache: str | None = None
    cache_lookup: bool = True  # Cache-Control: no-cache turns this off
    cache_store: bool = True  # Cache-Control: no-store turns both off
    cache_similarity: float | None = None
    cache_entry: str | None = None
    cache_veto: str | None = None  # the check that refused the nearest semantic candidate (similarity above)
    saved_tokens: int = 0
    saved_cost_usd: Any = None
    client_disconnected: bool = False
    request_body: str | None = None
    response_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reservation: Any = None
    budget_clamped: bool = False  # the provider reported more than was reserved; the budget was charged the cap
    finished: bool = False
    logged: bool = False

    @property
    def cache_hit(self) -> bool:
        return bool(self.cache and self.cache.startswith("hit"))

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None

    @property
    def user_id(self) -> str | None:
        return self.key.user_id if self.key else None

    def elapsed_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0

    def mark_first_byte(self) -> None:
        if self.ttfb_ms is None:
            self.ttfb_ms = self.elapsed_ms()
