"""The Azure OpenAI wire format: ``/openai/deployments/{deployment}/chat/completions`` and ``/embeddings``.

Bodies are OpenAI's (``openai_wire`` builds them); what Azure changes:

- the deployment is in the path and ``?api-version=`` is required (404 ``Resource not found`` without it);
- authentication is the ``api-key`` header or an Entra ID ``Authorization: Bearer`` token; a bad one is
  ``401 {"error": {"code": "401", "message": "Access denied due to invalid subscription key ..."}}``;
- errors carry Azure's ``code`` strings (``"429"`` with ``retry-after``, ``DeploymentNotFound``,
  ``InternalServerError``);
- content filtering: answers carry ``prompt_filter_results`` and per-choice ``content_filter_results`` (a
  stream starts with a ``choices: []`` chunk holding the prompt's); ``[fake:content_filter]`` is Azure's 400
  ``content_filter`` error with ``innererror.content_filter_result``; ``[fake:output_filter]`` answers 200 with
  ``finish_reason: content_filter`` and no content;
- ``model`` in answers is the model behind the deployment (``MODELS``), not the deployment's name.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterator

from tests.fakes import openai_wire
from tests.fakes.script import Reply, Request, parse_directives, sse

MODELS = {"gpt-4o-prod": "gpt-4o-2024-11-20", "gpt-4o-mini-prod": "gpt-4o-mini-2024-07-18"}
API_VERSIONS = {"2024-10-21", "2024-06-01", "2025-01-01-preview", "2024-12-01-preview"}
SAFE = {name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    return Reply(status=status, body={"error": {"code": code, "message": message, **extra}}, headers=dict(headers or {}))


def _auth(req: Request, fake: Any) -> Reply | None:
    key = req.headers.get("api-key", "").strip()
    bearer = req.headers.get("authorization", "")
    token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
    if (key and fake.key_ok(key)) or (token and fake.key_ok(token)):
        return None
    return error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                 "provide a valid key for an active subscription and use a correct regional API endpoint for your "
                 "resource.")


def _scripted(status: int, retry: float | None, quoted: str) -> Reply:
    if status == 429:
        wait = int(retry or 1)
        return error(429, "429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                     f"2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry "
                     f"after {wait} seconds.", {"retry-after": str(wait), "retry-after-ms": str(wait * 1000)})
    if status in (401, 403):
        return error(status, str(status), "Access denied due to invalid subscription key or wrong API endpoint.")
    if status == 404:
        return error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you created "
                     "the deployment within the last 5 minutes, please wait a moment and try again.")
    if status == 400:
        said = f" (you sent: {quoted!r})" if quoted else ""
        return Reply(status=400, body={"error": {"message": f"Invalid value for 'messages'{said}.",
                                                 "type": "invalid_request_error", "param": "messages", "code": None}})
    if status == 503:
        return error(503, "ServiceUnavailable", "The service is temporarily unable to process your request.")
    return error(status, "InternalServerError", "The server had an error while processing your request.")


def _filtered() -> Reply:
    result = dict(SAFE, violence={"filtered": True, "severity": "high"})
    return Reply(status=400, body={"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result}}})


def chat(req: Request, fake: Any) -> Reply:
    """``POST /openai/deployments/{deployment}/chat/completions?api-version=...``."""
    if req.query.get("api-version") not in API_VERSIONS:
        return error(404, "404", "Resource not found")
    denied = _auth(req, fake)
    if denied:
        return denied
    deployment = req.query["path.deployment"]
    body = dict(req.json) if isinstance(req.json, dict) else {}
    body["model"] = MODELS.get(deployment, deployment)
    turn = openai_wire.parse_turn(body)
    if isinstance(turn, Reply):
        return turn
    directives = parse_directives(turn.last_text)
    if "content_filter" in directives:
        return _filtered()
    failing = fake.script.error_status(turn)
    answer = fake.script.answer(turn)
    if answer.number("slow"):
        time.sleep(answer.number("slow"))
    if failing:
        return _scripted(failing[0], failing[1], "")
    if "output_filter" in directives:
        answer.text, answer.finish, answer.pieces = "", "content_filter", []
    if body.get("stream"):
        return Reply(frames=_stream(body, answer, turn.n), content_type="text/event-stream; charset=utf-8")
    completion = openai_wire.completion(body, answer, turn.n)
    completion["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE}]
    for choice in completion["choices"]:
        choice["content_filter_results"] = dict(SAFE, violence={"filtered": True, "severity": "high"}) \
            if answer.finish == "content_filter" else SAFE
    return Reply(body=completion)


def _stream(body: dict[str, Any], answer: Any, n: int) -> Iterator[bytes]:
    yield sse({"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": SAFE}]})
    for frame in openai_wire.stream_frames(body, answer, n):
        if frame.startswith(b"data: {") and b'"choices":[{' in frame.replace(b" ", b""):
            data = json.loads(frame[6:])
            for choice in data.get("choices") or []:
                choice["content_filter_results"] = SAFE if choice.get("delta", {}).get("content") else {}
            frame = sse(data)
        yield frame


def embeddings(req: Request, fake: Any) -> Reply:
    """``POST /openai/deployments/{deployment}/embeddings?api-version=...``."""
    if req.query.get("api-version") not in API_VERSIONS:
        return error(404, "404", "Resource not found")
    denied = _auth(req, fake)
    if denied:
        return denied
    body = dict(req.json) if isinstance(req.json, dict) else {}
    body["model"] = req.query["path.deployment"]
    req.json = body
    saved = req.headers.get("authorization")
    req.headers["authorization"] = "Bearer azure"  # openai_wire checks a bearer key; Azure's was checked above
    try:
        return openai_wire.embeddings(req, _AnyKey())
    finally:
        if saved is None:
            req.headers.pop("authorization", None)
        else:
            req.headers["authorization"] = saved


class _AnyKey:
    rate_limited_keys: set[str] = set()

    def key_ok(self, key: str) -> bool:
        return True
