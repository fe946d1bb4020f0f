"""One frozen settings object, built from the environment and ``config.txt``, validated at start-up.

Nothing else in the code reads ``os.environ``: ``create_app`` builds a ``Settings`` once and passes the
values it needs to each collaborator. Precedence: real environment > ``config.txt`` > secrets from AWS
Secrets Manager (when ``ENVIRONMENT_TYPE`` and ``DNS_RECORD`` are set) > defaults.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger("aiproxy.settings")

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_ANTHROPIC_BASE_URL = "https://api.anthropic.com"
DEFAULT_GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
WEAK_KEYS = {"", "changeme", "change-me", "master", "admin", "password", "secret", "test", "sk-master"}
MIN_MASTER_KEY_LENGTH = 24


class SettingsError(RuntimeError):
    """Start-up configuration is invalid; the message says which variable and why (never a secret's value)."""


def _truthy(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


class Settings(BaseModel):
    """Every configuration value the proxy uses. Frozen: build a new one to change anything."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: Literal["development", "test", "production"] = "development"
    port: int = Field(8080, ge=1, le=65535)
    redis_url: str | None = None
    redis_prefix: str = "aiproxy:"
    master_key: str | None = None
    openai_api_keys: tuple[str, ...] = ()
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    anthropic_api_key: str | None = None
    anthropic_base_url: str = DEFAULT_ANTHROPIC_BASE_URL
    gemini_api_key: str | None = None
    gemini_base_url: str = DEFAULT_GEMINI_BASE_URL
    models_file: str | None = None
    pricing_file: str | None = None
    request_timeout: float = Field(30.0, gt=0, le=3600)
    max_prompt_length: int = Field(4000, gt=0)
    webhook_model: str = "gpt-4o-mini"
    max_request_bytes: int = Field(1_048_576, gt=0)
    rate_limit_enabled: bool = True
    rate_limit: int = Field(60, ge=0)
    rate_limit_window_seconds: int = Field(60, ge=1, le=3600)
    default_max_output_tokens: int = Field(1024, ge=1)
    auth_failures_per_minute: int = Field(10, ge=0)
    key_cache_seconds: float = Field(2.0, ge=0, le=300)
    redis_failure_mode: Literal["fail-open", "fail-closed"] = "fail-open"
    banned_words: tuple[str, ...] = ()
    banned_words_file: str | None = None
    semantic_cache: bool = True
    semantic_cache_threshold: float = Field(0.89, gt=0, le=1)
    cache_ttl_seconds: int = Field(86400, ge=0)
    semantic_cache_max_entries: int = Field(10000, ge=1)
    embed_socket: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_retention_days: int = Field(30, ge=1)
    log_bodies: bool = True
    log_body_max_chars: int = Field(8192, ge=0)
    honeybadger_api_key: str | None = None
    honeybadger_endpoint: str = "https://api.honeybadger.io"
    cors_allowed_origins: tuple[str, ...] = ()
    sandbox_fallback: bool = True
    metrics_public: bool = True
    trust_proxy_headers: int = Field(1, ge=0)
    environment_type: str | None = None
    dns_record: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("openai_base_url", "anthropic_base_url", "gemini_base_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def provider_configured(self, provider: str) -> bool:
        """True when ``provider`` has credentials (or, for openai, a custom OpenAI-compatible base URL)."""
        if provider == "openai":
            return bool(self.openai_api_keys) or self.openai_base_url != DEFAULT_OPENAI_BASE_URL
        if provider == "anthropic":
            return bool(self.anthropic_api_key)
        if provider == "gemini":
            return bool(self.gemini_api_key)
        return provider == "sandbox"

    def redacted(self) -> dict[str, object]:
        """The settings with every secret replaced by ``***`` (safe to log)."""
        data = self.model_dump()
        for name in ("master_key", "anthropic_api_key", "gemini_api_key", "honeybadger_api_key"):
            if data.get(name):
                data[name] = "***"
        data["openai_api_keys"] = ["***"] * len(self.openai_api_keys)
        if self.redis_url and "@" in self.redis_url:
            scheme, _, rest = self.redis_url.partition("://")
            data["redis_url"] = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return data

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, config_file: str | None = "config.txt",
                 secrets_client: object | None = None) -> "Settings":
        """Build and validate settings from ``environ`` (default ``os.environ``) over ``config_file``.

        Raises ``SettingsError`` with a clear message when a value is invalid, or in production when the
        master key is missing or weak.
        """
        env: dict[str, str] = {}
        if config_file and Path(config_file).is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(config_file).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        production = env.get("ENVIRONMENT", "development").strip().lower() == "production"
        if env.get("ENVIRONMENT_TYPE") and env.get("DNS_RECORD"):
            from lib import secrets as aws_secrets

            try:
                fetched = aws_secrets.load_secrets(env, client=secrets_client, production=production)
            except RuntimeError as exc:
                raise SettingsError(str(exc)) from exc
            for name, value in fetched.items():
                env.setdefault(name, value)
        return cls._from_mapping(env)

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str]) -> "Settings":
        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if isinstance(value, str) and value.strip() != "" else None

        environment = (get("ENVIRONMENT") or "development").lower()
        openai_keys = _csv(get("OPENAI_API_KEYS")) or _csv(get("OPENAI_API_KEY"))
        raw: dict[str, object] = {
            "environment": environment,
            "port": get("PORT") or 8080,
            "redis_url": get("REDIS_URL"),
            "redis_prefix": get("REDIS_PREFIX") or "aiproxy:",
            "master_key": get("AIPROXY_MASTER_KEY"),
            "openai_api_keys": openai_keys,
            "openai_base_url": get("OPENAI_BASE_URL") or DEFAULT_OPENAI_BASE_URL,
            "anthropic_api_key": get("ANTHROPIC_API_KEY"),
            "anthropic_base_url": get("ANTHROPIC_BASE_URL") or DEFAULT_ANTHROPIC_BASE_URL,
            "gemini_api_key": get("GEMINI_API_KEY"),
            "gemini_base_url": get("GEMINI_BASE_URL") or DEFAULT_GEMINI_BASE_URL,
            "models_file": get("MODELS_FILE"),
            "pricing_file": get("PRICING_FILE"),
            "request_timeout": get("REQUEST_TIMEOUT") or 30,
            "max_prompt_length": get("MAX_PROMPT_LENGTH") or 4000,
            "webhook_model": get("WEBHOOK_MODEL") or "gpt-4o-mini",
            "max_request_bytes": get("MAX_REQUEST_BYTES") or 1_048_576,
            "rate_limit_enabled": _truthy(get("RATE_LIMIT_ENABLED"), True),
            "rate_limit": get("RATE_LIMIT") or 60,
            "default_max_output_tokens": get("DEFAULT_MAX_OUTPUT_TOKENS") or 1024,
            "rate_limit_window_seconds": get("RATE_LIMIT_WINDOW_SECONDS") or 60,
            "auth_failures_per_minute": get("AUTH_FAILURES_PER_MINUTE") or 10,
            "key_cache_seconds": get("KEY_CACHE_SECONDS") if get("KEY_CACHE_SECONDS") is not None else 2.0,
            "redis_failure_mode": (get("REDIS_FAILURE_MODE")
                                   or ("fail-closed" if environment == "production" else "fail-open")),
            "banned_words": _csv(get("BANNED_WORDS")),
            "banned_words_file": get("BANNED_WORDS_FILE"),
            "semantic_cache": _truthy(get("SEMANTIC_CACHE"), True),
            "semantic_cache_threshold": get("SEMANTIC_CACHE_THRESHOLD") or 0.89,
            "cache_ttl_seconds": get("CACHE_TTL_SECONDS") or 86400,
            "semantic_cache_max_entries": get("SEMANTIC_CACHE_MAX_ENTRIES") or 10000,
            "embed_socket": get("EMBED_SOCKET"),
            "log_level": get("LOG_LEVEL") or "INFO",
            "log_retention_days": get("LOG_RETENTION_DAYS") or 30,
            "log_bodies": _truthy(get("LOG_BODIES"), True),
            "log_body_max_chars": get("LOG_BODY_MAX_CHARS") or 8192,
            "honeybadger_api_key": get("HONEYBADGER_API_KEY"),
            "honeybadger_endpoint": get("HONEYBADGER_ENDPOINT") or "https://api.honeybadger.io",
            "cors_allowed_origins": _csv(get("CORS_ALLOWED_ORIGINS")),
            "sandbox_fallback": _truthy(get("SANDBOX_FALLBACK"), environment != "production"),
            "metrics_public": _truthy(get("METRICS_PUBLIC"), environment != "production"),
            "trust_proxy_headers": get("TRUST_PROXY_HEADERS") or (1 if environment == "production" else 0),
            "environment_type": get("ENVIRONMENT_TYPE"),
            "dns_record": get("DNS_RECORD"),
        }
        try:
            settings = cls(**raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise SettingsError(f"invalid configuration: {problems}") from None
        settings.check_production()
        return settings

    def check_production(self) -> None:
        """Fail fast in production on a missing or weak master key. Raises ``SettingsError``."""
        if not self.is_production:
            return
        if not self.redis_url:
            raise SettingsError("REDIS_URL is required in production: a private Redis per instance would give every "
                                "instance its own limits, budgets, cache and logs")
        key = self.master_key or ""
        if not key:
            raise SettingsError("AIPROXY_MASTER_KEY is required in production (set it or store it in Secrets Manager)")
        if key.lower() in WEAK_KEYS or len(key) < MIN_MASTER_KEY_LENGTH or len(set(key)) < 8:
            raise SettingsError(
                f"AIPROXY_MASTER_KEY is too weak for production: use at least {MIN_MASTER_KEY_LENGTH} random "
                "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
