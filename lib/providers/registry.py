"""What the gateway knows about each provider *type*, declared once by the type's own module.

A provider type module (``openai_provider``, ``anthropic``, ``gemini``, ``azure``, ``bedrock``, ``local``,
``sandbox`` …) ends with one ``TYPE = ProviderType(...)`` naming its adapter class, the environment variables
(and hence Secrets Manager names) that configure its default instance, its default base URL, the model-name
prefixes it serves and the fields a named instance of it may set in the models file (``options``).
``lib.providers.REGISTRY`` lists the types; settings, secrets, the router, the app's start-up report and the
conformance tests all read it, so adding a provider is one new module and one registry line.

An *instance* is one ``ProviderConfig``: the environment-configured default of a type (``openai``,
``anthropic``, ``gemini``, ``sandbox``), or a named entry of the models file's ``providers:`` section
(``ProviderType.config_from_entry``). Options ending in ``_env`` name the variable (or Secrets Manager
secret) holding a secret; the file never holds the secret itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx

    from lib.providers.base import Provider


@dataclass(frozen=True)
class ProviderConfig:
    """Credentials and endpoint of one provider instance (the environment-configured default of a type, or a
    named instance from the models file). ``api_keys`` never appear in a repr."""

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    base_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the type's other options (api_version, region, path …)
    name: str = ""
    type: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    key_env: tuple[str, ...] = ()  # the variable the keys were read from (for messages); never a key
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # other ``*_env`` options' values

    @property
    def host(self) -> str | None:
        """The host (and port) of ``base_url``, or of an ``endpoint_url`` option; no path, no credentials."""
        url = self.base_url or str(self.extra.get("endpoint_url") or "")
        return urlsplit(url).netloc.rpartition("@")[2] or None if url else None

    def describe(self) -> dict[str, Any]:
        """What may be shown about the instance (health, start-up log): never a key or a header value."""
        base = self.base_url
        if base and "@" in urlsplit(base).netloc:
            parts = urlsplit(base)
            base = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        return {"type": self.type, "base_url": base or None, "keys": len(self.api_keys)}


@dataclass(frozen=True)
class Missing:
    """What an instance lacks to make calls: ``what`` ("no key", "no region" …) and, when setting a variable
    (or its Secrets Manager secret) would cure it, that ``variable``'s name."""

    what: str
    variable: str | None = None

    def __str__(self) -> str:
        return f"{self.what}: set {self.variable}" if self.variable else self.what


def split_keys(raw: str | None) -> tuple[str, ...]:
    """Comma-separated keys, trimmed, empties dropped (``"a, b,"`` → ``("a", "b")``)."""
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


