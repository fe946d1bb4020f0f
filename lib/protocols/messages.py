"""The Anthropic Messages API request (``POST /v1/messages``, ``/v1/messages/count_tokens``): its pydantic
models, and its translation into the gateway's chat request, so it runs through the same pipeline.

Served natively when the model's first route is an Anthropic instance: the request is validated here and
then sent upstream *as the client sent it* (``ChatCompletionRequest.with_native``), so ``thinking``,
``cache_control`` anywhere, documents, citations, server tools, ``container``, ``mcp_servers`` and the
``anthropic-beta`` header all reach Anthropic, and the answer comes back as Anthropic sent it.

Translated for every other provider: ``system`` (string or text blocks), ``messages`` (text, image base64
and url, ``tool_use`` → tool calls, ``tool_result`` → tool messages; ``is_error`` results are prefixed
``[tool error]``; earlier ``thinking`` blocks are dropped, as Anthropic itself drops them from earlier
turns), ``tools`` / ``tool_choice`` (``disable_parallel_tool_use`` → ``parallel_tool_calls: false``),
``stop_sequences``, ``max_tokens``, ``temperature``, ``top_p``, ``top_k`` (Gemini honours it, an
OpenAI-compatible server gets it passed on), ``metadata.user_id`` → ``user``. What only Anthropic can do
(``NATIVE_ONLY``, server tools, documents, images inside tool results, ``thinking``) is a 400 naming it
on any other provider; the sandbox accepts it and ignores it.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lib import errors
from lib.protocols import friendly_error
from lib.protocols.chat import ChatCompletionRequest
from lib.protocols.params import specific_error

VERSION = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")
BETA = re.compile(r"\A[A-Za-z0-9._-]{1,64}(\s*,\s*[A-Za-z0-9._-]{1,64}){0,31}\Z")
NATIVE_ONLY = ("thinking", "service_tier", "container", "mcp_servers", "context_management")
NATIVE_BLOCKS = ("document", "search_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
                 "code_execution_tool_result", "bash_code_execution_tool_result", "mcp_tool_use", "mcp_tool_result",
                 "container_upload", "text_editor_code_execution_tool_result", "tool_search_tool_result")


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control, citations …: kept for the native path


class TextBlock(_Block):
    type: Literal["text"]
    text: str = Field(min_length=1)


class ImageSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["base64", "url"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"] | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(_Block):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[Union[TextBlock, ImageBlock], Field(discriminator="type")]] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Block):
    type: Literal["thinking", "redacted_thinking"]


class NativeBlock(_Block):
    type: Literal[NATIVE_BLOCKS]  # type: ignore[valid-type]


Block = Annotated[Union[TextBlock, ImageBlock, ToolUseBlock, ToolResultBlock, ThinkingBlock, NativeBlock],
                  Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str | list[Block] = Field(min_length=1)


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str | None = None  # absent or "custom" for client tools; a dated type for Anthropic's server tools
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any] | None = None

    @property
    def server_tool(self) -> bool:
        return self.type not in (None, "custom")


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(None, max_length=256)


class Thinking(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = Field(None, ge=1024)


class CountTokensRequest(BaseModel):
    """A ``/v1/messages/count_tokens`` body: a Messages request without ``max_tokens``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    context_management: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    """A ``POST /v1/messages`` body (Anthropic refuses unknown fields, and so does this)."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    container: Any = None


def check_headers(version: str | None, beta: str | None) -> None:
    """``anthropic-version`` (any ``YYYY-MM-DD``; may be absent) and ``anthropic-beta`` (comma-separated
    names). Raises ``InvalidValue`` (400) when malformed."""
    if version is not None and not VERSION.match(version.strip()):
        raise errors.InvalidValue(f"anthropic-version: '{version[:40]}' is not a valid version (e.g. 2023-06-01).",
                                  param="anthropic-version", code="invalid_header")
    if beta is not None and beta.strip() and not BETA.match(beta.strip()):
        raise errors.InvalidValue("anthropic-beta: expected comma-separated beta names.", param="anthropic-beta",
                                  code="invalid_header")


def parse(model: type[CountTokensRequest], data: Any) -> Any:
    """Validate a body as ``model``. Raises ``InvalidRequest`` subclasses (400) naming the field."""
    if not isinstance(data, dict):
        raise errors.InvalidJSON("The request body must be a JSON object.")
    for name in ("model", "messages") + (("max_tokens",) if model is MessagesRequest else ()):
        if name not in data:
            raise errors.MissingField(f"{name}: Field required", param=name)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise specific_error(exc) from None


def _native_only(what: str, served_by: str) -> errors.InvalidValue:
    return errors.InvalidValue(f"{what} can only be sent to Anthropic models; this model is served by "
                               f"'{served_by}'.", param=what.split(" ")[0], code="unsupported_parameter")


def to_chat(req: CountTokensRequest, *, served_by: str, lenient: bool = False) -> ChatCompletionRequest:
    """The chat request for ``req``, for a provider named ``served_by``. ``lenient`` (the sandbox): what only
    Anthropic can do is ignored instead of refused. Raises ``InvalidValue`` (400)."""
    def refuse(what: str) -> None:
        if not lenient:
            raise _native_only(what, served_by)

    for name in NATIVE_ONLY:
        value = getattr(req, name, None)
        if value is not None and not (name == "thinking" and value.type == "disabled"):
            refuse(name)
    messages: list[dict[str, Any]] = []
    if isinstance(req.system, str) and req.system:
        messages.append({"role": "system", "content": req.system})
    elif req.system:
        messages.append({"role": "system", "content": [b.model_dump(exclude_none=True) for b in req.system]})
    for i, message in enumerate(req.messages):
        messages.extend(_turn(message, i, refuse))
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    tools = [t for t in req.tools or [] if not (t.server_tool and lenient)]
    for i, tool in enumerate(tools):
        if tool.server_tool:
            refuse(f"tools.{i} (server tool '{tool.type}')")
    if tools:
        body["tools"] = [{"type": "function", "function": {k: v for k, v in (
            ("name", t.name), ("description", t.description),
            ("parameters", t.input_schema or {"type": "object", "properties": {}})) if v is not None}} for t in tools]
        choice = req.tool_choice
        if choice is not None:
            body["tool_choice"] = ({"type": "function", "function": {"name": choice.name}} if choice.type == "tool"
                                   else {"auto": "auto", "any": "required", "none": "none"}[choice.type])
            if choice.disable_parallel_tool_use:
                body["parallel_tool_calls"] = False
    if isinstance(req, MessagesRequest):
        body["max_tokens"] = req.max_tokens
        for name in ("temperature", "top_p", "top_k"):
            if getattr(req, name) is not None:
                body[name] = getattr(req, name)
        if req.stop_sequences:
            body["stop"] = req.stop_sequences
        if req.metadata is not None and req.metadata.user_id:
            body["user"] = req.metadata.user_id
        if req.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise friendly_error(exc) from None


def _turn(message: Message, i: int, refuse: Any) -> list[dict[str, Any]]:
    """The chat messages for one Messages API turn (tool results first: chat wants them right after the call)."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        where = f"messages.{i}.content.{j}"
        if isinstance(block, TextBlock):
            part: dict[str, Any] = {"type": "text", "text": block.text}
            if (block.model_extra or {}).get("cache_control"):
                part["cache_control"] = block.model_extra["cache_control"]  # type: ignore[index]
            parts.append(part)
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": image_url(block.source, where)}})
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input, ensure_ascii=False)}})
        elif isinstance(block, ToolResultBlock):
            content = block.content
            if isinstance(content, list) and any(isinstance(b, ImageBlock) for b in content):
                refuse(f"{where} (an image inside tool_result)")
            text = content if isinstance(content, str) else "".join(
                b.text for b in content or [] if isinstance(b, TextBlock))
            results.append({"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": ("[tool error] " + text) if block.is_error else text})
        elif isinstance(block, NativeBlock):
            refuse(f"{where} ('{block.type}' block)")
        # thinking blocks of earlier turns carry nothing another provider can use
    if message.role == "assistant":
        if not parts and not calls:
            return []
        out: dict[str, Any] = {"role": "assistant", "content": "".join(p["text"] for p in parts) or None}
        if calls:
            out["tool_calls"] = calls
        return [out]
    return results + ([{"role": "user", "content": parts}] if parts else [])


def image_url(source: ImageSource, where: str) -> str:
    """A chat ``image_url`` URL (a data: URL for base64). Raises ``InvalidValue`` when a field is missing."""
    if source.type == "base64":
        if not source.media_type or not source.data:
            raise errors.MissingField(f"{where}.source: media_type and data are required", param=f"{where}.source")
        return f"data:{source.media_type};base64,{source.data}"
    if not source.url:
        raise errors.MissingField(f"{where}.source.url: Field required", param=f"{where}.source.url")
    return source.url


def native_body(data: dict[str, Any]) -> dict[str, Any]:
    """The client's Messages request as sent upstream natively (the adapter sets ``model`` and ``stream``)."""
    return {k: v for k, v in data.items() if k not in ("model", "stream")}
