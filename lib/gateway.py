"""The request pipeline for chat completions, with no HTTP in it.

One request, in order: authorize the model → policy → rate limit and budget reservation → cache lookup →
route (alias, provider, fallbacks, all inside one deadline) → provider call (plain or streamed) → count
tokens and price → settle the reservation, store the cache entry, write the log and usage. ``src/`` parses
HTTP, calls ``complete`` or ``stream`` here, and serializes what comes back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from lib import errors, offload
from lib.accounting import Accounting
from lib.balancer import attempts, cools
from lib.cache.service import Hit, Lookup, assemble, replay_completion, replay_stream
from lib.context import RequestContext
from lib.keys import KeyChanged
from lib.providers.base import Provider, make_chunk, make_usage, text_of
from lib.router import Route, Router
from lib.protocols.chat import ChatCompletionRequest
from lib.settings import Settings

log = logging.getLogger("aiproxy.gateway")


@dataclass(frozen=True)
class Target:
    """One concrete attempt: a provider instance and the upstream model name to ask it for."""

    provider: Provider
    model: str
    route: Route
    substituted: bool = False  # the sandbox stands in for an unconfigured provider
    deployment: str | None = None  # ``instance/model`` when the route load-balances over deployments

    @property
    def scope(self) -> tuple[str, str]:
        """``(provider, model)`` the cache keys this attempt's answers by: one pool per load-balanced route,
        whichever deployment answered (named by its first deployment)."""
        if self.deployment is not None:
            return self.route.provider, self.route.model
        return self.provider.name, self.model


class Gateway:
    """Runs chat requests through the pipeline. Collaborators are passed in, built once per app."""

    def __init__(
        self,
        *,
        settings: Settings,
        router: Router,
        providers: dict[str, Provider],
        accounting: Accounting,
        recorder: Callable[[RequestContext], None] | None = None,
        limits: Any = None,
        cache: Any = None,
        policy: Any = None,
        keys: Any = None,
        clock: Callable[[], float] = time.monotonic,
        on_upstream_error: Callable[[str, str], None] | None = None,
        balancer: Any = None,
    ) -> None:
        self.settings = settings
        self.router = router
        self.providers = providers
        self._recorder = recorder
        self.limits = limits
        self.accounting = accounting
        self.cache = cache
        self.policy = policy
        self.keys = keys
        self._clock = clock
        self._on_upstream_error = on_upstream_error
        self.balancer = balancer

    # -- before the call ---------------------------------------------------------------------------
    def targets(self, ctx: RequestContext, model: str) -> list[Target]:
        """The attempts for ``model`` in order (route, then fallbacks), after the key's model check.

        Raises ``ModelNotFound`` (404), ``ModelNotAllowed`` (403), or ``UpstreamUnavailable`` (503) when a
        provider has no credentials and the sandbox may not stand in.
        """
        routes = self.router.candidates(model)
        if ctx.key is not None and not ctx.key.allows_model(model):
            raise errors.ModelNotAllowed(f"This key is not allowed to use the model '{model}'.", param="model")
        out: list[Target] = []
        cooling: list[Target] = []  # deployments cooling down: tried last, should nothing else answer
        missing: Route | None = None
        for route in routes:
            for name, upstream, deployment, cooled in attempts(route, self.balancer):
                provider = self.providers.get(name)
                if provider is not None and provider.configured():
                    (cooling if cooled else out).append(Target(provider, upstream, route, deployment=deployment))
                elif self.settings.sandbox_fallback and "sandbox" in self.providers:
                    if not any(t.substituted for t in out):
                        out.append(Target(self.providers["sandbox"], "sandbox", route, substituted=True))
                else:
                    missing = Route(route.name, name, upstream)
        out.extend(cooling)
        if not out and missing is not None:
            raise errors.UpstreamUnavailable(
                f"No credentials are configured for provider '{missing.provider}' (model '{missing.name}').",
                provider=missing.provider)
        if not out:
            raise errors.UpstreamUnavailable(f"No configured provider can serve '{model}'.")
        return out

    def prepare(self, ctx: RequestContext, req: ChatCompletionRequest) -> tuple[list[Target], dict[str, Any]]:
        """Authorization, policy and limits for ``req``. Returns the targets to try and the upstream body —
        with the output cap the budget reserved when the request set none. Raises ``GatewayError``."""
        ctx.requested_model = req.model
        ctx.stream = bool(req.stream)
        if self.policy is not None:
            offload.cpu(lambda: self.policy.check(req.prompt_texts()), heavy=req.heavy)
        targets, cap = self._admit(ctx, lambda models: self.limits.reserve(ctx, req, models))
        body = offload.cpu(req.upstream_body, heavy=req.heavy)
        if cap is not None:
            body["max_completion_tokens"] = cap  # a budget is a cap: the provider may not write past it
        return targets, body

    def _admit(self, ctx: RequestContext, reserve: Callable[[list[str]], Any],
               usable: Callable[[Target], bool] | None = None) -> tuple[list[Target], Any]:
        """Route ``ctx.requested_model`` for the key and reserve its limits (``reserve(models)``), which also
        confirms the key record is current; a key changed since this worker read it is re-read and checked
        again (revoked, deactivated, expired, new limits or models), at most twice. Returns the targets and
        what ``reserve`` returned. ``usable`` keeps only the targets that can serve the request (400 if none)."""
        for _ in range(3):
            targets = self.targets(ctx, ctx.requested_model or "")
            if usable is not None:
                targets = [t for t in targets if usable(t)]
                if not targets:
                    raise errors.InvalidValue(f"The model '{ctx.requested_model}' does not support this endpoint.",
                                              param="model", code="unsupported_model")
            ctx.model = targets[0].model  # the provider is named once one is actually called
            if self.limits is None:
                return targets, None
            try:
                return targets, reserve([t.model for t in targets])
            except KeyChanged:
                ctx.key = self.keys.refresh(ctx.key)
        raise errors.ServiceUnavailable("This key is being changed right now; try again.")

    # -- the call --------------------------------------------------------------------------------
    def complete(self, ctx: RequestContext, req: ChatCompletionRequest) -> dict[str, Any]:
        """Answer a non-streamed request. Returns the ``chat.completion`` dict (with ``proxy_id``).

        Raises ``GatewayError`` subclasses; the caller records the context either way.
        """
        targets, body = self.prepare(ctx, req)
        hit, lookup = self._cache_lookup(ctx, body, targets[0])
        if hit is not None:
            return replay_completion(hit, ctx.proxy_id)
        target, result = self._first_answer(ctx, targets, lambda t, remaining: t.provider.complete(
            {**body, "model": t.model}, model=t.model, timeout=remaining))
        ctx.mark_first_byte()
        self._answered_by(ctx, target, result.get("model"))
        result["model"] = ctx.model
        result["proxy_id"] = ctx.proxy_id
        self._take_usage(ctx, req, result.get("usage"), _completion_text(result))
        self.accounting.price(ctx)
        if lookup is not None and self.cache is not None:
            self.cache.store(ctx, lookup, result)
        return result

    def stream(self, ctx: RequestContext, req: ChatCompletionRequest) -> Iterator[dict[str, Any]]:
        """Start a streamed request and return an iterator of chunk dicts (each with ``proxy_id``).

        Everything up to the first upstream chunk happens now, so a failure before the first byte raises
        here (an ordinary HTTP error); a failure later becomes one ``{"error": ...}`` item, then the end.
        The iterator records the request when it ends, however it ends (including client disconnects).
        """
        targets, body = self.prepare(ctx, req)
        hit, lookup = self._cache_lookup(ctx, body, targets[0])
        if hit is not None:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return self._replay(ctx, replay_stream(hit, ctx.proxy_id, include_usage))

        def open_stream(t: Target, remaining: float) -> tuple[Iterator[dict[str, Any]], dict[str, Any] | None]:
            # Providers open the upstream connection here, so HTTP errors surface before any byte is sent.
            upstream = t.provider.stream({**body, "model": t.model}, model=t.model, timeout=remaining)
            try:
                first = next(upstream, None)
            except Exception:
                _close(upstream)
                raise
            if first is None:  # a body that is not an event stream, or an empty one: another provider may do
                _close(upstream)
                raise errors.UpstreamError(f"Provider '{t.provider.name}' sent an empty stream",
                                           provider=t.provider.name)
            return upstream, first

        target, (upstream, first) = self._first_answer(ctx, targets, open_stream)
        self._answered_by(ctx, target, first.get("model") if first else None)
        return self._relay(ctx, req, upstream, first, lookup)

    def _cache_lookup(self, ctx: RequestContext, body: dict[str, Any], target: Target) -> tuple[Hit | None, Lookup | None]:
        """Look the request up in the cache under the first target's scope (``CacheService.consult``)."""
        if self.cache is None:
            ctx.cache = ctx.headers["x-aiproxy-cache"] = "bypass"
            return None, None
        provider, model = target.scope
        return self.cache.consult(ctx, body, provider=provider, model=model)

    def _replay(self, ctx: RequestContext, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        parts: list[str] = []
        try:
            for chunk in chunks:
                for choice in chunk.get("choices") or []:
                    parts.append((choice.get("delta") or {}).get("content") or "")
                yield chunk
        except GeneratorExit:
            ctx.client_disconnected, ctx.status, ctx.error_code = True, 499, "client_disconnected"
            raise
        finally:
            self._log_streamed_text(ctx, "".join(parts))
            self.finish(ctx)

    def _log_streamed_text(self, ctx: RequestContext, text: str) -> None:
        """A stream's log record keeps the text it actually sent (the store cuts it like any logged body)."""
        if self.settings.log_bodies and ctx.response_body is None:
            ctx.response_body = text

    def _relay(self, ctx: RequestContext, req: ChatCompletionRequest, upstream: Iterator[dict[str, Any]],
               first: dict[str, Any] | None, lookup: Lookup | None = None) -> Iterator[dict[str, Any]]:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        usage: dict[str, Any] | None = None
        parts: list[str] = []
        last_chunk: dict[str, Any] | None = None
        finish_reason: str | None = None
        text_only = True
        try:
            chunk = first
            while chunk is not None:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if chunk.get("choices"):
                    for choice in chunk["choices"]:
                        delta = choice.get("delta") or {}
                        if isinstance(delta.get("content"), str):
                            parts.append(delta["content"])
                        for call in delta.get("tool_calls") or []:
                            text_only = False
                            parts.append((call.get("function") or {}).get("arguments") or "")
                        finish_reason = choice.get("finish_reason") or finish_reason
                    out = dict(chunk)
                    out["model"] = ctx.model
                    out["proxy_id"] = ctx.proxy_id
                    if include_usage:
                        out["usage"] = None
                    else:
                        out.pop("usage", None)
                    last_chunk = out
                    ctx.mark_first_byte()
                    yield out
                chunk = next(upstream, None)
            if finish_reason is None:  # the connection closed without a finish: the answer is not whole
                raise errors.UpstreamError(f"Provider '{ctx.provider}' ended the stream before it finished",
                                           provider=ctx.provider)
            self._take_usage(ctx, req, usage, "".join(parts))
            self.accounting.price(ctx)
            if lookup is not None and self.cache is not None and text_only and finish_reason:
                self.cache.store(ctx, lookup, assemble("".join(parts), finish_reason, ctx.model or "",
                                                       ctx.prompt_tokens, ctx.completion_tokens))
            if include_usage:
                base = last_chunk or make_chunk(id="chatcmpl-empty", model=ctx.model or "", created=int(time.time()))
                yield {**make_chunk(id=base["id"], model=ctx.model or "", created=base["created"],
                                    with_choice=False,
                                    usage=make_usage(ctx.prompt_tokens, ctx.completion_tokens)),
                       "proxy_id": ctx.proxy_id}
        except Exception as raw:  # noqa: BLE001 - whatever breaks a stream ends it with an error event
            exc = raw if isinstance(raw, errors.GatewayError) else _unexpected(raw, ctx.provider)
            log.warning("stream %s failed mid-way: %s %s", ctx.proxy_id, exc.status, exc.code)
            self._take_usage(ctx, req, usage, "".join(parts))
            ctx.status, ctx.error_code, ctx.error_message = exc.status, exc.code, exc.message
            self._keep_upstream_error(ctx, exc)
            yield exc.to_dict()
        except GeneratorExit:
            ctx.client_disconnected = True
            ctx.status = 499
            ctx.error_code = "client_disconnected"
            self._take_usage(ctx, req, usage, "".join(parts))
            raise
        finally:
            _close(upstream)
            self._log_streamed_text(ctx, "".join(parts))
            self.finish(ctx)

    def embed(self, ctx: RequestContext, req: Any) -> dict[str, Any]:
        """Answer an embeddings request (``lib.protocols.chat.EmbeddingRequest``) through routing, limits and
        fallbacks. Returns OpenAI's ``list`` of embeddings (with ``proxy_id``). Raises ``GatewayError``."""
        ctx.requested_model = req.model

        def reserve(models: list[str]) -> None:
            counted = sum(tokens_of(t, models[0]) for t in req.texts())
            self.limits.reserve_tokens(ctx, counted, 0, models)

        targets, _ = self._admit(ctx, reserve, usable=lambda t: hasattr(t.provider, "embed"))
        body = req.model_dump(exclude_none=True)
        target, result = self._first_answer(ctx, targets, lambda t, remaining: t.provider.embed(  # type: ignore[attr-defined]
            {**body, "model": t.model}, model=t.model, timeout=remaining))
        ctx.mark_first_byte()
        self._answered_by(ctx, target, result.get("model"))
        usage = result.get("usage") or {}
        ctx.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        ctx.usage_source = "provider" if usage else "counted"
        if not usage:
            ctx.prompt_tokens = sum(tokens_of(t, ctx.model or req.model) for t in req.texts())
        self.accounting.price(ctx)
        result["model"] = ctx.model
        result["proxy_id"] = ctx.proxy_id
        return result

    def _first_answer(self, ctx: RequestContext, targets: list[Target],
                      attempt: Callable[[Target, float], Any]) -> tuple[Target, Any]:
        """Try ``attempt(target, seconds_left)`` on each target in order, all inside one REQUEST_TIMEOUT
        deadline, moving on when an attempt fails in a way another provider could cure. Returns the target
        that answered and its answer; raises the last ``UpstreamError`` (or ``UpstreamTimeout``)."""
        deadline = self._clock() + self.settings.request_timeout
        last: errors.UpstreamError | None = None
        for target in targets:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            try:
                return target, attempt(target, remaining)
            except errors.UpstreamError as exc:
                last = self._attempt_failed(ctx, target, exc)
            except errors.GatewayError:
                raise
            except Exception as exc:  # noqa: BLE001 - a malformed answer (not JSON, not a stream) is the provider's failure
                last = self._attempt_failed(ctx, target, _unexpected(exc, target.provider.name))
        raise last or errors.UpstreamTimeout("The request deadline passed before any provider answered.")

    # -- after the call ----------------------------------------------------------------------------
    def _attempt_failed(self, ctx: RequestContext, target: Target, exc: errors.UpstreamError) -> errors.UpstreamError:
        ctx.provider, ctx.model = target.provider.name, target.model
        ctx.attempts.append(f"{target.deployment or target.provider.name + '/' + target.model}: {exc.status} {exc.code}")
        self._keep_upstream_error(ctx, exc)
        log.warning("proxy_id=%s provider=%s model=%s failed: %s %s", ctx.proxy_id, target.provider.name,
                    target.model, exc.status, exc.code)
        if self._on_upstream_error is not None:
            self._on_upstream_error(target.provider.name, exc.code)
        if target.deployment is not None and self.balancer is not None and cools(exc):
            self.balancer.cool(target.deployment, exc.retry_after, f"{exc.status} {exc.code}")
        if not exc.retryable:
            raise exc
        return exc

    def _keep_upstream_error(self, ctx: RequestContext, exc: errors.GatewayError) -> None:
        """What the provider said about a failure goes to the owner's request log only (when bodies are
        kept: it may quote the prompt), never to stdout or to the client."""
        body = getattr(exc, "upstream_body", None)
        if body and self.settings.log_bodies:
            ctx.upstream_error = body

    def _answered_by(self, ctx: RequestContext, target: Target, reported_model: str | None) -> None:
        ctx.provider = target.provider.name
        ctx.deployment = None if target.substituted else target.deployment
        if ctx.deployment is not None:
            ctx.headers["x-aiproxy-deployment"] = ctx.deployment
        ctx.model = target.model if target.substituted else (reported_model or target.model)
        ctx.headers["x-aiproxy-provider"] = target.provider.name
        if target.substituted:
            ctx.headers["x-aiproxy-sandbox"] = (
                f"provider '{target.route.provider}' has no credentials configured; the sandbox answered")

    def _take_usage(self, ctx: RequestContext, req: ChatCompletionRequest, usage: dict[str, Any] | None,
                    completion_text: str) -> None:
        """Record token usage: the provider's when it reported one, else counted locally."""
        if usage and usage.get("prompt_tokens") is not None:
            ctx.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            ctx.completion_tokens = int(usage.get("completion_tokens") or 0)
            ctx.usage_source = "provider"
        else:
            ctx.prompt_tokens, ctx.completion_tokens = self.accounting.count(req, completion_text, ctx.model)
            ctx.usage_source = "counted"

    def finish(self, ctx: RequestContext) -> None:
        """Settle limits and write the request's one log record. Safe to call twice (records once)."""
        if ctx.finished:
            return
        ctx.finished = True
        if not ctx.cache_hit and not ctx.priced:
            self.accounting.price(ctx)
        settlement = None
        if self.limits is not None and ctx.reservation is not None:
            try:
                settlement = self.limits.settlement(ctx)
            except Exception:  # settling must never break the response path
                log.exception("settling limits failed for %s", ctx.proxy_id)
        if self._recorder is None:
            if settlement is not None:
                self.limits.settle(ctx)
            return
        try:  # the settlement and the log record go to Redis in one round trip
            self._recorder(ctx, settlement)
        except Exception:
            log.exception("recording request %s failed", ctx.proxy_id)


def tokens_of(text: str, model: str) -> int:
    from lib.accounting.tokens import count_tokens

    return count_tokens(text, model)


def _unexpected(exc: BaseException, provider: str | None) -> errors.UpstreamError:
    """An exception no adapter converted (a body that is not JSON, not an event stream, not the expected
    shape) as the upstream failure it is: 502, retryable on another provider. The traceback goes to the log."""
    log.error("provider %s answered in a way the gateway could not read: %s", provider, type(exc).__name__,
              exc_info=exc)
    return errors.UpstreamError(f"Provider '{provider}' sent an answer the gateway could not read", provider=provider)


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken upstream must not mask the real outcome
            log.debug("closing upstream stream raised", exc_info=True)


def _completion_text(result: dict[str, Any]) -> str:
    out = []
    for choice in result.get("choices") or []:
        message = choice.get("message") or {}
        out.append(text_of(message.get("content")))
        for call in message.get("tool_calls") or []:
            out.append((call.get("function") or {}).get("arguments") or "")
    return "".join(out)
