"""Structured output requests (``response_format`` / the Responses API's ``text.format``), checked once at ingress.

A ``json_schema`` format must carry a schema that is itself valid JSON Schema (checked with the
``jsonschema`` library's ``check_schema`` for the draft the schema names, 2020-12 by default), so every
provider gets a schema it can use and a client learns of a typo at once instead of from a provider's
opaque 400. Providers then honour the format their own way (see ``lib/providers``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a usable JSON Schema object, or ``None`` when it is."""
    if not isinstance(schema, dict):
        return "the schema must be a JSON object"
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        return f"it is not a valid JSON Schema ({exc.message} at {where})"
    return None


def check_json_schema_format(json_schema: Any) -> None:
    """Raise ``ValueError`` (pydantic turns it into a 400 naming the field) when a ``json_schema`` response
    format is unusable: not an object, a bad ``name``, or a ``schema`` that is not valid JSON Schema."""
    if not isinstance(json_schema, dict):
        raise ValueError("json_schema must be an object with 'name' and 'schema'")
    name = json_schema.get("name")
    if name is not None and (not isinstance(name, str) or not NAME.match(name)):
        raise ValueError("json_schema.name must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'")
    if "schema" in json_schema:
        problem = _cached_problem(_freeze(json_schema["schema"]))
        if problem:
            raise ValueError(f"json_schema.schema: {problem}")


@lru_cache(maxsize=256)
def _cached_problem(frozen: Any) -> str | None:
    # Schemas repeat (one per client app), and check_schema costs ~0.1 ms: remember recent verdicts.
    return schema_problem(_thaw(frozen))


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return ("d", tuple((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("l", tuple(_freeze(v) for v in value))
    return ("v", type(value).__name__, value)  # the type keeps true and 1 apart (they hash alike)


def _thaw(frozen: Any) -> Any:
    kind, value = frozen[0], frozen[-1]
    if kind == "d":
        return {k: _thaw(v) for k, v in value}
    if kind == "l":
        return [_thaw(v) for v in value]
    return value
