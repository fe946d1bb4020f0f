"""What the gateway knows about each provider *type*, declared once by the type's own module.

A provider type module (``openai_provider``, ``anthropic``, ``gemini``, ``sandbox`` …) ends with one
``TYPE = ProviderType(...)`` naming its adapter class, the environment variables (and hence Secrets
Manager names) that configure its default instance, its default base URL and the model-name prefixes it
serves. ``lib.providers.REGISTRY`` lists the types; settings, secrets, the router, the app's start-up
report and the conformance tests all read it, so adding a provider is one new module and one registry
line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import httpx

    from lib.providers.base import Provider


@dataclass(frozen=True)
class ProviderConfig:
    """Credentials and endpoint of one provider instance (the environment-configured default of a type, or a
    named instance from the models file). ``api_keys`` never appear in a repr."""

    api_keys: tuple[str, ...] = field(default=(), repr=False)
    base_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    type: str = ""
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> dict[str, Any]:
        """What may be shown about the instance (health, start-up log): never a key or a header value."""
        return {"type": self.type, "base_url": self.base_url or None, "keys": len(self.api_keys)}


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
        return ProviderConfig(api_keys=keys, base_url=base_url.rstrip("/"), name=self.name, type=self.name)

    def usable(self, config: ProviderConfig) -> bool:
        """True when an instance with ``config`` can make calls (a key, or what stands in for one)."""
        if not self.needs_key or config.api_keys:
            return True
        return self.keyless_with_custom_url and bool(config.base_url) and config.base_url != self.default_base_url

    def __call__(self, config: ProviderConfig | None, http: httpx.Client | None) -> Provider:
        """Build the adapter for one instance."""
        if config is None:
            config = ProviderConfig(name=self.name, type=self.name, base_url=self.default_base_url)
        return self.adapter(config, http)
