"""Rate limits and budgets as the gateway applies them to one request (``lib.limits.ratelimit`` does the Redis work).

Before the upstream call: reserve the request (rpm), the prompt's counted tokens plus the output cap (tpm)
and the worst-case cost (budget), in one atomic script. After it: settle to the real tokens and cost and
release the rest. A key's ``rpm`` overrides ``RATE_LIMIT`` (0 = no request limit for that key); ``tpm`` and
``budget_usd`` apply only when set. A budgeted key asking for a model with no price is refused, never
served for free.
"""

from __future__ import annotations

import logging
from decimal import ROUND_CEILING, Decimal
from typing import Callable

from lib import errors
from lib.accounting import Accounting
from lib.context import RequestContext
from lib.accounting.money import to_micros
from lib.limits.ratelimit import Limiter
from lib.protocols.chat import ChatCompletionRequest

log = logging.getLogger("aiproxy.quota")


class Quota:
    """Applies a key's limits and budget around one request (see module docstring)."""

    def __init__(self, limiter: Limiter, accounting: Accounting, *, default_rpm: int | None, fail_mode: str,
                 on_degraded: Callable[[Exception], None] | None = None) -> None:
        self.limiter = limiter
        self.accounting = accounting
        self.default_rpm = default_rpm
        self.fail_mode = fail_mode
        self._on_degraded = on_degraded

    def reserve(self, ctx: RequestContext, req: ChatCompletionRequest, models: list[str]) -> None:
        """Reserve for a chat request (``models``: every upstream model it may be sent to, fallbacks included).

        Sets ``ctx.reservation`` and the ``x-ratelimit-*`` headers. Raises ``RateLimited`` /
        ``BudgetExceeded`` (429), ``PermissionDenied`` (403 ``model_unpriced``), or ``ServiceUnavailable``
        (503) when Redis is down and the mode is fail-closed.
        """
        if ctx.key is None:
            return
        needs_count = bool(ctx.key.tpm) or ctx.key.budget_usd is not None
        prompt = self.accounting.prompt_tokens(req, models[0]) if needs_count else 0
        self.reserve_tokens(ctx, prompt, req.output_limit or self.accounting.default_max_output, models)

    def reserve_tokens(self, ctx: RequestContext, prompt_tokens: int, output_tokens: int, models: list[str]) -> None:
        """Reserve one request of ``prompt_tokens`` in and at most ``output_tokens`` out (see ``reserve``)."""
        key = ctx.key
        if key is None:
            return
        rpm = key.rpm if key.rpm is not None else self.default_rpm
        rpm = rpm or None
        tpm = key.tpm or None
        budget_micros = to_micros(key.budget_usd) if key.budget_usd is not None else None
        if rpm is None and tpm is None and budget_micros is None:
            return
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
        ctx.reservation = self.limiter.reserve_or_degrade(
            key.id, fail_mode=self.fail_mode, on_degraded=self._on_degraded, rpm=rpm, tpm=tpm, tokens=tokens,
            budget_micros=budget_micros, budget_period=key.budget_period, cost_micros=cost_micros,
            request_id=ctx.proxy_id)
        ctx.headers.update(ctx.reservation.headers())

    def settle(self, ctx: RequestContext) -> None:
        """Swap the reservation for what the request really used (nothing for a cache hit; a request that
        failed before any provider answered is released). Never raises."""
        res = ctx.reservation
        if res is None or res.degraded:
            return
        try:
            if ctx.cache_hit:
                self.limiter.settle(res, actual_tokens=0, actual_cost_micros=0)
            elif ctx.status >= 400 and not (ctx.prompt_tokens or ctx.completion_tokens):
                self.limiter.release(res)
            else:
                cost = None if ctx.cost_usd is None else to_micros(ctx.cost_usd, ROUND_CEILING)
                self.limiter.settle(res, actual_tokens=ctx.prompt_tokens + ctx.completion_tokens,
                                    actual_cost_micros=cost)
        except errors.GatewayError as exc:
            # The hold lapses on its own (hold TTL), so nothing leaks; but say so loudly.
            log.error("settling limits for %s failed: %s", ctx.proxy_id, exc.message)
