"""Naming a refused parameter in the client's own protocol.

The pipeline and the adapters speak chat completions, so a 400 they raise names chat parameters
(``max_completion_tokens``, ``response_format`` …). An ingress that translated another protocol renames
them back with ``renamed`` so the client reads the field it sent.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

from lib import errors

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
