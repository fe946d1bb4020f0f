"""The Gemini ``generateContent`` / ``streamGenerateContent`` wire format, with Google's error bodies."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator

from tests.fakes.script import Answer, CutConnection, Reply, Request, Turn, first_property

TOP_LEVEL = {"contents", "systemInstruction", "system_instruction", "generationConfig", "generation_config",
             "tools", "toolConfig", "tool_config", "safetySettings", "safety_settings", "cachedContent",
             "cached_content"}
GENERATION = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed",
              "responseMimeType", "responseSchema", "responseJsonSchema", "presencePenalty", "frequencyPenalty",
              "responseLogprobs", "logprobs", "thinkingConfig", "responseModalities", "speechConfig"}
PART_KEYS = {"text", "inlineData", "functionCall", "functionResponse", "fileData", "executableCode",
             "codeExecutionResult", "thought", "thoughtSignature"}
SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems", "properties",
               "required", "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "example",
               "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum"}
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}


def error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> Reply:
    """Google's error body: ``{"error": {"code", "message", "status", "details"?}}``."""
    err: dict[str, Any] = {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}
    if details:
        err["details"] = details
    return Reply(status=status, body={"error": err}, content_type="application/json; charset=UTF-8")


def scripted_error(status: int, retry: float | None, model: str) -> Reply:
    if status == 429:
        delay = f"{int(retry if retry is not None else 1)}s"
        return error(429, "You exceeded your current quota, please check your plan and billing details.", [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
             "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                             "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}])
    messages = {
        400: "Request contains an invalid argument.",
        401: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
             "other valid authentication credential.",
        403: "Permission denied: Consumer does not have access to this model.",
        404: f"models/{model} is not found for API version v1beta, or is not supported for generateContent. "
             "Call ListModels to see the list of available models and their supported methods.",
        500: "An internal error has occurred. Please retry or report in "
             "https://developers.generativeai.google/guide/troubleshooting",
        503: "The model is overloaded. Please try again later.",
        504: "Deadline expired before operation could complete.",
    }
    return error(status, messages.get(status, "Unknown error."))


