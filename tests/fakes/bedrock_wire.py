"""The Amazon Bedrock Runtime wire format: Converse and ConverseStream (rest-json, SigV4-signed).

    POST /model/{modelId}/converse          JSON in, JSON out
    POST /model/{modelId}/converse-stream   JSON in, ``application/vnd.amazon.eventstream`` out (``eventstream``)

Requests must carry a SigV4 ``Authorization`` header for the ``bedrock`` service (its shape is checked, not
its signature); the access key id in it is checked like other fakes' keys (``UnrecognizedClientException``
403 for a bad one). Messages must alternate user/assistant starting with a user turn, ``toolUse`` /
``toolResult`` blocks need a ``toolConfig``, images must be png/jpeg/gif/webp bytes (base64 in the JSON) —
``ValidationException`` otherwise, as Bedrock does.

Errors are Bedrock's: the status, ``x-amzn-ErrorType`` and ``{"message": ...}``; ``[fake:error=N]`` picks the
exception of that status (``EXCEPTIONS``) and ``[fake:aws_error=ModelNotReadyException]`` names one.
Bedrock sends no Retry-After. In a stream ``midstream_error`` is a ``modelStreamErrorException`` event.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from typing import Any, Iterator
from urllib.parse import unquote

from tests.fakes import eventstream
from tests.fakes.script import Answer, CutConnection, Reply, Request, Turn, first_property, parse_directives

PATH = re.compile(r"^/model/([^/]+)/(converse|converse-stream)$")
AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)/\d{8}/([a-z0-9-]+)/bedrock/aws4_request, "
                  r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$")
EXCEPTIONS = {  # name → status, message
    "ValidationException": (400, "The model returned the following errors: malformed input request"),
    "AccessDeniedException": (403, "You don't have access to the model with the specified model ID."),
    "UnrecognizedClientException": (403, "The security token included in the request is invalid."),
    "ResourceNotFoundException": (404, "Could not resolve the foundation model from the provided model identifier."),
    "ModelTimeoutException": (408, "Model has timed out in processing the request."),
    "ModelErrorException": (424, "The model failed to process the request."),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "ModelNotReadyException": (429, "Model is not ready to serve inference requests."),
    "InternalServerException": (500, "The server encountered an internal error."),
    "ServiceUnavailableException": (503, "Bedrock is unable to process your request."),
}
BY_STATUS = {400: "ValidationException", 401: "AccessDeniedException", 403: "AccessDeniedException",
             404: "ResourceNotFoundException", 408: "ModelTimeoutException", 424: "ModelErrorException",
             429: "ThrottlingException", 500: "InternalServerException", 503: "ServiceUnavailableException"}
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
FORMATS = {"png", "jpeg", "gif", "webp"}


def fail(name: str, message: str | None = None) -> Reply:
    status, default = EXCEPTIONS[name]
    return Reply(status=status, body={"message": message or default},
                 headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                          "x-amzn-RequestId": str(uuid.uuid4())})


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    out = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"])
        for part in (block.get("toolResult") or {}).get("content") or []:
            if "text" in part:
                out.append(part["text"])
    return out


def parse_turn(body: dict[str, Any]) -> Turn | Reply:
    """Validate a Converse body as Bedrock does and build the neutral ``Turn``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return fail("ValidationException", "A conversation must start with a user message.")
    expected = "user"
    has_tool_blocks = False
    for i, m in enumerate(messages):
        if m.get("role") != expected:
            return fail("ValidationException", "A conversation must alternate between user and assistant roles. "
                        f"Message {i} should be a {expected} message.")
        expected = "assistant" if expected == "user" else "user"
        for block in m.get("content") or []:
            has_tool_blocks = has_tool_blocks or "toolUse" in block or "toolResult" in block
            image = block.get("image")
            if image is not None:
                try:
                    base64.b64decode(image["source"]["bytes"], validate=True)
                except (KeyError, TypeError, binascii.Error):
                    return fail("ValidationException", "The image bytes are not valid base64.")
                if image.get("format") not in FORMATS:
                    return fail("ValidationException", f"Unsupported image format {image.get('format')!r}.")
    config = body.get("toolConfig") or {}
    if has_tool_blocks and not config.get("tools"):
        return fail("ValidationException", "The toolConfig field must be defined when using toolUse and toolResult "
                    "content blocks.")
    last = messages[-1]["content"] or []
    results = [b["toolResult"] for b in last if "toolResult" in b]
    if results:
        last_text, is_tool = " ".join(p.get("text", "") for p in results[-1].get("content") or []), True
    else:
        users = [m for m in messages if m["role"] == "user"]
        last_text, is_tool = " ".join(t for t in _texts(users[-1]["content"] or []) if t), False
    texts = [s.get("text", "") for s in body.get("system") or []]
    for m in messages:
        texts.extend(_texts(m.get("content") or []))
    specs = [t["toolSpec"] for t in config.get("tools") or [] if "toolSpec" in t]
    choice = config.get("toolChoice") or {}
    tool_choice = (choice["tool"]["name"] if "tool" in choice else "required" if "any" in choice else "auto")
    inference = body.get("inferenceConfig") or {}
    return Turn(texts=texts, last_text=last_text, last_is_tool_result=is_tool, max_tokens=inference.get("maxTokens"),
                stop=list(inference.get("stopSequences") or []),
                tools=[(s["name"], first_property((s.get("inputSchema") or {}).get("json"))) for s in specs],
                tool_choice=tool_choice,
                schemas={s["name"]: (s.get("inputSchema") or {}).get("json") for s in specs})


