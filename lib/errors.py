"""The gateway's error hierarchy: every error a client can see, with its HTTP status, OpenAI type and code.

    GatewayError (500 server_error / internal_error)
    ├── InvalidRequest (400 invalid_request_error)
    │   ├── InvalidJSON            invalid_json
    │   ├── MissingField           missing_field
    │   ├── InvalidValue           invalid_value
    │   ├── ContextLengthExceeded  context_length_exceeded
    │   └── RequestTooLarge (413)  request_too_large
    ├── AuthenticationError (401 authentication_error)  invalid_api_key / missing_api_key
    ├── PermissionDenied (403 permission_error)
    │   ├── KeyInactive            key_inactive
    │   ├── KeyExpired             key_expired
    │   ├── ModelNotAllowed        model_not_allowed
    │   └── PolicyViolation        policy_violation
    ├── NotFound (404 not_found_error)
    │   ├── ModelNotFound          model_not_found
    │   └── LogNotFound            log_not_found
    ├── RateLimited (429 rate_limit_error)       rate_limit_exceeded   (+ Retry-After)
    ├── BudgetExceeded (429 insufficient_quota)  budget_exceeded
    ├── ServiceUnavailable (503 server_error)    service_unavailable
    │   └── StoreUnavailable                     our own state store (Redis) is unreachable
    └── UpstreamError (502 upstream_error)       upstream_error
        ├── UpstreamBadRequest (400 invalid_request_error)  the provider rejected the request itself
        ├── UpstreamAuthError (502)                          the proxy's provider credentials failed
        ├── UpstreamRateLimited (429 rate_limit_error)       provider throttled us (+ Retry-After)
        ├── UpstreamNotFound (404 not_found_error)           model_not_found at the provider
        ├── UpstreamUnavailable (503)                        upstream_unavailable (connect failed, not configured)
        └── UpstreamTimeout (504)                            upstream_timeout

Lower-level exceptions are converted into these at one boundary each (Redis: ``lib.store.store_errors``;
httpx and provider SDKs: each adapter's edge),
with ``raise ... from exc``; raw upstream bodies are logged there, never put in a message.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error that becomes an OpenAI error envelope."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str = "Internal error",
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def retryable(self) -> bool:
        """True when trying another provider or key could help."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error envelope for this error."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response_headers(self) -> dict[str, str]:
        """Extra headers to send with the error (Retry-After and friends)."""
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, int(-(-self.retry_after // 1))))
        return headers


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidJSON(InvalidRequest):
    code = "invalid_json"


class MissingField(InvalidRequest):
    code = "missing_field"


class InvalidValue(InvalidRequest):
    code = "invalid_value"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class RequestTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class KeyInactive(PermissionDenied):
    code = "key_inactive"


class KeyExpired(PermissionDenied):
    code = "key_expired"


class ModelNotAllowed(PermissionDenied):
    code = "model_not_allowed"


class PolicyViolation(PermissionDenied):
    code = "policy_violation"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class LogNotFound(NotFound):
    code = "log_not_found"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class StoreUnavailable(ServiceUnavailable):
    """Redis (or Redis Cluster) failed; raised only by ``lib.store.store_errors``."""


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str = "The upstream provider failed", *, provider: str | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.provider = provider
        self.upstream_body: str | None = None  # what the provider said, for the owner's request log only

    @property
    def retryable(self) -> bool:
        return True


class UpstreamBadRequest(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"

    @property
    def retryable(self) -> bool:
        return False


class UpstreamAuthError(UpstreamError):
    code = "upstream_auth_failed"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamNotFound(UpstreamError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"

    @property
    def retryable(self) -> bool:
        return False


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def from_status(status: int, message: str, *, provider: str, retry_after: float | None = None) -> UpstreamError:
    """Map an upstream HTTP status to the gateway error a client should see.

    400/422 → 400 (the request itself was bad), 401/403 → 502 (our provider credentials failed),
    404 → 404 model_not_found, 408 → 504, 429 → 429 with Retry-After passed on, 503/529 → 503
    upstream_unavailable, anything else → 502.
    """
    if status in (400, 413, 422):
        return UpstreamBadRequest(message, provider=provider)
    if status in (401, 403):
        return UpstreamAuthError(
            f"The proxy's credentials for provider '{provider}' were rejected by the provider "
            f"(HTTP {status}). This is a gateway configuration problem, not your key.",
            provider=provider,
        )
    if status == 404:
        return UpstreamNotFound(message, provider=provider)
    if status == 408:
        return UpstreamTimeout(f"Provider '{provider}' timed out", provider=provider)
    if status in (503, 529):
        return UpstreamUnavailable(f"Provider '{provider}' is overloaded or unavailable (HTTP {status})",
                                   provider=provider, retry_after=retry_after)
    if status == 429:
        return UpstreamRateLimited(
            f"Provider '{provider}' is rate limiting the proxy: {message}", provider=provider, retry_after=retry_after
        )
    return UpstreamError(f"Provider '{provider}' failed with HTTP {status}", provider=provider)
