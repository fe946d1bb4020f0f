"""Model routing: which provider serves a model name, under which upstream name, with which fallbacks.

The table comes from ``lib/data/models.yaml`` merged with the deployment's ``MODELS_FILE`` (YAML or
JSON). Names not in the table are routed by family prefix: each provider type declares its own
(``ProviderType.prefixes``: ``claude-`` → anthropic, ...), and the models file may add more. A name that
matches nothing is ``404 model_not_found``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from lib import DATA_DIR, errors

BUILTIN_MODELS = DATA_DIR / "models.yaml"


@dataclass(frozen=True)
class Route:
    """One servable name: ``name`` (what the client sends) → ``provider`` + upstream ``model``."""

    name: str
    provider: str
    model: str
    fallbacks: tuple[str, ...] = ()
    type: str = "chat"
    listed: bool = True


class Router:
    """Resolves client model names to routes (see module docstring)."""

    def __init__(self, routes: dict[str, Route], prefixes: dict[str, str]) -> None:
        self._routes = dict(routes)
        # Longest prefix first, so "gpt-4o-" beats "gpt-".
        self._prefixes = sorted(prefixes.items(), key=lambda kv: -len(kv[0]))

    @classmethod
    def load(cls, path: str | None = None, providers: Mapping[str, Any] | None = None) -> "Router":
        """Build the router from the built-in table and ``path`` (optional).

        ``providers`` maps each servable instance name to its provider type (default: the registry's types,
        one default instance each); the types' ``prefixes`` route to the instance of the same name. Raises
        ``ValueError`` on a bad file or a name it gives that no instance has.
        """
        if providers is None:
            from lib.providers import REGISTRY

            providers = REGISTRY
        builtin = _read(BUILTIN_MODELS)
        defaults = {name: kind for name, kind in providers.items() if getattr(kind, "name", None) == name}
        models: dict[str, Any] = {model: {"provider": name} for name, kind in defaults.items() for model in kind.models}
        models.update(builtin.get("models") or {})
        prefixes: dict[str, str] = {prefix: name for name, kind in defaults.items() for prefix in kind.prefixes}
        prefixes.update(builtin.get("prefixes") or {})
        if path:
            custom = _read(Path(path))
            if custom.get("include_defaults", True) is False:
                models, prefixes = {}, {}
            models.update(custom.get("models") or {})
            prefixes.update(custom.get("prefixes") or {})
        routes: dict[str, Route] = {}
        for name, spec in models.items():
            if spec is None:
                continue
            if not isinstance(spec, dict) or "provider" not in spec:
                raise ValueError(f"models file: entry '{name}' needs a 'provider'")
            provider = str(spec["provider"])
            if provider not in providers:
                raise ValueError(f"models file: entry '{name}' names unknown provider '{provider}'")
            fallbacks = spec.get("fallbacks") or []
            if isinstance(fallbacks, str):
                fallbacks = [fallbacks]
            routes[str(name)] = Route(
                name=str(name), provider=provider, model=str(spec.get("model") or name),
                fallbacks=tuple(str(f) for f in fallbacks), type=str(spec.get("type", "chat")),
                listed=bool(spec.get("listed", True)),
            )
        for prefix, provider in prefixes.items():
            if provider not in providers:
                raise ValueError(f"models file: prefix '{prefix}' names unknown provider '{provider}'")
        router = cls(routes, prefixes)
        for route in routes.values():
            for fb in route.fallbacks:
                router.resolve(fb)  # fail at start-up, not at request time, on a dangling fallback
        return router

    def resolve(self, name: str) -> Route:
        """The route for ``name``. Raises ``errors.ModelNotFound`` (404) when nothing matches."""
        route = self._routes.get(name)
        if route is not None:
            return route
        for prefix, provider in self._prefixes:
            if name.startswith(prefix) and len(name) > len(prefix):
                return Route(name=name, provider=provider, model=name, listed=False)
        raise errors.ModelNotFound(
            f"The model '{name}' does not exist or is not served by this gateway.", param="model")

    def candidates(self, name: str) -> list[Route]:
        """The route for ``name`` followed by its fallbacks' routes, in order, without repeats."""
        first = self.resolve(name)
        out, seen = [first], {first.name}
        for fb in first.fallbacks:
            if fb not in seen:
                out.append(self.resolve(fb))
                seen.add(fb)
        return out

    def listed(self, type_: str | None = None) -> list[Route]:
        """Every route in the table that is listed (for ``GET /v1/models``), sorted by name."""
        return sorted((r for r in self._routes.values() if r.listed and (type_ is None or r.type == type_)),
                      key=lambda r: r.name)


def deployment_routes(path: str) -> dict[str, str]:
    """Model name → provider of every entry (and fallback target) in a deployment's models file itself, not
    the built-in table. Raises ``ValueError`` on a bad file."""
    routes: dict[str, str] = {}
    for name, spec in (_read(Path(path)).get("models") or {}).items():
        if isinstance(spec, dict) and spec.get("provider"):
            routes[str(name)] = str(spec["provider"])
    return routes


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read models file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"models file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"models file {path} must contain a mapping with a 'models' key")
    return data
