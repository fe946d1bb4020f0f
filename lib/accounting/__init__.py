"""Counting and pricing one request: the gateway's view of ``lib.accounting.tokens`` and ``lib.accounting.pricing``.

Usage comes from the provider when it reports one; otherwise (a stream with no usage, a broken stream,
a client that left mid-way) it is counted locally with tiktoken, and the log says ``usage_source:
counted``. A model with no price gets cost ``None`` and ``unpriced: true`` — never $0 — plus a warning and
a metric (through ``PriceBook``'s ``on_unpriced`` hook).
"""

from __future__ import annotations

from lib import offload
from lib.accounting import tokens
from lib.context import RequestContext
from lib.accounting.pricing import PriceBook
from lib.protocols.chat import ChatCompletionRequest


class Accounting:
    """Counts tokens and prices requests for the gateway."""

    def __init__(self, prices: PriceBook, *, default_max_output: int = 1024) -> None:
        self.prices = prices
        self.default_max_output = default_max_output

    def prompt_tokens(self, req: ChatCompletionRequest, model: str) -> int:
        """Tokens of ``req``'s prompt as OpenAI counts them (an approximation for other providers' models);
        counted once per request and model, off the gevent loop for a large request (``lib.offload``)."""
        return req.counted(model, lambda: offload.cpu(_count_prompt, req, model, heavy=req.heavy))

    def count(self, req: ChatCompletionRequest, completion_text: str, model: str | None) -> tuple[int, int]:
        """``(prompt_tokens, completion_tokens)`` counted locally."""
        name = model or req.model
        return self.prompt_tokens(req, name), tokens.count_tokens(completion_text, name)

    def price(self, ctx: RequestContext) -> None:
        """Set ``ctx.cost_usd`` / ``ctx.unpriced`` from the context's tokens and resolved model."""
        if ctx.model is None:
            return
        result = self.prices.cost_of(ctx.prompt_tokens, ctx.completion_tokens, ctx.model)
        ctx.cost_usd, ctx.unpriced, ctx.priced = result.cost, result.unpriced, True
        if result.unpriced and (ctx.prompt_tokens or ctx.completion_tokens):
            ctx.headers["x-aiproxy-unpriced"] = "true"


def _count_prompt(req: ChatCompletionRequest, model: str) -> int:
    messages = [m.model_dump(exclude_none=True) for m in req.messages]
    tools = [t.model_dump(exclude_none=True) for t in req.tools] if req.tools else None
    return tokens.count_chat_tokens(messages, model, tools=tools)
