"""Rate limits and budgets as the gateway applies them to one request (``lib.limits.ratelimit`` does the Redis work).

Before the upstream call: reserve the request (rpm), the prompt's counted tokens plus the output cap (tpm)
and the worst-case cost (budget), in one atomic script that also confirms the key record's generation (so a
revoked or changed key is noticed on the next request everywhere). After it: settle to the real tokens and
cost and release the rest. A key's ``rpm`` overrides ``RATE_LIMIT`` (0 = no request limit for that key);
``tpm`` and ``budget_usd`` apply only when set. A budgeted key asking for a model with no price is refused,
never served for free.

A budget is a cap: the output cap the reservation assumed (the request's ``max_tokens``, else
``DEFAULT_MAX_OUTPUT_TOKENS``) is returned for the gateway to send upstream, and settling charges at most
what was reserved — a provider reporting more (a longer prompt than counted, a cap it ignored) is logged
and clamped, so a key's spend never passes its budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Callable

from lib import errors
from lib.accounting import Accounting
from lib.context import RequestContext
from lib.accounting.money import from_micros, to_micros
from lib.keys import KeyRecord, KeyStore
from lib.limits.ratelimit import Limiter, Reservation
from lib.protocols.chat import ChatCompletionRequest
from lib.store import ScriptCall, store_errors

log = logging.getLogger("aiproxy.quota")


@dataclass(frozen=True)
class Settlement:
    """A reservation's settle call, what to spool if it cannot run, and what to do with its result."""

    call: ScriptCall
    payload: dict[str, Any]
    done: Callable[[Any], None]
    failed: Callable[[BaseException], None]


