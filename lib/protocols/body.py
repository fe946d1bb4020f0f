"""Request bodies as bytes → JSON, with every failure a 400 in the OpenAI envelope."""

from __future__ import annotations

import json
from typing import Any

from lib import errors


def decode_json_body(raw: bytes) -> Any:
    """Decode request bytes as UTF-8 JSON. Raises ``InvalidJSON`` (400) for bad bytes or bad JSON."""
    if not raw:
        raise errors.InvalidJSON("The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidJSON("The request body is not valid UTF-8.", code="invalid_encoding") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise errors.InvalidJSON(
            f"We could not parse the JSON body of your request ({exc.msg} at line {exc.lineno} column {exc.colno})."
        ) from None
