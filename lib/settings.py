"""One frozen settings object, declared once, built from the environment and ``config.txt``, validated at start-up.

Each field is one setting; its environment variable is the field name in upper case (``request_timeout`` →
``REQUEST_TIMEOUT``) unless an alias says otherwise, and its default is written once, on the field. The
defaults that depend on ``ENVIRONMENT`` (production fails closed, never lets the sandbox stand in, hides
``/metrics``, trusts the ALB's ``X-Forwarded-For``, keeps no request/response bodies in the request log) are
filled in by one validator, ``_environment_defaults``.
Provider settings are not fields here: each provider type declares its own variables
(``lib.providers.registry``) and ``providers`` holds the instances they produce, together with the named
instances of ``MODELS_FILE``'s ``providers:`` section (``lib.providers.instances``), whose secrets are read
from this same merged mapping by the variable names the file gives.

Why not ``pydantic-settings``: it reads ``os.environ`` and env files itself, while the gateway must build
settings from a given mapping (tests, the gunicorn master, values fetched from Secrets Manager); a plain
model validated from one merged mapping gives the same single declaration without a custom source.

Nothing else in the code reads ``os.environ``. Precedence: real environment > ``config.txt`` > secrets
from AWS Secrets Manager (when ``ENVIRONMENT_TYPE`` and ``DNS_RECORD`` are set) > defaults.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lib.providers import REGISTRY
from lib.providers.instances import build_instances, instance_types
from lib.providers.registry import ProviderConfig

log = logging.getLogger("aiproxy.settings")

WEAK_KEYS = {"", "changeme", "change-me", "master", "admin", "password", "secret", "test", "sk-master"}
MIN_MASTER_KEY_LENGTH = 24
_FAILURE_MODES = {"open": "fail-open", "closed": "fail-closed", "fail-open": "fail-open", "fail-closed": "fail-closed"}


class SettingsError(RuntimeError):
    """Start-up configuration is invalid; the message says which variable and why (never a secret's value)."""


def _csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseModel):
    """Every configuration value the proxy uses. Frozen: ``model_copy(update=...)`` to change anything."""

    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=str.upper, validate_by_name=True,
                              validate_by_alias=True, arbitrary_types_allowed=True)

    # -- runtime and serving (bin/start.sh → src/serve.py → gunicorn) ----------------------------------
    environment: Literal["development", "test", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    web_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    worker_connections: int = Field(1000, ge=1)
    gunicorn_timeout: int = Field(120, ge=1)
    graceful_timeout: int = Field(90, ge=0)
    keepalive: int = Field(75, ge=0)
    request_header_timeout: float = Field(10.0, gt=0, le=3600)  # first byte of a request head → its end
    request_body_timeout: float = Field(60.0, gt=0, le=3600)  # end of the head → end of the body
    access_log: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    trust_proxy_headers: int = Field(ge=0)  # default from ENVIRONMENT
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    prometheus_multiproc_dir: str | None = None  # set by bin/start.sh for gunicorn's workers

    # -- state -------------------------------------------------------------------------------------------
    redis_url: str | None = None
    redis_prefix: str = "aiproxy:"
    redis_failure_mode: Literal["fail-open", "fail-closed"]  # default from ENVIRONMENT
    redis_max_connections: int = Field(200, ge=1)
    redis_socket_timeout: float = Field(0.5, gt=0, le=60)
    redis_retry_after_seconds: float = Field(1.0, ge=0, le=60)
    master_key: str | None = Field(None, alias="AIPROXY_MASTER_KEY")
    key_cache_seconds: float = Field(2.0, ge=0, le=300)

    # -- providers and routing -----------------------------------------------------------------------------
    providers: dict[str, ProviderConfig] = Field(default_factory=dict, alias="providers")
    models_file: str | None = None
    pricing_file: str | None = None
    sandbox_fallback: bool  # default from ENVIRONMENT
    request_timeout: float = Field(30.0, gt=0, le=3600)
    deployment_cooldown_seconds: float = Field(30.0, gt=0, le=3600)  # a failing deployment's rest, without Retry-After
    local_model_sockets: dict[str, str] = Field(default_factory=dict)  # model directory → its server's socket
    vendor_a_model_path: str | None = None
    vendor_b_model_path: str | None = None
    http_max_connections: int = Field(2000, ge=1)
    http_max_keepalive_connections: int = Field(200, ge=0)
    http_transport: Literal["urllib3", "httpx"] = "urllib3"

    # -- limits --------------------------------------------------------------------------------------------
    max_prompt_length: int = Field(4000, gt=0)
    webhook_model: str = "gpt-4o-mini"
    max_request_bytes: int = Field(1_048_576, gt=0)
    rate_limit_enabled: bool = True
    rate_limit: int = Field(60, ge=0)
    rate_limit_window_seconds: int = Field(60, ge=1, le=3600)
    default_max_output_tokens: int = Field(1024, ge=1)
    budget_hold_seconds: int = Field(900, ge=1)
    auth_failures_per_minute: int = Field(10, ge=0)
    banned_words: tuple[str, ...] = ()
    banned_words_file: str | None = None

    # -- cache ---------------------------------------------------------------------------------------------
    semantic_cache: bool = True
    semantic_cache_threshold: float = Field(0.89, gt=0, le=1)
    cache_ttl_seconds: int = Field(86400, ge=0)
    semantic_cache_max_entries: int = Field(10000, ge=1)
    embed_socket: str | None = None
    embed_threads: int = Field(default_factory=lambda: min(2, os.cpu_count() or 1), ge=1, le=64)

    # -- request log and observability ---------------------------------------------------------------------
    log_retention_days: int = Field(30, ge=1)
    log_bodies: bool  # default from ENVIRONMENT: off in production (Redis memory, and prompts are data)
    log_body_max_chars: int = Field(8192, ge=0)
    spool_dir: str | None = None  # default: <temp dir>/aiproxy-spool/<hash of Redis and prefix>
    spool_max_bytes: int = Field(64 * 1024 * 1024, ge=0)
    honeybadger_api_key: str | None = None
    honeybadger_endpoint: str = "https://api.honeybadger.io"
    metrics_public: bool  # default from ENVIRONMENT
    cors_allowed_origins: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _environment_defaults(cls, data: Any) -> Any:
        """The defaults that depend on ``ENVIRONMENT``, and the provider configurations from the environment."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        environment = str(data.get("ENVIRONMENT") or data.get("environment") or "development").strip().lower()
        data["ENVIRONMENT"] = environment
        data.pop("environment", None)
        production = environment == "production"
        for name, value in (("REDIS_FAILURE_MODE", "fail-closed" if production else "fail-open"),
                            ("SANDBOX_FALLBACK", not production), ("METRICS_PUBLIC", not production),
                            ("TRUST_PROXY_HEADERS", 1 if production else 0), ("LOG_BODIES", not production)):
            if name not in data and name.lower() not in data:
                data[name] = value
        if "providers" not in data:
            data["providers"] = _instances(data)
        return data

    @field_validator("local_model_sockets", mode="before")
    @classmethod
    def _sockets(cls, v: object) -> object:
        if isinstance(v, str):
            try:
                return json.loads(v)
            except ValueError:
                raise ValueError("must be a JSON object mapping model directories to socket paths") from None
        return v

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.upper() if isinstance(v, str) else v

    @field_validator("redis_failure_mode", mode="before")
    @classmethod
    def _failure_mode(cls, v: object) -> object:
        return _FAILURE_MODES.get(v.strip().lower(), v) if isinstance(v, str) else v

    @field_validator("banned_words", "cors_allowed_origins", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return _csv(v)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def redacted(self) -> dict[str, object]:
        """The settings with every secret replaced by ``***`` (safe to log)."""
        data = self.model_dump(exclude={"providers"})
        for name in ("master_key", "honeybadger_api_key"):
            if data.get(name):
                data[name] = "***"
        data["providers"] = {name: config.describe() for name, config in self.providers.items()}
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
        environment = env.get("ENVIRONMENT", "development").strip().lower()
        deployed = bool(env.get("ENVIRONMENT_TYPE", "").strip() and env.get("DNS_RECORD", "").strip())
        if deployed:
            from lib import secrets as aws_secrets

            try:
                fetched = aws_secrets.load_secrets(env, client=secrets_client, strict=environment != "development")
            except RuntimeError as exc:
                raise SettingsError(str(exc)) from exc
            for name, value in fetched.items():
                env.setdefault(name, value)
        settings = cls.from_mapping(env, check=False)
        if deployed or settings.is_production:
            settings.check_deployment(secrets_named=deployed)
        return settings

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], *, check: bool = True) -> "Settings":
        """Validate settings from one mapping of variable names to strings (empty values count as unset);
        ``check``: also ``check_production``.

        Raises ``SettingsError`` naming each bad variable (never its value).
        """
        clean = {k: v.strip() for k, v in env.items() if isinstance(v, str) and v.strip() != ""}
        try:
            settings = cls.model_validate(clean)
        except ValidationError as exc:
            problems = "; ".join(
                ": ".join(part for part in (".".join(str(p) for p in e["loc"]).upper(),
                                            e["msg"].removeprefix("Value error, ")) if part)
                for e in exc.errors())
            raise SettingsError(f"invalid configuration: {problems}") from None
        if check:
            settings.check_production()
        return settings

    def check_deployment(self, *, secrets_named: bool) -> None:
        """What a deployed gateway needs: the master key and ``REDIS_URL``, and a key for every provider a
        route of ``MODELS_FILE`` uses (built-in routes need none: they are used only when configured).
        Honeybadger is optional: a warning. Raises ``SettingsError`` naming the variable (and its secret)."""
        def where(name: str) -> str:
            return f" (or the secret '{name.lower()}' in Secrets Manager)" if secrets_named else ""

        self.check_production()  # production's own, stricter messages first
        if not self.master_key:
            raise SettingsError(f"AIPROXY_MASTER_KEY is required{where('AIPROXY_MASTER_KEY')}")
        if not self.redis_url:
            raise SettingsError(f"REDIS_URL is required{where('REDIS_URL')}")
        if not self.honeybadger_api_key:
            log.warning("HONEYBADGER_API_KEY is not set: errors are logged but not reported")
        if not self.models_file:
            return
        from lib.router import deployment_routes

        try:
            routes = deployment_routes(self.models_file)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        for model, providers in routes.items():
            for provider in providers:
                config = self.providers.get(provider)
                kind = REGISTRY.get(config.type if config is not None else provider)
                missing = kind.missing(config) if config is not None and kind is not None else None
                if missing is None:
                    continue
                cure = f": set {missing.variable}{where(missing.variable)}" if missing.variable else ""
                raise SettingsError(f"MODELS_FILE routes '{model}' to provider '{provider}', which has "
                                    f"{missing.what}{cure}")

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


def _instances(env: Mapping[str, Any]) -> dict[str, ProviderConfig]:
    """Every provider instance: the types' environment defaults and ``MODELS_FILE``'s ``providers:`` section,
    whose routes are checked against them (a route to an unknown instance, a bad ``deployments`` list or a
    dangling fallback stops start-up). Raises ``ValueError`` naming the entry."""
    from lib.router import Router, read_models_file

    path = env.get("MODELS_FILE")
    section = read_models_file(str(path)).get("providers") if path else None
    configs = build_instances({k: v for k, v in env.items() if isinstance(v, str)}, section, REGISTRY)
    if path:
        Router.load(str(path), providers=instance_types(configs, REGISTRY))
    return configs
