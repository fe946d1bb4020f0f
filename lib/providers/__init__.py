"""Provider adapters and their registry.

Adding a provider is one new module exposing a class with the ``Provider`` interface
(``name``, ``configured()``, ``complete()``, ``stream()``; see ``lib.providers.base``), built as
``Cls(config: ProviderConfig, http: httpx.Client)``, plus one line in ``REGISTRY``.
"""

from __future__ import annotations

import httpx

from lib.providers.anthropic import AnthropicProvider
from lib.providers.base import Provider, ProviderConfig
from lib.providers.gemini import GeminiProvider
from lib.providers.openai_provider import OpenAIProvider
from lib.providers.sandbox import SandboxProvider

REGISTRY: dict[str, type] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "sandbox": SandboxProvider,
}


def build_providers(configs: dict[str, ProviderConfig], http: httpx.Client) -> dict[str, Provider]:
    """One adapter per registered provider, keyed by name (``sandbox`` always present).

    ``configs`` maps a provider name to its settings; a registered provider missing from it is built with an
    empty ``ProviderConfig`` (so ``configured()`` tells the router whether it can be used). Raises
    ``KeyError`` for a name in ``configs`` that is not registered.
    """
    unknown = set(configs) - set(REGISTRY)
    if unknown:
        raise KeyError(f"Unknown provider(s) in configuration: {', '.join(sorted(unknown))}")
    return {name: cls(configs.get(name, ProviderConfig()), http) for name, cls in REGISTRY.items()}


__all__ = ["REGISTRY", "Provider", "ProviderConfig", "build_providers"]
