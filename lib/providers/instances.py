"""Provider instances: the environment-configured defaults plus the models file's ``providers:`` section.

::

    providers:
      vllm-local: {type: openai, base_url: http://vllm:8000/v1, api_key_env: VLLM_API_KEY}
      azure-east: {type: azure, base_url: https://east.openai.azure.com, api_version: "2024-10-21",
                   api_key_env: AZURE_EAST_API_KEY}
      bedrock: {type: bedrock, region: us-east-1}

Each entry is one instance of a registered type (``lib.providers.REGISTRY``), several of one type at once.
The types with an environment-configured default (``openai``, ``anthropic``, ``gemini``, ``sandbox``) keep it:
an entry of the same name and type refines it (its fields win), an entry of that name with another type is a
clash. Secrets are named, never written: ``api_key_env`` (and any ``*_env`` option) names the variable — read
from the environment, ``config.txt`` or Secrets Manager (``key_env_names`` tells ``lib.secrets`` which).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from lib.providers.registry import ProviderConfig, ProviderType

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def build_instances(env: Mapping[str, str], section: Any, registry: Mapping[str, ProviderType]) -> dict[str, ProviderConfig]:
    """Every instance's configuration, keyed by name: the defaults from ``env``, then the file's ``section``
    (the ``providers:`` mapping, or ``None``).

    Raises ``ValueError`` naming the entry (``providers.<name>``) for an unknown type, a name that clashes with
    another instance or with a built-in type, a bad name, or a bad field (see ``ProviderType.config_from_entry``).
    Missing secrets are not an error here: an instance no route uses may lack them (``Settings.check_deployment``).
    """
    out: dict[str, ProviderConfig] = {}
    for name, kind in registry.items():
        if kind.env_default:
            try:
                out[name] = kind.config_from_env(env)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
    if section is None:
        return out
    if not isinstance(section, Mapping):
        raise ValueError("models file: 'providers' must map instance names to their settings")
    folded: dict[str, str] = {}
    for raw_name, entry in section.items():
        name = str(raw_name)
        where = f"models file: providers.{name}"
        if not NAME.match(name):
            raise ValueError(f"{where}: an instance name is letters, digits, '.', '_' and '-' (at most 64, "
                             "starting with a letter or digit)")
        if name.lower() in folded:
            raise ValueError(f"{where} clashes with providers.{folded[name.lower()]} (names differ only in case)")
        folded[name.lower()] = name
        entry = {} if entry is None else entry
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping with a 'type'")
        kind_name = entry.get("type") or (name if name in registry else None)
        if kind_name is None:
            raise ValueError(f"{where} needs a 'type' (one of {', '.join(sorted(registry))})")
        if not isinstance(kind_name, str) or kind_name not in registry:
            raise ValueError(f"{where} has unknown type '{kind_name}' (known: {', '.join(sorted(registry))})")
        if name in registry and kind_name != name:
            raise ValueError(f"{where} has type '{kind_name}' but is named like the built-in type '{name}': "
                             "give it another name")
        try:
            out[name] = registry[kind_name].config_from_entry(name, entry, env, out.get(name))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


def key_env_names(section: Any) -> tuple[str, ...]:
    """The variables a ``providers:`` section names for its secrets (``api_key_env`` and every ``*_env``
    option), in file order, for ``lib.secrets`` to read from Secrets Manager. Malformed entries are skipped
    (``build_instances`` reports them)."""
    names: list[str] = []
    if not isinstance(section, Mapping):
        return ()
    for entry in section.values():
        if not isinstance(entry, Mapping):
            continue
        for option, value in entry.items():
            if isinstance(option, str) and option.endswith("_env") and isinstance(value, str) and value.strip():
                names.append(value.strip())
    return tuple(dict.fromkeys(names))


def instance_types(configs: Mapping[str, ProviderConfig], registry: Mapping[str, ProviderType]) -> dict[str, ProviderType]:
    """Instance name → its ``ProviderType`` (what ``Router.load`` checks routes against)."""
    return {name: registry[config.type or name] for name, config in configs.items() if (config.type or name) in registry}