@dataclass(frozen=True)
class ProviderType:
    """One provider type (see the module docstring).

    ``key_env``: variables holding the default instance's keys (comma-separated, rotated), the first one set
    wins; the first name, lower-cased, is also its Secrets Manager name. ``prefixes``: model names starting
    so are routed to the type's default instance; ``models``: names it serves that ``/v1/models`` lists
    (the built-in types list theirs in ``lib/data/models.yaml``). ``keyless_with_custom_url``: a custom
    ``base_url`` alone makes the instance usable (OpenAI-compatible servers often take no key).
    ``options``: the fields a models-file entry of this type may set besides ``type``. ``env_default``: the
    type has an environment-configured default instance named like it (types configured only in the models
    file, such as ``azure``, have none). ``check``: what an instance lacks to make calls, as a short phrase
    (``None`` when ready), for types whose needs are not simply "a key". ``option_env``: variables an option
    falls back to when the entry leaves it out (Bedrock's ``region`` → ``AWS_REGION``).
    """

    name: str
    adapter: Callable[..., Provider]
    key_env: tuple[str, ...] = ()
    base_url_env: str | None = None
    default_base_url: str = ""
    prefixes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    keyless_with_custom_url: bool = False
    needs_key: bool = True
    options: tuple[str, ...] = ("base_url", "api_key_env", "headers")
    env_default: bool = True
    check: Callable[[ProviderConfig], Missing | None] | None = None
    option_env: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def secret_env_names(self) -> tuple[str, ...]:
        """The variable read from Secrets Manager for this type's default instance (none without keys)."""
        return self.key_env[:1]

    def config_from_env(self, env: Mapping[str, str]) -> ProviderConfig:
        """The default instance's configuration from ``env`` (already stripped of empty values).

        Raises ``ValueError`` naming the variable when the base URL is not http(s).
        """
        keys: tuple[str, ...] = ()
        for name in self.key_env:
            keys = split_keys(env.get(name))
            if keys:
                break
        base_url = self.default_base_url
        if self.base_url_env and env.get(self.base_url_env):
            base_url = env[self.base_url_env].strip()
            if not base_url.startswith(("http://", "https://")):
                raise ValueError(f"{self.base_url_env}: must start with http:// or https://")
        key_env = next((name for name in self.key_env if split_keys(env.get(name))), self.key_env[0] if self.key_env else None)
        return ProviderConfig(api_keys=keys, base_url=base_url.rstrip("/"), name=self.name, type=self.name,
                              key_env=(key_env,) if key_env else ())

    def config_from_entry(self, name: str, entry: Mapping[str, Any], env: Mapping[str, str],
                          base: ProviderConfig | None = None) -> ProviderConfig:
        """The configuration of the models file's instance ``name`` (its ``entry``), over ``base`` (the
        environment-configured default of the same name, when there is one). Secrets are read from ``env``
        by the variable names the entry gives (``api_key_env``, ``*_env``).

        Raises ``ValueError`` naming the field (never a value) for an unknown field, a URL that is not
        http(s), a variable name that is not one, or headers that are not a mapping of strings.
        """
        allowed = {"type", *self.options}
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"unknown field {', '.join(repr(u) for u in unknown)} for a '{self.name}' instance "
                             f"(it takes {', '.join(sorted(allowed))})")
        config = base or ProviderConfig(base_url=self.default_base_url)
        keys, key_env, base_url = config.api_keys, config.key_env, config.base_url
        extra, secrets, headers = dict(config.extra), dict(config.secrets), dict(config.headers)
        for option, value in entry.items():
            if option == "type" or value is None:
                continue
            if option in ("base_url", "endpoint_url"):
                url = _url(value, option)
                if option == "base_url":
                    base_url = url
                else:
                    extra[option] = url
            elif option == "headers":
                headers.update(_headers(value))
            elif option == "api_key_env":
                variable = _variable(value, option)
                keys, key_env = split_keys(env.get(variable)), (variable,)
            elif option.endswith("_env"):
                variable = _variable(value, option)
                extra[option] = variable
                secrets[option[:-4]] = (env.get(variable) or "").strip()
            elif isinstance(value, (str, int, float, bool)):
                extra[option] = value
            else:
                raise ValueError(f"'{option}' must be a string, a number or true/false")
        for option, variables in self.option_env.items():
            if option not in extra:
                found = next((env[v].strip() for v in variables if (env.get(v) or "").strip()), None)
                if found is not None:
                    extra[option] = found
        return ProviderConfig(api_keys=keys, base_url=base_url.rstrip("/"), extra=extra, name=name, type=self.name,
                              headers=headers, key_env=key_env, secrets=secrets)

    def missing(self, config: ProviderConfig) -> Missing | None:
        """What an instance with ``config`` lacks to make calls (naming a variable, never a value), or
        ``None`` when it can make calls."""
        if self.check is not None:
            return self.check(config)
        if not self.needs_key or config.api_keys:
            return None
        if self.keyless_with_custom_url and config.base_url and config.base_url != self.default_base_url:
            return None
        variable = (config.key_env or self.key_env or (None,))[0]
        return Missing("no key" if variable else "no key (give the entry an api_key_env)", variable)

    def usable(self, config: ProviderConfig) -> bool:
        """True when an instance with ``config`` can make calls (a key, or what stands in for one)."""
        return self.missing(config) is None

    def __call__(self, config: ProviderConfig | None, http: httpx.Client | None) -> Provider:
        """Build the adapter for one instance."""
        if config is None:
            config = ProviderConfig(name=self.name, type=self.name, base_url=self.default_base_url)
        return self.adapter(config, http)


_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _variable(value: Any, option: str) -> str:
    """An environment variable's name (upper case, as Secrets Manager names are its lower-cased form)."""
    if not isinstance(value, str) or not _VARIABLE.match(value.strip()):
        raise ValueError(f"'{option}' must name an environment variable in capitals (e.g. VLLM_API_KEY), "
                         "never hold the secret itself")
    return value.strip()


def _url(value: Any, option: str) -> str:
    if not isinstance(value, str) or not value.strip().startswith(("http://", "https://")):
        raise ValueError(f"'{option}' must start with http:// or https://")
    return value.strip().rstrip("/")


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, (str, int)) for k, v in value.items()):
        raise ValueError("'headers' must map header names to strings")
    return {str(k): str(v) for k, v in value.items()}