class Quota:
    """Applies a key's limits and budget around one request (see module docstring)."""

    def __init__(self, limiter: Limiter, accounting: Accounting, keys: KeyStore, *, default_rpm: int | None,
                 fail_mode: str, on_degraded: Callable[[Exception], None] | None = None,
                 spool: Any = None) -> None:
        self.limiter = limiter
        self.accounting = accounting
        self.keys = keys
        self.default_rpm = default_rpm
        self.fail_mode = fail_mode
        self._on_degraded = on_degraded
        self.spool = spool

    def reserve(self, ctx: RequestContext, req: ChatCompletionRequest, models: list[str]) -> int | None:
        """Reserve for a chat request (``models``: every upstream model it may be sent to, fallbacks included).

        Returns the output cap to send upstream when the request sets none and the key has a budget or a
        tpm limit (else ``None``). Sets ``ctx.reservation`` and the ``x-ratelimit-*`` headers. Raises
        ``KeyChanged`` (re-read the key), ``RateLimited`` / ``BudgetExceeded`` (429), ``PermissionDenied``
        (403 ``model_unpriced``), or ``StoreUnavailable`` (503) when Redis is down and the request may not be
        served without it.
        """
        if ctx.key is None:
            return None
        needs_count = bool(ctx.key.tpm) or ctx.key.budget_usd is not None
        prompt = self.accounting.prompt_tokens(req, models[0]) if needs_count else 0
        cap = req.output_limit or self.accounting.default_max_output
        self.reserve_tokens(ctx, prompt, cap, models)
        return cap if needs_count and req.output_limit is None else None

    def reserve_tokens(self, ctx: RequestContext, prompt_tokens: int, output_tokens: int, models: list[str]) -> None:
        """Reserve one request of ``prompt_tokens`` in and at most ``output_tokens`` out (see ``reserve``)."""
        key = ctx.key
        if key is None:
            return
        rpm = key.rpm if key.rpm is not None else self.default_rpm
        rpm = rpm or None
        tpm = key.tpm or None
        budget_micros = to_micros(key.budget_usd) if key.budget_usd is not None else None
        tokens = cost_micros = 0
        if tpm is not None or budget_micros is not None:
            tokens = prompt_tokens + output_tokens
            if budget_micros is not None:
                worst: Decimal = Decimal(0)
                for model in models:
                    cost = self.accounting.prices.worst_case_cost(prompt_tokens, output_tokens, model)
                    if cost is None:
                        raise errors.PermissionDenied(
                            f"The model '{model}' has no price configured, and this key has a budget: the gateway "
                            "refuses to run it unpriced. Ask the gateway admin to add it to the pricing file.",
                            param="model", code="model_unpriced")
                    worst = max(worst, cost)
                cost_micros = to_micros(worst, ROUND_CEILING)
        try:
            ctx.reservation = self.limiter.reserve(
                key.id, rpm=rpm, tpm=tpm, tokens=tokens, budget_micros=budget_micros, budget_period=key.budget_period,
                cost_micros=cost_micros, request_id=ctx.proxy_id, key_record=self.keys.key_name(key.id),
                key_gen=key.gen)
        except errors.StoreUnavailable as exc:
            # Fail-open serves without limits, but only a key confirmed moments ago (KEY_CACHE_SECONDS).
            if self.fail_mode != "fail-open" or not self.keys.stale_ok(key):
                raise
            log.error("rate-limit store unreachable; serving key %s without limits (fail-open)", key.id)
            if self._on_degraded is not None:
                self._on_degraded(exc)
            ctx.reservation = Reservation(key_id=key.id, request_id=ctx.proxy_id, tokens=tokens,
                                          cost_micros=cost_micros, period=key.budget_period, degraded=True)
            return
        self.keys.confirmed(key)
        ctx.headers.update(ctx.reservation.headers())

    def settle(self, ctx: RequestContext) -> None:
        """Swap the reservation for what the request really used, now, in a round trip of its own (see
        ``settlement``). Never raises: when Redis is unreachable the settlement goes to the spool."""
        settlement = self.settlement(ctx)
        if settlement is None:
            return
        try:
            with store_errors("settle", "The rate-limit store is unreachable; please retry shortly."):
                result = settlement.call.script(keys=settlement.call.keys, args=settlement.call.args)
        except errors.GatewayError as exc:
            settlement.failed(exc)
            return
        settlement.done(result)

    def settlement(self, ctx: RequestContext) -> Settlement | None:
        """What settling ``ctx``'s reservation takes — a script call to run in the request's one round trip after
        the call (with its log record), charging the budget at most what was reserved; a request that failed
        before any provider answered, or a cache hit, is released. ``None`` when there is nothing to settle (a
        request served without a hold is charged here directly). Never raises."""
        res = ctx.reservation
        if res is None:
            return None
        if res.degraded:
            self._charge_degraded(ctx)
            return None
        if ctx.cache_hit or (ctx.status >= 400 and not (ctx.prompt_tokens or ctx.completion_tokens)):
            tokens, cost = 0, 0
        else:
            tokens = ctx.prompt_tokens + ctx.completion_tokens
            cost = res.cost_micros if ctx.cost_usd is None else to_micros(ctx.cost_usd, ROUND_CEILING)
            if res.tracked_budget and cost > res.cost_micros:
                log.warning("proxy_id=%s key=%s: the provider reported more than was reserved (cost %d > %d "
                            "micro-USD); the budget is charged the reserved amount", ctx.proxy_id, res.key_id,
                            cost, res.cost_micros)
                ctx.budget_clamped = True
                cost = res.cost_micros
        call = self.limiter.settlement(res, tokens, cost)
        if call is None:
            return None
        settlement = Settlement(call, {"reservation": res.to_dict(), "tokens": tokens, "cost_micros": cost},
                                lambda result: self.limiter.settled(res, result),
                                lambda exc: self.unsettled(settlement, exc))
        return settlement

    def unsettled(self, settlement: Settlement, exc: BaseException) -> None:
        """A settlement that could not run: spooled (Redis unreachable) or logged. Never raises."""
        if isinstance(exc, errors.StoreUnavailable):
            if self.spool is not None and self.spool.add("settle", settlement.payload):
                return
        log.error("settling limits for %s failed (%s); the hold lapses unsettled",
                  settlement.payload["reservation"]["request_id"], type(exc).__name__)

    def _charge_degraded(self, ctx: RequestContext) -> None:
        """A request served without a hold (fail-open) still spends its key's budget: charged now, or spooled
        and charged once Redis answers (never more than its worst case)."""
        key, res = ctx.key, ctx.reservation
        if key is None or key.budget_usd is None:
            return
        cost = 0 if ctx.cache_hit or ctx.cost_usd is None else to_micros(ctx.cost_usd, ROUND_CEILING)
        payload = {"key_id": key.id, "period": key.budget_period, "at_s": ctx.started_wall,
                   "request_id": ctx.proxy_id, "cost_micros": min(cost, res.cost_micros) if res.cost_micros else cost,
                   "held_micros": res.cost_micros}
        try:
            self.replay_charge(payload)
        except errors.StoreUnavailable:
            if self.spool is None or not self.spool.add("charge", payload):
                log.error("charging the budget of %s for %s failed and could not be spooled", key.id, ctx.proxy_id)

    def replay_charge(self, payload: dict[str, Any]) -> None:
        """Apply a (spooled) charge; once per request id. Raises ``StoreUnavailable`` while Redis is away."""
        self.limiter.charge(payload["key_id"], period=payload["period"], at_s=float(payload["at_s"]),
                            request_id=payload["request_id"], cost_micros=int(payload["cost_micros"]),
                            held_micros=int(payload.get("held_micros") or 0))

    def spend(self, key: KeyRecord) -> dict[str, Any] | None:
        """The key's current budget period: ``{period, period_id, budget_usd, spent_usd, reserved_usd,
        remaining_usd, resets_at}`` (money as decimal strings), or ``None`` without a budget. One round
        trip; raises ``StoreUnavailable``."""
        if key.budget_usd is None:
            return None
        status = self.limiter.budget_status(key.id, to_micros(key.budget_usd), key.budget_period)
        return {"period": status["period"], "period_id": status["period_id"],
                "budget_usd": str(from_micros(status["budget_micros"])),
                "spent_usd": str(from_micros(status["spent_micros"])),
                "reserved_usd": str(from_micros(status["reserved_micros"])),
                "remaining_usd": str(from_micros(status["remaining_micros"])), "resets_at": status["resets_at"]}

    def replay_settle(self, payload: dict[str, Any]) -> None:
        """Apply a spooled settlement (idempotent: a settled or released hold is never charged twice).
        Raises ``StoreUnavailable`` while Redis is still away."""
        res = Reservation.from_dict(payload["reservation"])
        self.limiter.settle(res, actual_tokens=int(payload["tokens"]), actual_cost_micros=int(payload["cost_micros"]))
