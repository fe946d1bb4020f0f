"""The cache as the gateway uses it: decide, look up (exact, then semantic), replay, store.

Redis or embedding trouble never fails a request: the cache is bypassed for that request and the error
is logged (and counted through ``on_error``).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from lib.cache.exact import CachedAnswer, ExactCache, context_hash, request_hash, scope_for
from lib.context import RequestContext
from lib.providers.base import make_chunk, make_usage, text_of

log = logging.getLogger("aiproxy.cache")


@dataclass
class Hit:
    kind: str  # "hit-exact" | "hit-semantic"
    answer: CachedAnswer
    similarity: float | None = None


@dataclass
class Lookup:
    """What the lookup learned, reused when storing the answer (hashes, the embedding)."""

    entry_key: str | None = None
    context: str | None = None
    prompt: str | None = None
    vector: Any = None
    semantic_ok: bool = False
    # a semantic miss whose best candidate verification refused: which check, and that candidate's cosine
    veto_reason: str | None = None
    veto_similarity: float | None = None


def last_user_text(body: dict[str, Any]) -> tuple[str | None, bool]:
    """The last user message's text, and whether the request is plain text only (no images, no tools)."""
    messages = body.get("messages") or []
    plain = not body.get("tools") and not body.get("functions")
    for m in messages:
        if isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"]):
            plain = False
    for m in reversed(messages):
        if m.get("role") == "user":
            return text_of(m.get("content")), plain
    return None, plain


