"""Request bodies as bytes → JSON, with every failure a 400 in the OpenAI envelope.

Hostile JSON is refused here, before anything else touches it: ``orjson`` rejects ``NaN``/``Infinity``
(not JSON), numbers outside a double's range (a 5,000-digit integer would otherwise hit Python's int
conversion limit), invalid UTF-8 and nesting past 1,024; and ``MAX_JSON_DEPTH`` bounds nesting far below
that, because the rest of the pipeline (pydantic, the cache's canonical hash, the providers' request
mapping) walks request data recursively.
"""

from __future__ import annotations

from typing import Any

import orjson

from lib import errors

MAX_JSON_DEPTH = 64


def json_depth(data: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep decoded JSON ``data`` nests (a scalar is 0), walked without recursion; stops at the first
    level past ``limit``."""
    if not isinstance(data, (dict, list)):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if depth > limit:
                break
        for child in (node.values() if type(node) is dict else node):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return deepest


def decode_json_body(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode request bytes as UTF-8 JSON. Raises ``InvalidJSON`` (400 ``invalid_json``, or
    ``invalid_encoding`` for bytes that are not UTF-8, or ``json_too_deep`` past ``max_depth``)."""
    if not raw:
        raise errors.InvalidJSON("The request body is empty; send a JSON object.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidJSON("The request body is not valid UTF-8.", code="invalid_encoding") from None
        reason = str(exc.args[0]) if exc.args else "invalid JSON"
        if "depth limit" in reason:
            raise errors.InvalidJSON(f"The request body nests deeper than {max_depth} levels.",
                                     code="json_too_deep") from None
        raise errors.InvalidJSON(
            f"We could not parse the JSON body of your request ({reason} at line {exc.lineno} column {exc.colno})."
        ) from None
    # Fewer brackets than the limit bound the depth already: only bodies with many are walked.
    if raw.count(b"[") + raw.count(b"{") > max_depth and json_depth(data, max_depth) > max_depth:
        raise errors.InvalidJSON(f"The request body nests deeper than {max_depth} levels.", code="json_too_deep")
    return data
