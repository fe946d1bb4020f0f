"""Ingress request shapes (chat completions, embeddings; later responses and messages) and their validation.

``parse_model`` is the one place a pydantic ``ValidationError`` becomes the OpenAI-style 400 a client sees,
with ``param`` naming the field path the way OpenAI does.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lib import errors

M = TypeVar("M", bound=BaseModel)


def _is_union_tag(part: Any) -> bool:
    """Pydantic puts the union member it tried into error locations (``str``, ``list[int]``, ``FunctionTool``,
    ``function-after[...]``); OpenAI's ``param`` names only the field path."""
    text = str(part)
    return isinstance(part, str) and ("[" in text or text in {"str", "int", "float", "bool", "dict", "list"}
                                      or text[:1].isupper())


def friendly_error(exc: ValidationError) -> errors.InvalidRequest:
    """The first pydantic error as an OpenAI-style 400 with ``param`` set (``missing_field``,
    ``unknown_parameter``, ``invalid_role`` or ``invalid_value``)."""
    first = exc.errors()[0]
    loc = first.get("loc", ())
    param = ".".join(str(p) for p in loc if not _is_union_tag(p))
    kind = first.get("type", "")
    msg = first.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "missing":
        return errors.MissingField(f"Missing required parameter: '{param}'.", param=param)
    if kind == "extra_forbidden":
        return errors.InvalidValue(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")
    if param.endswith(".role"):
        return errors.InvalidValue(f"Invalid value for '{param}': {msg}.", param=param, code="invalid_role")
    return errors.InvalidValue(f"Invalid value for '{param}': {msg}.", param=param)


def parse_model(model: type[M], data: Any) -> M:
    """Validate a decoded JSON body into ``model``. Raises ``InvalidJSON`` when it is not an object and
    ``friendly_error``'s 400 when it does not validate."""
    if not isinstance(data, dict):
        raise errors.InvalidJSON("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise friendly_error(exc) from None
