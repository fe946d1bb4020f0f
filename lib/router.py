"""Model routing: which provider instance serves a model name, under which upstream name, with which fallbacks.

The table comes from ``lib/data/models.yaml`` merged with the deployment's ``MODELS_FILE`` (YAML or
JSON). Names not in the table are routed by family prefix: each provider type declares its own
(``ProviderType.prefixes``: ``claude-`` → anthropic, ...), and the models file may add more. A name that
matches nothing is ``404 model_not_found``.

An entry names one ``provider`` (an instance: ``openai``, or one the file's ``providers:`` section declares),
or weighted ``deployments`` — several (instance, upstream model) pairs one name spreads over
(``lib.balancer`` orders them per request). Both may have ``fallbacks``. A name defined twice in the file
(a model or a provider instance) is an error, not a silent override.
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
class Deployment:
    """One (instance, upstream model) pair a load-balanced name spreads over, with its relative ``weight``."""

    provider: str
    model: str
    weight: float = 1.0

    @property
    def name(self) -> str:
        """``instance/model``: how logs, metrics and cool-downs name the deployment (bounded by the file)."""
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class Route:
    """One servable name: ``name`` (what the client sends) → ``provider`` + upstream ``model``; for a
    load-balanced name, ``deployments`` (``provider``/``model`` are then the first one's)."""

    name: str
    provider: str
    model: str
    fallbacks: tuple[str, ...] = ()
    type: str = "chat"
    listed: bool = True
    deployments: tuple[Deployment, ...] = ()


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
            routes[str(name)] = _route(str(name), spec, providers)
        for prefix, provider in prefixes.items():
            if provider not in providers:
                raise ValueError(f"models file: prefix '{prefix}' names unknown provider '{provider}'")
        router = cls(routes, prefixes)
        for route in routes.values():
            for fb in route.fallbacks:
                try:
                    router.resolve(fb)  # fail at start-up, not at request time, on a dangling fallback
                except errors.ModelNotFound:
                    raise ValueError(f"models file: entry '{route.name}' falls back to '{fb}', which no entry or "
                                     "prefix serves (it does not exist)") from None
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

    def deployments(self) -> list[Deployment]:
        """Every deployment of every load-balanced route, once each, in table order."""
        seen: dict[str, Deployment] = {}
        for route in self._routes.values():
            for d in route.deployments:
                seen.setdefault(d.name, d)
        return list(seen.values())

    def listed(self, type_: str | None = None) -> list[Route]:
        """Every route in the table that is listed (for ``GET /v1/models``), sorted by name."""
        return sorted((r for r in self._routes.values() if r.listed and (type_ is None or r.type == type_)),
                      key=lambda r: r.name)


def _route(name: str, spec: Any, providers: Mapping[str, Any]) -> Route:
    """The ``Route`` of one models-file entry. Raises ``ValueError`` naming the entry."""
    if not isinstance(spec, dict) or ("provider" in spec) == ("deployments" in spec):
        raise ValueError(f"models file: entry '{name}' needs a 'provider' or a list of 'deployments' (one of them)")
    fallbacks = spec.get("fallbacks") or []
    if isinstance(fallbacks, str):
        fallbacks = [fallbacks]
    deployments: tuple[Deployment, ...] = ()
    if "deployments" in spec:
        deployments = _deployments(name, spec, providers)
        provider, model = deployments[0].provider, deployments[0].model
    else:
        provider, model = str(spec["provider"]), str(spec.get("model") or name)
        if provider not in providers:
            raise ValueError(f"models file: entry '{name}' names unknown provider '{provider}'")
    return Route(name=name, provider=provider, model=model, fallbacks=tuple(str(f) for f in fallbacks),
                 type=str(spec.get("type", "chat")), listed=bool(spec.get("listed", True)), deployments=deployments)


def _deployments(name: str, spec: dict[str, Any], providers: Mapping[str, Any]) -> tuple[Deployment, ...]:
    items = spec["deployments"]
    if not isinstance(items, list) or not items:
        raise ValueError(f"models file: entry '{name}': 'deployments' must be a non-empty list")
    out: list[Deployment] = []
    for i, item in enumerate(items, 1):
        where = f"models file: entry '{name}' deployment {i}"
        if not isinstance(item, dict) or not item.get("provider"):
            raise ValueError(f"{where} needs a 'provider'")
        unknown = sorted(set(item) - {"provider", "model", "weight"})
        if unknown:
            raise ValueError(f"{where}: unknown field {', '.join(repr(u) for u in unknown)} (it takes provider, model, weight)")
        provider = str(item["provider"])
        if provider not in providers:
            raise ValueError(f"{where} names unknown provider '{provider}'")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1_000_000:
            raise ValueError(f"{where}: 'weight' must be a number above 0")
        deployment = Deployment(provider, str(item.get("model") or spec.get("model") or name), float(weight))
        if any(d.name == deployment.name for d in out):
            raise ValueError(f"{where} repeats '{deployment.name}'")
        out.append(deployment)
    return tuple(out)


def deployment_routes(path: str) -> dict[str, tuple[str, ...]]:
    """Model name → the provider instances of every entry in a deployment's models file itself (one, or one per
    deployment), not the built-in table. Raises ``ValueError`` on a bad file."""
    routes: dict[str, tuple[str, ...]] = {}
    for name, spec in (read_models_file(path).get("models") or {}).items():
        if not isinstance(spec, dict):
            continue
        if spec.get("provider"):
            routes[str(name)] = (str(spec["provider"]),)
        elif isinstance(spec.get("deployments"), list):
            routes[str(name)] = tuple(dict.fromkeys(str(d["provider"]) for d in spec["deployments"]
                                                    if isinstance(d, dict) and d.get("provider")))
    return routes


def read_models_file(path: str | Path) -> dict[str, Any]:
    """The models file's mapping (YAML, or JSON for ``.json``). Raises ``ValueError`` when it cannot be read,
    does not parse, is not a mapping, or defines one name twice at any level."""
    return _read(Path(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping key given twice (the plain loader keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"'{key}' is defined twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"'{key}' is defined twice")
        out[key] = value
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read models file {path}: {exc.strerror}") from exc
    is_json = path.suffix.lower() == ".json"
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs) if is_json else yaml.load(text, Loader=_UniqueKeyLoader)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"models file {path} is not valid {'JSON' if is_json else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"models file {path} must contain a mapping with a 'models' key")
    return data
