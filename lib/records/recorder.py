"""The end of every request: its ``RequestRecord``, the billing line on stdout, the store and the metrics."""

from __future__ import annotations

import logging
import sys
from decimal import Decimal
from typing import IO, Any

from lib.context import RequestContext
from lib.errors import StoreUnavailable
from lib.metrics import Metrics
from lib.records.requestlog import RequestRecord, billing_line
from lib.records.usage import UsageStore

log = logging.getLogger("aiproxy.records")


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def record_of(ctx: RequestContext) -> RequestRecord:
    """The request log record for a finished request."""
    return RequestRecord(
        proxy_id=ctx.proxy_id, created_at=ctx.started_wall, endpoint=ctx.endpoint, key_id=ctx.key_id,
        user_id=ctx.user_id, requested_model=ctx.requested_model, model=ctx.model, provider=ctx.provider,
        status=ctx.status, error_code=ctx.error_code, latency_ms=round(ctx.elapsed_ms(), 3),
        ttfb_ms=None if ctx.ttfb_ms is None else round(ctx.ttfb_ms, 3), stream=ctx.stream,
        prompt_tokens=ctx.prompt_tokens, completion_tokens=ctx.completion_tokens,
        cost_usd=_decimal(ctx.cost_usd), unpriced=ctx.unpriced, usage_source=ctx.usage_source, cache=ctx.cache,
        cache_similarity=ctx.cache_similarity, cache_entry=ctx.cache_entry, cache_veto=ctx.cache_veto, saved_tokens=ctx.saved_tokens,
        saved_cost_usd=_decimal(ctx.saved_cost_usd), client_disconnected=ctx.client_disconnected,
        request_body=ctx.request_body, response_body=ctx.response_body, error_message=ctx.error_message,
        request_id=ctx.request_id,
        upstream_error=ctx.upstream_error, budget_clamped=ctx.budget_clamped, deployment=ctx.deployment,
        failed_attempts="; ".join(ctx.attempts) or None,
    )


class Recorder:
    """Writes one finished request everywhere it is kept: stdout (the durable billing line CloudWatch
    keeps), the request log and usage counters (``UsageStore.store``; while Redis is unreachable the record
    goes to the spool and is replayed when it answers) and the metrics. Never raises."""

    def __init__(self, usage: UsageStore, metrics: Metrics, out: IO[str] | None = None, spool: Any = None) -> None:
        self.usage = usage
        self.metrics = metrics
        self.spool = spool
        self._out = out

    def __call__(self, ctx: RequestContext, settlement: Any = None) -> None:
        """Record ``ctx``; ``settlement`` (``lib.limits.quota.Settlement``) runs first in the same round trip."""
        record = record_of(ctx)
        print(billing_line(record), file=self._out or sys.stdout, flush=True)
        before = [settlement.call] if settlement is not None else None
        try:
            _, results = self.usage.store(record, before)
        except StoreUnavailable as exc:
            if settlement is not None:
                settlement.failed(exc)
            if self.spool is None or not self.spool.add("record", record.to_dict()):
                self.metrics.usage_errors.labels("record").inc()
        except Exception as exc:  # noqa: BLE001 - recording must never break the response
            log.exception("recording request %s failed", ctx.proxy_id)
            self.metrics.usage_errors.labels("record").inc()
            if settlement is not None:
                settlement.failed(exc)
        else:
            if settlement is not None:
                settlement.done(results[0])
        self.metrics.observe_request(ctx)

    def replay(self, payload: dict[str, Any]) -> None:
        """Store a spooled record (idempotent by ``proxy_id``). Raises ``StoreUnavailable`` while Redis is away."""
        self.usage.store(RequestRecord.from_dict(payload))