def _unknown(name: str, where: str | None = None) -> Reply:
    at = f" at '{where}'" if where else ""
    return error(400, f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _check_schema(schema: Any, where: str) -> Reply | None:
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key not in SCHEMA_KEYS:
            return _unknown(key, where)
        if key == "type" and not isinstance(value, str):
            return error(400, f"Invalid value at '{where}.type': expected a single type name")
    for name, sub in (schema.get("properties") or {}).items():
        problem = _check_schema(sub, f"{where}.properties[{name}].value")
        if problem:
            return problem
    return _check_schema(schema.get("items"), f"{where}.items") if "items" in schema else None


def _check_auth(req: Request, fake: Any) -> Reply | None:
    key = req.headers.get("x-goog-api-key") or req.query.get("key", "")
    if not key:
        return error(403, "Method doesn't allow unregistered callers (callers without established identity). "
                     "Please use API Key or other form of API consumer identity to call this API.")
    if not fake.key_ok(key):
        return error(400, "API key not valid. Please pass a valid API key.", [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
    if key in fake.rate_limited_keys:
        return scripted_error(429, 1, "")
    return None


def parse_turn(req: Request, fake: Any) -> Turn | Reply:
    """Check the key and body as the Gemini API does, then build the neutral ``Turn``."""
    denied = _check_auth(req, fake)
    if denied:
        return denied
    body = req.json
    if not isinstance(body, dict):
        return error(400, "Invalid JSON payload received.")
    for name in body:
        if name not in TOP_LEVEL:
            return _unknown(name)
    config = body.get("generationConfig") or body.get("generation_config") or {}
    for name in config:
        if name not in GENERATION:
            return _unknown(name, "generation_config")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return error(400, "* GenerateContentRequest.contents: contents is not specified\n")
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    texts = [p.get("text", "") for p in system.get("parts", [])]
    for i, content in enumerate(contents):
        if content.get("role", "user") not in ("user", "model"):
            return error(400, "Please use a valid role: user, model.")
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return error(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n")
        for j, part in enumerate(parts):
            for key in part:
                if key not in PART_KEYS:
                    return _unknown(key, f"contents[{i}].parts[{j}]")
            if "inlineData" in part and not (part["inlineData"].get("mimeType") and part["inlineData"].get("data")):
                return error(400, f"* GenerateContentRequest.contents[{i}].parts[{j}].inline_data: mime_type and "
                             "data are required\n")
            if "functionResponse" in part and not isinstance(part["functionResponse"].get("response"), dict):
                return error(400, f"Invalid value at 'contents[{i}].parts[{j}].function_response.response'")
            texts.append(part.get("text", ""))
            if "functionResponse" in part:
                texts.append(json.dumps(part["functionResponse"]["response"]))
    tools: list[tuple[str, str]] = []
    for t, tool in enumerate(body.get("tools") or []):
        for d, decl in enumerate(tool.get("functionDeclarations") or tool.get("function_declarations") or []):
            problem = _check_schema(decl.get("parameters"), f"tools[{t}].function_declarations[{d}].parameters")
            if problem:
                return problem
            tools.append((decl["name"], first_property(decl.get("parameters"))))
    problem = _check_schema(config.get("responseSchema"), "generation_config.response_schema")
    if problem:
        return problem
    last = [c for c in contents if c.get("role", "user") == "user"][-1]
    results = [p["functionResponse"]["response"] for p in last["parts"] if "functionResponse" in p]
    if results:
        last_text = "".join(str(r.get("content", json.dumps(r))) for r in results)
    else:
        last_text = "".join(p.get("text", "") for p in last["parts"])
    calling = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {})
    mode = calling.get("mode", "AUTO")
    choice = {"NONE": "none", "ANY": "required"}.get(mode, "auto")
    if mode == "ANY" and calling.get("allowedFunctionNames"):
        choice = calling["allowedFunctionNames"][0]
    json_format = None
    if config.get("responseMimeType") == "application/json":
        json_format = config.get("responseSchema") or {}
    elif config.get("responseSchema"):
        return error(400, "response_mime_type must be application/json when response_schema is set")
    schemas = {decl["name"]: decl.get("parameters") for tool in body.get("tools") or []
               for decl in tool.get("functionDeclarations") or tool.get("function_declarations") or []}
    return Turn(texts=texts, last_text=last_text, last_is_tool_result=bool(results) and last is contents[-1],
                max_tokens=config.get("maxOutputTokens"), stop=list(config.get("stopSequences") or []),
                n=int(config.get("candidateCount") or 1), tools=tools, tool_choice=choice,
                json_format=json_format, schemas=schemas)


def _usage(a: Answer, final: bool) -> dict[str, Any]:
    thoughts = int(a.number("thoughts"))
    cached = int(a.number("cached"))
    usage: dict[str, Any] = {"promptTokenCount": a.prompt_tokens,
                             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": a.prompt_tokens}]}
    total = a.prompt_tokens
    if final:
        usage["candidatesTokenCount"] = a.completion_tokens
        total += a.completion_tokens
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
            total += thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["totalTokenCount"] = total
    return usage


def _candidate(a: Answer, index: int, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def response(model: str, a: Answer, n: int) -> dict[str, Any]:
    base: dict[str, Any] = {"modelVersion": model, "responseId": uuid.uuid4().hex[:22]}
    if a.flag("blocked"):
        return dict(base, promptFeedback={"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
            usageMetadata={"promptTokenCount": a.prompt_tokens, "totalTokenCount": a.prompt_tokens})
    if a.flag("safety"):
        candidates = [{"finishReason": "SAFETY", "index": i, "safetyRatings": [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]}
            for i in range(n)]
    elif a.tool_call:
        call = {"functionCall": {"name": a.tool_call[0], "args": a.tool_call[1]}}
        candidates = [_candidate(a, i, [call], "STOP") for i in range(n)]
    else:
        candidates = [_candidate(a, i, [{"text": a.text}], FINISH[a.finish]) for i in range(n)]
    return dict(base, candidates=candidates, usageMetadata=_usage(a, True))


def _frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\r\n\r\n"


def stream_frames(model: str, a: Answer, n: int) -> Iterator[bytes]:
    """``alt=sse`` chunks: text pieces, the last one with ``finishReason`` and final usage."""
    full = response(model, a, n)
    if a.flag("blocked") or a.flag("safety") or a.tool_call:
        if a.flag("no_usage"):
            full.pop("usageMetadata", None)
        yield _frame(full)
        return
    base = {"modelVersion": model, "responseId": full["responseId"]}
    pieces = a.pieces or [""]
    delay, half = a.number("chunk_delay"), max(1, len(pieces) // 2)
    for j, piece in enumerate(pieces):
        if j == half and a.flag("midstream_error"):
            yield _frame({"error": {"code": 500, "message": "An internal error has occurred. Please retry or "
                                    "report in https://developers.generativeai.google/guide/troubleshooting",
                                    "status": "INTERNAL"}})
            return
        if j == half and a.flag("midstream_cut"):
            raise CutConnection()
        if delay:
            time.sleep(delay)
        last = j == len(pieces) - 1
        chunk: dict[str, Any] = dict(base, candidates=[
            _candidate(a, i, [{"text": piece}], FINISH[a.finish] if last else None) for i in range(n)])
        if not a.flag("no_usage"):
            chunk["usageMetadata"] = _usage(a, last)
        yield _frame(chunk)


def generate(req: Request, fake: Any) -> Reply:
    """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``."""
    turn = parse_turn(req, fake)
    if isinstance(turn, Reply):
        return turn
    model = req.query["path.model"]
    failing = fake.script.error_status(turn)
    answer = fake.script.answer(turn)
    if answer.number("slow"):
        time.sleep(answer.number("slow"))
    if failing:
        return scripted_error(failing[0], failing[1], model)
    if req.query["path.method"] == "streamGenerateContent":
        if req.query.get("alt") == "sse":
            return Reply(frames=stream_frames(model, answer, turn.n), content_type="text/event-stream")
        chunks = [json.loads(f[6:]) for f in stream_frames(model, answer, turn.n)]
        return Reply(body=chunks)
    return Reply(body=response(model, answer, turn.n))
