"""A Responses API request (``lib.protocols.responses``) as the gateway's chat request; what is translated
how is listed in that module's docstring."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from lib import errors
from lib.protocols import friendly_error
from lib.protocols.chat import ChatCompletionRequest
from lib.protocols.responses import (
    NOT_SUPPORTED, AllowedTools, FunctionCallItem, FunctionCallOutputItem, FunctionTool, InputAudio, InputFile,
    InputImage, InputText, MessageItem, NamedChoice, OutputText, Refusal, ResponsesRequest, refuse, input_items,
)


def to_chat(req: ResponsesRequest, history: list[Any]) -> ChatCompletionRequest:
    """The chat request for ``req`` after ``history`` (the items of the previous response, if any).

    Raises ``InvalidValue`` (400) for a tool output without its call, a file id, or a bad tool choice.
    """
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    calls: set[str] = set()
    offset = len(history)
    for n, item in enumerate([*history, *input_items(req)]):
        where = f"input.{n - offset}" if n >= offset else "previous_response_id"
        if isinstance(item, FunctionCallItem):
            calls.add(item.call_id)
            call = {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in calls:
                raise errors.InvalidValue(f"No tool call found for function call output with call_id '{item.call_id}'.",
                                          param=f"{where}.call_id", code="tool_call_not_found")
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _text(item.output)})
        else:
            messages.append(_message(item, where))
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    if not messages:
        raise errors.MissingField("The request has no input to answer.", param="input")
    _tools(req, body)
    fmt = req.text.format if req.text else None
    if fmt is not None and fmt.type == "json_schema":
        spec = {k: v for k, v in (("name", fmt.name), ("schema", fmt.schema_), ("description", fmt.description),
                                  ("strict", fmt.strict)) if v is not None}
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif fmt is not None and fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    if req.text is not None and req.text.verbosity is not None:
        body["verbosity"] = req.text.verbosity
    if req.reasoning is not None and req.reasoning.effort is not None:
        body["reasoning_effort"] = req.reasoning.effort
    for ours, theirs in (("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"),
                         ("top_p", "top_p"), ("user", "user"), ("safety_identifier", "safety_identifier"),
                         ("prompt_cache_key", "prompt_cache_key"), ("service_tier", "service_tier")):
        value = getattr(req, ours)
        if value is not None:
            body[theirs] = value
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # the final event carries usage
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise friendly_error(exc) from None


def _message(item: MessageItem, where: str) -> dict[str, Any]:
    if isinstance(item.content, str):
        return {"role": item.role, "content": item.content}
    if item.role in ("system", "developer"):
        return {"role": item.role, "content": _text(item.content)}
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(item.content):
        if isinstance(part, (InputText, OutputText)):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, Refusal):
            parts.append({"type": "refusal", "refusal": part.refusal})
        elif isinstance(part, InputImage):
            if not part.image_url:
                raise refuse(f"{where}.content.{j}.file_id", f"Images by file_id {NOT_SUPPORTED}: send image_url "
                              "(an https URL or a data: URL).")
            image: dict[str, Any] = {"url": part.image_url}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part, InputFile):
            if not part.file_data:
                raise refuse(f"{where}.content.{j}", f"Files by file_id or file_url {NOT_SUPPORTED}: send file_data.")
            parts.append({"type": "file", "file": {"file_data": part.file_data, "filename": part.filename or "file"}})
        elif isinstance(part, InputAudio):
            parts.append({"type": "input_audio", "input_audio": part.input_audio})
    if item.role == "assistant" and all(p["type"] == "text" for p in parts):
        return {"role": "assistant", "content": "".join(p["text"] for p in parts)}
    return {"role": item.role, "content": parts}


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(getattr(p, "text", "") or "" for p in content)


def _tools(req: ResponsesRequest, body: dict[str, Any]) -> None:
    tools = list(req.tools or [])
    choice = req.tool_choice
    if isinstance(choice, AllowedTools):  # emulated: only the allowed tools are offered
        allowed = {t.get("name") or (t.get("function") or {}).get("name") for t in choice.tools}
        tools = [t for t in tools if t.name in allowed]
        if not tools:
            raise errors.InvalidValue("tool_choice.tools names no tool of 'tools'.", param="tool_choice.tools")
        choice = choice.mode
    if not tools:
        if isinstance(choice, NamedChoice):
            raise errors.InvalidValue(f"tool_choice names '{choice.name}' but no tools are given.", param="tool_choice")
        return
    names = {t.name for t in tools}
    if isinstance(choice, NamedChoice) and choice.name not in names:
        raise errors.InvalidValue(f"tool_choice names '{choice.name}', which is not in 'tools'.", param="tool_choice")
    out = []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            function = {k: v for k, v in (("name", tool.name), ("description", tool.description),
                                          ("parameters", tool.parameters), ("strict", tool.strict)) if v is not None}
            out.append({"type": "function", "function": function})
        else:
            custom = {k: v for k, v in (("name", tool.name), ("description", tool.description),
                                        ("format", tool.format)) if v is not None}
            out.append({"type": "custom", "custom": custom})
    body["tools"] = out
    if isinstance(choice, NamedChoice):
        body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}} if choice.type == "function"
                               else {"type": "custom", "custom": {"name": choice.name}})
    elif choice is not None:
        body["tool_choice"] = choice
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls
