"""Provider registry: adding a provider is one new module and one line in ``REGISTRY``."""

from __future__ import annotations

import httpx

from lib.providers.base import Provider, ProviderConfig
from lib.providers.sandbox import SandboxProvider

REGISTRY: dict[str, type] = {
    "sandbox": SandboxProvider,
}

try:  # the real providers are added by their modules (see REGISTRY lines below)
    from lib.providers.openai_provider import OpenAIProvider

    REGISTRY["openai"] = OpenAIProvider
except ImportError:  # pragma: no cover
    pass


def build_providers(configs: dict[str, ProviderConfig], http: httpx.Client) -> dict[str, Provider]:
    """One instance per registered provider, built from its config and the shared HTTP client."""
    return {name: cls(configs.get(name, ProviderConfig()), http) for name, cls in REGISTRY.items()}
