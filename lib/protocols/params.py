"""Naming a refused parameter in the client's own protocol.

The pipeline and the adapters speak chat completions, so a 400 they raise names chat parameters
(``max_completion_tokens``, ``response_format`` …). An ingress that translated another protocol renames
them back with ``renamed`` so the client reads the field it sent.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from pydantic import ValidationError

from lib import errors
from lib.protocols import friendly_error

RESPONSES = {"max_completion_tokens": "max_output_tokens", "response_format": "text.format",
             "reasoning_effort": "reasoning.effort", "verbosity": "text.verbosity", "messages": "input"}
MESSAGES = {"max_completion_tokens": "max_tokens", "stop": "stop_sequences", "user": "metadata.user_id",
            "tool_choice": "tool_choice", "messages": "messages"}


def rename(exc: errors.GatewayError, names: Mapping[str, str]) -> errors.GatewayError:
    """``exc`` with its ``param`` (and the quoted name in its message) in the client's terms; returns it."""
    param = exc.param
    if not param:
        return exc
    head, dot, rest = param.partition(".")
    if head in names and names[head] != head:
        exc.param = names[head] + (dot + rest if rest else "")
        exc.message = exc.message.replace(f"'{param}'", f"'{exc.param}'")
    return exc


@contextmanager
def renamed(names: Mapping[str, str]) -> Iterator[None]:
    """Re-raise any ``GatewayError`` from the block with ``rename`` applied."""
    try:
        yield
    except errors.GatewayError as exc:
        raise rename(exc, names)


class _Deepest:
    """A ``ValidationError`` look-alike whose errors run deepest first (what ``friendly_error`` reads)."""

    def __init__(self, exc: ValidationError) -> None:
        self._errors = sorted(exc.errors(), key=lambda e: -len(e.get("loc", ())))

    def errors(self) -> list[Any]:
        return self._errors


def specific_error(exc: ValidationError) -> errors.InvalidRequest:
    """``friendly_error`` for the most specific problem. A field that is "a string or a list of items" fails
    both ways; pydantic lists the string branch first ("should be a valid string"), while the useful error is
    the deepest one inside the list (the item whose type is unknown)."""
    first = exc.errors()[0]
    loc = first.get("loc", ())
    if first.get("type") == "string_type" and loc and loc[-1] == "str" and len(exc.errors()) > 1:
        return friendly_error(_Deepest(exc))  # type: ignore[arg-type]
    return friendly_error(exc)