def _auth(req: Request, fake: Any) -> Reply | None:
    match = AUTH.match(req.headers.get("authorization", ""))
    if not match or not req.headers.get("x-amz-date"):
        return fail("UnrecognizedClientException", "Missing or malformed SigV4 Authorization header.")
    if not fake.key_ok(match.group(1)):
        return fail("UnrecognizedClientException")
    return None


def _usage(a: Answer) -> dict[str, int]:
    return {"inputTokens": a.prompt_tokens, "outputTokens": a.completion_tokens,
            "totalTokens": a.prompt_tokens + a.completion_tokens}


def _stop(a: Answer) -> str:
    return "stop_sequence" if a.stop_sequence else STOP[a.finish]


def converse(req: Request, fake: Any) -> Reply:
    """Both operations; ``path.operation`` says which."""
    denied = _auth(req, fake)
    if denied:
        return denied
    body = req.json if isinstance(req.json, dict) else None
    if body is None:
        return fail("ValidationException", "The request body is not valid JSON.")
    turn = parse_turn(body)
    if isinstance(turn, Reply):
        return turn
    directives = parse_directives(turn.last_text)
    if directives.get("aws_error") in EXCEPTIONS:
        return fail(directives["aws_error"])
    failing = fake.script.error_status(turn)
    answer = fake.script.answer(turn)
    if answer.number("slow"):
        time.sleep(answer.number("slow"))
    if failing:
        return fail(BY_STATUS.get(failing[0], "InternalServerException"))
    rid = str(uuid.uuid4())
    if req.query["path.operation"] == "converse-stream":
        return Reply(frames=_events(answer), content_type="application/vnd.amazon.eventstream",
                     headers={"x-amzn-RequestId": rid})
    content: list[dict[str, Any]] = [{"text": answer.text}]
    if answer.tool_call:
        name, args = answer.tool_call
        content = [{"toolUse": {"toolUseId": "tooluse_" + answer.call_id, "name": name, "input": args}}]
    return Reply(body={"output": {"message": {"role": "assistant", "content": content}}, "stopReason": _stop(answer),
                       "usage": _usage(answer), "metrics": {"latencyMs": 12}}, headers={"x-amzn-RequestId": rid})


def _events(a: Answer) -> Iterator[bytes]:
    """ConverseStream's events: messageStart, the block's start (tools only), deltas, stop, messageStop,
    metadata (usage)."""
    delay = a.number("chunk_delay")
    yield eventstream.event("messageStart", {"role": "assistant"})
    pieces = a.pieces
    if a.tool_call:
        import json

        name, args = a.tool_call
        text = json.dumps(args)
        pieces = [text[j:j + 8] for j in range(0, len(text), 8)]
        yield eventstream.event("contentBlockStart", {"start": {"toolUse": {"toolUseId": "tooluse_" + a.call_id,
                                                                           "name": name}}, "contentBlockIndex": 0})
    half = max(1, len(pieces) // 2)
    for j, piece in enumerate(pieces):
        if j == half and a.flag("midstream_error"):
            yield eventstream.exception("modelStreamErrorException", "The model stream failed.")
            return
        if j == half and a.flag("midstream_cut"):
            raise CutConnection()
        if delay:
            time.sleep(delay)
        delta = {"toolUse": {"input": piece}} if a.tool_call else {"text": piece}
        yield eventstream.event("contentBlockDelta", {"delta": delta, "contentBlockIndex": 0})
    yield eventstream.event("contentBlockStop", {"contentBlockIndex": 0})
    yield eventstream.event("messageStop", {"stopReason": _stop(a)})
    if not a.flag("no_usage"):
        yield eventstream.event("metadata", {"usage": _usage(a), "metrics": {"latencyMs": 12}})


def route(path: str) -> dict[str, str] | None:
    """Path parameters of a Bedrock Runtime path (the model id decoded), or None."""
    match = PATH.match(path)
    if match is None:
        return None
    return {"model": unquote(match.group(1)), "operation": match.group(2)}