class CacheService:
    """Exact + semantic cache over Redis (see module docstring)."""

    def __init__(self, exact: ExactCache, *, semantic: Any = None, embed: Callable[[str], Any] | None = None,
                 token_length: Callable[[str], int] | None = None, max_semantic_tokens: int = 256,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.exact = exact
        self.semantic = semantic
        self._embed = embed
        self._token_length = token_length
        self._max_semantic_tokens = max_semantic_tokens
        self._on_error = on_error

    def _failed(self, what: str, exc: Exception) -> None:
        # The embedding server still loading (or restarting) is expected for a moment: a warning, not an error
        # report. Anything else (Redis down, a bug) is an error.
        level = logging.WARNING if type(exc).__name__ == "EmbeddingUnavailable" else logging.ERROR
        log.log(level, "cache %s failed, bypassing the cache for this request: %s: %s", what,
                type(exc).__name__, exc)
        if self._on_error:
            self._on_error(what)

    def eligible(self, body: dict[str, Any], ctx: RequestContext) -> bool:
        """Single-choice requests from keys with caching on."""
        return (body.get("n") in (None, 1)) and (ctx.key is None or ctx.key.cache)

    def consult(self, ctx: RequestContext, body: dict[str, Any], *, provider: str,
                model: str) -> tuple[Hit | None, Lookup | None]:
        """The cache's part of a request: ``lookup`` when the request may use the cache, and the context filled
        with the outcome (``cache``, the ``x-aiproxy-cache*`` headers, a refused near candidate, and for a hit its
        zero usage, the saved tokens and cost). Returns the hit (if any) and the lookup (``None``: bypassed)."""
        if not self.eligible(body, ctx) or not (ctx.cache_lookup or ctx.cache_store):
            ctx.cache = ctx.headers["x-aiproxy-cache"] = "bypass"
            return None, None
        hit, lookup = self.lookup(ctx, body, provider=provider, model=model)
        if lookup.entry_key is None:
            ctx.cache = ctx.headers["x-aiproxy-cache"] = "bypass"
            return None, None
        if hit is None:
            ctx.cache = "miss" if ctx.cache_lookup else "bypass"
            ctx.headers["x-aiproxy-cache"] = ctx.cache
            if lookup.veto_reason:  # a near one was found and refused: say which check, and how near
                ctx.cache_veto = lookup.veto_reason
                ctx.cache_similarity = None if lookup.veto_similarity is None else float(lookup.veto_similarity)
            return None, lookup
        ctx.cache = hit.kind
        ctx.cache_similarity = hit.similarity
        ctx.cache_entry = hit.answer.source_proxy_id
        ctx.provider = "cache"
        ctx.model = hit.answer.completion.get("model") or ctx.model
        ctx.prompt_tokens = ctx.completion_tokens = 0
        ctx.usage_source = "cache"
        ctx.saved_tokens = hit.answer.prompt_tokens + hit.answer.completion_tokens
        ctx.saved_cost_usd = hit.answer.cost_usd
        ctx.cost_usd = 0 if hit.answer.cost_usd is not None else None
        ctx.headers["x-aiproxy-cache"] = hit.kind
        if hit.similarity is not None:
            ctx.headers["x-aiproxy-cache-similarity"] = f"{hit.similarity:.4f}"
        ctx.mark_first_byte()
        return hit, lookup

    def lookup(self, ctx: RequestContext, body: dict[str, Any], *, provider: str, model: str) -> tuple[Hit | None, Lookup]:
        """Find a stored answer for ``body``: exact first, then semantic. Never raises. A hit sets the
        ``x-aiproxy-provider`` header a live answer would carry (entries are keyed by provider, so it is the
        provider whose answer is replayed)."""
        hit, info = self._lookup(ctx, body, provider=provider, model=model)
        if hit is not None:
            ctx.headers["x-aiproxy-provider"] = provider
        return hit, info

    def _lookup(self, ctx: RequestContext, body: dict[str, Any], *, provider: str, model: str) -> tuple[Hit | None, Lookup]:
        info = Lookup()
        scope = scope_for(ctx.key.cache_scope if ctx.key else "key", key_id=ctx.key_id or "-",
                          user_id=ctx.user_id or "-")
        try:
            info.entry_key = self.exact.entry_key(scope, request_hash(body, provider=provider, model=model))
            if ctx.cache_lookup:
                answer = self.exact.get(info.entry_key)
                if answer is not None:
                    return Hit("hit-exact", answer), info
        except Exception as exc:  # redis errors and anything unexpected: bypass, never fail the request
            self._failed("exact lookup", exc)
            info.entry_key = None
            return None, info
        if self.semantic is None or self._embed is None:
            return None, info
        prompt, plain = last_user_text(body)
        if not prompt or not plain:
            return None, info
        try:
            # Short prompts always fit the model (a word piece has at least one character), so skip the call.
            if (len(prompt) > self._max_semantic_tokens - 2 and self._token_length is not None
                    and self._token_length(prompt) > self._max_semantic_tokens):
                return None, info
            info.context = context_hash(body, scope=scope, provider=provider, model=model)
            info.prompt = prompt
            info.vector = self._embed(prompt)
            info.semantic_ok = True
            if not ctx.cache_lookup:
                return None, info
            strictness = ctx.key.cache_strictness if ctx.key is not None else "strict"
            found = self.semantic.search(info.context, prompt, vector=info.vector, strictness=strictness)
            match = found.match
            info.veto_reason, info.veto_similarity = found.veto_reason, found.veto_similarity
            if match is not None:
                answer = self.exact.get(match.payload_key)
                if answer is not None:
                    return Hit("hit-semantic", answer, float(match.similarity)), info
                self.semantic.remove(info.context, match.entry_id)  # its answer expired: forget the vector
        except Exception as exc:
            self._failed("semantic lookup", exc)
            info.semantic_ok = False
        return None, info

    def store(self, ctx: RequestContext, info: Lookup, completion: dict[str, Any]) -> None:
        """Store a successful single-choice answer under the lookup's keys. Never raises."""
        if info.entry_key is None or not ctx.cache_store:
            return
        choices = completion.get("choices") or []
        if len(choices) != 1 or choices[0].get("finish_reason") not in ("stop", "length", "tool_calls"):
            return
        answer = CachedAnswer(
            entry_key=info.entry_key,
            completion={k: v for k, v in completion.items() if k not in ("id", "created", "proxy_id")},
            prompt_tokens=ctx.prompt_tokens, completion_tokens=ctx.completion_tokens,
            cost_usd=None if ctx.cost_usd is None else str(ctx.cost_usd), created_at=time.time(),
            source_proxy_id=ctx.proxy_id, prompt=(info.prompt or "")[:2000],
        )
        try:
            self.exact.put(info.entry_key, answer)
            if info.semantic_ok and self.semantic is not None and info.context:
                self.semantic.add(info.context, info.prompt, info.entry_key, vector=info.vector)
        except Exception as exc:
            self._failed("store", exc)


def replay_completion(hit: Hit, proxy_id: str) -> dict[str, Any]:
    """The cached answer as a fresh ``chat.completion`` (new id, created time and proxy_id)."""
    completion = dict(hit.answer.completion)
    completion["id"] = "chatcmpl-" + uuid.uuid4().hex[:24]
    completion["created"] = int(time.time())
    completion["proxy_id"] = proxy_id
    return completion


def replay_stream(hit: Hit, proxy_id: str, include_usage: bool, pieces: int = 8) -> Iterator[dict[str, Any]]:
    """The cached answer as OpenAI chunks: role, content in several pieces, finish, optional usage."""
    comp = hit.answer.completion
    choice = (comp.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    cid, created, model = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time()), comp.get("model") or ""

    def chunk(**kw: Any) -> dict[str, Any]:
        c = make_chunk(id=cid, model=model, created=created, **kw)
        c["proxy_id"] = proxy_id
        if include_usage and "usage" not in c:
            c["usage"] = None
        return c

    yield chunk(delta={"role": "assistant", "content": ""})
    content = message.get("content") or ""
    size = max(1, -(-len(content) // pieces))
    for i in range(0, len(content), size):
        yield chunk(delta={"content": content[i:i + size]})
    for n, call in enumerate(message.get("tool_calls") or []):
        yield chunk(delta={"tool_calls": [{"index": n, **call}]})
    yield chunk(delta={}, finish_reason=choice.get("finish_reason") or "stop")
    if include_usage:
        yield chunk(with_choice=False, usage=make_usage(hit.answer.prompt_tokens, hit.answer.completion_tokens))


def assemble(chunks_text: str, finish_reason: str | None, model: str, prompt_tokens: int,
             completion_tokens: int, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A ``chat.completion`` built from a finished stream, for storing in the cache."""
    from lib.providers.base import make_completion

    return make_completion(model=model, content=chunks_text if chunks_text or not tool_calls else None,
                           finish_reason=finish_reason, prompt_tokens=prompt_tokens,
                           completion_tokens=completion_tokens, tool_calls=tool_calls)
