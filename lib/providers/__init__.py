"""Provider adapters and the registry of provider types.

Adding a provider type is one new module here — an adapter class with the ``Provider`` interface
(``lib.providers.base``) built as ``Cls(config: ProviderConfig, http: httpx.Client)``, ending with
``TYPE = ProviderType(...)`` (``lib.providers.registry``) — plus one line in ``REGISTRY`` below. Settings,
secrets, routing, the start-up report and the conformance tests read everything else from the type.
"""

from __future__ import annotations

from typing import Mapping

import httpx

from lib.providers import anthropic, azure, bedrock, gemini, local, openai_provider, sandbox
from lib.providers.base import Provider
from lib.providers.registry import ProviderConfig, ProviderType

REGISTRY: dict[str, ProviderType] = {t.name: t for t in (
    openai_provider.TYPE,
    azure.TYPE,
    anthropic.TYPE,
    gemini.TYPE,
    bedrock.TYPE,
    local.TYPE,
    sandbox.TYPE,
)}


def build_providers(configs: Mapping[str, ProviderConfig], http: httpx.Client,
                    registry: Mapping[str, ProviderType] | None = None) -> dict[str, Provider]:
    """One adapter per instance, keyed by instance name; every registered type that has an environment
    default (``ProviderType.env_default``) has its default instance present.

    ``configs`` maps an instance name to its configuration (``config.type`` names its type; an empty type
    means the type of the same name). A type with an environment default missing from it gets that default,
    unconfigured (so ``configured()`` tells the router whether it can be used). Raises ``KeyError`` for an
    unknown type.
    """
    types = REGISTRY if registry is None else registry
    out: dict[str, Provider] = {}
    for name, config in configs.items():
        kind = config.type or name
        if kind not in types:
            raise KeyError(f"Unknown provider type '{kind}' (instance '{name}'); known: {', '.join(sorted(types))}")
        out[name] = types[kind](config if config.name else _named(config, name, kind), http)
    for name, kind in types.items():
        if name not in out and kind.env_default:
            out[name] = kind(None, http)
    return out


def _named(config: ProviderConfig, name: str, kind: str) -> ProviderConfig:
    from dataclasses import replace

    return replace(config, name=name, type=kind)


__all__ = ["REGISTRY", "Provider", "ProviderConfig", "ProviderType", "build_providers"]
