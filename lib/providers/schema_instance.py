"""A deterministic JSON value that satisfies a (simple) JSON Schema, for the offline sandbox.

The sandbox answers tool calls and structured-output requests with this, so a client can be developed
against it: the same schema and text always give the same value. Written here rather than taken from a
library because the ones that exist (``jsf``, ``hypothesis-jsonschema``) generate *random* data through
Faker or Hypothesis, and the sandbox must be deterministic and cheap.

What it honours: ``type`` (also a list; ``null`` last), ``const``, ``enum`` (the first value),
``properties`` with ``required`` and ``minProperties`` (optional properties and one array item are
filled near the top only, so recursive schemas end), ``items`` / ``prefixItems`` with ``minItems`` / ``maxItems``, ``minimum`` /
``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum`` / ``multipleOf``, ``minLength`` / ``maxLength``,
common string ``format`` values, ``anyOf`` / ``oneOf`` (the first branch), ``allOf`` (merged), local
``$ref`` (``#/$defs/...``, ``#/definitions/...``) and ``default`` / ``examples``. ``pattern`` and
``not`` are not solved; the value is then only likely, not certain, to be valid.
"""

from __future__ import annotations

import math
from typing import Any

_FORMATS = {"date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "00:00:00", "email": "user@example.com",
            "uri": "https://example.com/", "url": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000",
            "hostname": "example.com", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "duration": "P1D"}
_MAX_DEPTH = 12
_OPTIONAL_DEPTH = 3  # below this depth only required properties and minItems are filled


def instance(schema: Any, text: str = "") -> Any:
    """A value valid against ``schema`` (see the module docstring). ``text`` fills the first string found
    (so a tool's first argument carries what the user said); later strings are ``"sample"``."""
    state = {"text": text, "used": False}
    return _value(schema if isinstance(schema, dict) else {}, _root_defs(schema), state, 0)


def _root_defs(schema: Any) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    return {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}


def _resolve(schema: dict[str, Any], defs: dict[str, Any], depth: int) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        name = ref.rsplit("/", 1)[-1]
        if name in defs and depth < _MAX_DEPTH:
            return _resolve({**defs[name], **{k: v for k, v in schema.items() if k != "$ref"}}, defs, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                part = _resolve(part, defs, depth + 1)
                for key, value in part.items():
                    if key == "properties" and isinstance(value, dict):
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    elif key == "required" and isinstance(value, list):
                        merged["required"] = list(dict.fromkeys([*merged.get("required", []), *value]))
                    else:
                        merged.setdefault(key, value)
        return merged
    return schema


def _value(schema: dict[str, Any], defs: dict[str, Any], state: dict[str, Any], depth: int) -> Any:
    schema = _resolve(schema, defs, depth)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for branch in ("anyOf", "oneOf"):
        options = [o for o in schema.get(branch) or [] if isinstance(o, dict)]
        if options:
            non_null = [o for o in options if o.get("type") != "null"] or options
            rest = {k: v for k, v in schema.items() if k != branch}
            return _value({**rest, **non_null[0]}, defs, state, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = _guess_type(schema)
    if depth >= _MAX_DEPTH:
        return {"object": {}, "array": [], "string": "", "integer": 0, "number": 0, "boolean": False}.get(kind)
    if kind == "object":
        return _object(schema, defs, state, depth)
    if kind == "array":
        return _array(schema, defs, state, depth)
    if kind == "string":
        return _string(schema, state)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, state)


def _guess_type(schema: dict[str, Any]) -> str:
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _object(schema: dict[str, Any], defs: dict[str, Any], state: dict[str, Any], depth: int) -> dict[str, Any]:
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for name, sub in props.items():
        if name in required or depth < _OPTIONAL_DEPTH:  # optional ones near the top only: recursion ends
            out[name] = _value(sub if isinstance(sub, dict) else {}, defs, state, depth + 1)
    for name in schema.get("required") or []:
        if isinstance(name, str) and name not in out:
            extra = schema.get("additionalProperties")
            out[name] = _value(extra if isinstance(extra, dict) else {}, defs, state, depth + 1)
    minimum = int(schema.get("minProperties") or 0)
    extra = schema.get("additionalProperties")
    n = 0
    while len(out) < minimum and extra is not False:
        n += 1
        out[f"key{n}"] = _value(extra if isinstance(extra, dict) else {}, defs, state, depth + 1)
    return out


def _array(schema: dict[str, Any], defs: dict[str, Any], state: dict[str, Any], depth: int) -> list[Any]:
    prefix = [p for p in schema.get("prefixItems") or [] if isinstance(p, dict)]
    items = schema.get("items")
    count = max(int(schema.get("minItems") or 0), len(prefix), 1 if depth < _OPTIONAL_DEPTH else 0)
    if schema.get("maxItems") is not None:
        count = min(count, int(schema["maxItems"]))
    if items is False:
        count = min(count, len(prefix))
    out = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else (items if isinstance(items, dict) else {})
        out.append(_value(sub, defs, state, depth + 1))
    if schema.get("uniqueItems") and len({repr(v) for v in out}) < len(out):
        # make repeated scalars distinct (strings get a suffix, numbers a step); anything else is cut to one
        seen: set[str] = set()
        for i, v in enumerate(out):
            if repr(v) in seen and isinstance(v, str):
                out[i] = f"{v}{i + 1}"
            elif repr(v) in seen and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[i] = v + i
            seen.add(repr(out[i]))
        if len(seen) < len(out):
            out = out[:1]
    return out


def _string(schema: dict[str, Any], state: dict[str, Any]) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        value = _FORMATS[fmt]
    elif not state["used"] and state["text"]:
        state["used"] = True
        value = state["text"]
    elif "default" in schema and isinstance(schema["default"], str):
        value = schema["default"]
    elif isinstance(schema.get("examples"), list) and schema["examples"] and isinstance(schema["examples"][0], str):
        value = schema["examples"][0]
    else:
        value = "sample"
    low = int(schema.get("minLength") or 0)
    high = schema.get("maxLength")
    if high is not None:
        value = value[: int(high)]
    if len(value) < low:
        value = value + "x" * (low - len(value))
    return value


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = schema.get("multipleOf")
    nudge = 1 if integer else (step or 0.5)
    if isinstance(ex_low, bool):  # draft 4 spells these as booleans beside minimum/maximum
        ex_low = low if ex_low else None
    if isinstance(ex_high, bool):
        ex_high = high if ex_high else None
    if isinstance(ex_low, (int, float)):
        low = max(low, ex_low + nudge) if isinstance(low, (int, float)) else ex_low + nudge
    if isinstance(ex_high, (int, float)):
        high = min(high, ex_high - nudge) if isinstance(high, (int, float)) else ex_high - nudge
    value: float = 1
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(high, (int, float)) and value > high:
        value = high
    if isinstance(step, (int, float)) and step > 0:
        value = math.ceil(value / step) * step
        if isinstance(high, (int, float)) and value > high:
            value = math.floor(high / step) * step
    if integer:
        value = math.ceil(value)
        if isinstance(high, (int, float)) and value > high:
            value = math.floor(high)
        return int(value)
    return value
