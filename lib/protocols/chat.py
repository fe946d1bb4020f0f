"""Pydantic models for the OpenAI chat completions request, and the function that turns a JSON body into one.

Unknown OpenAI parameters are kept (``extra="allow"``) and passed on to providers that understand them,
so a new OpenAI parameter does not need a proxy release. Everything the proxy itself reads is validated.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from lib import errors, offload
from lib.protocols import friendly_error
from lib.protocols.structured import check_json_schema_format


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(BaseModel):
    """Content parts the proxy passes through without reading (input_audio, file, refusal, ...)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["input_audio", "file", "refusal"]


ContentPart = Union[TextPart, ImagePart, OtherPart]


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function", "custom"] = "function"
    function: ToolCallFunction | None = None
    custom: dict[str, Any] | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]  # function: deprecated
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    function_call: dict[str, Any] | None = None  # deprecated form of tool_calls, still in OpenAI's spec

    @model_validator(mode="after")
    def _content_required(self) -> "Message":
        if self.role == "assistant":
            pass  # OpenAI's spec lets an assistant turn carry any of content, tool_calls, function_call or none
        elif self.role == "function":
            if not self.name:
                raise ValueError("a function message needs name")
        elif self.content is None:
            raise ValueError(f"a {self.role} message needs content")
        if isinstance(self.content, list) and not self.content and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs content")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs tool_call_id")
        return self


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class FunctionTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    function: FunctionDef


class CustomTool(BaseModel):
    """OpenAI's free-form ``custom`` tools: passed to OpenAI; other providers take function tools only."""

    model_config = ConfigDict(extra="allow")
    type: Literal["custom"]
    custom: dict[str, Any]


Tool = Union[FunctionTool, CustomTool]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema(self) -> "ResponseFormat":
        if self.type == "json_schema":
            if self.json_schema is None:
                raise ValueError("a json_schema response format needs 'json_schema': {name, schema}")
            check_json_schema_format(self.json_schema)
        return self


class ChatCompletionRequest(BaseModel):
    """An OpenAI ``/v1/chat/completions`` request body."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    # A native request of another protocol this one was translated from (``{provider type: payload}``),
    # for the adapter of that type to send as it is. Set only by ingress code, never from a client's JSON.
    _native: dict[str, Any] | None = PrivateAttr(default=None)
    # The size of the JSON body it was parsed from (0 when unknown) and its prompt tokens by model, counted once.
    _size: int = PrivateAttr(default=0)
    _prompt_tokens: dict[str, int] = PrivateAttr(default_factory=dict)

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _tool_choice(cls, v: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(v, str) and v not in ("none", "auto", "required"):
            raise ValueError("tool_choice must be 'none', 'auto', 'required' or a named tool")
        return v

    @property
    def output_limit(self) -> int | None:
        """The caller's cap on output tokens (``max_completion_tokens`` wins over ``max_tokens``)."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def heavy(self) -> bool:
        """True for a request large enough to be worked on off the gevent loop (``lib.offload``)."""
        return self._size >= offload.HEAVY_BYTES or len(self.messages) > offload.HEAVY_MESSAGES

    def sized(self, size: int) -> "ChatCompletionRequest":
        """Note the size of the body this request came from (see ``heavy``); returns ``self``."""
        self._size = size
        return self

    def prompt_texts(self) -> list[str]:
        """The text of every message (string contents and text parts), for the content policy."""
        texts = []
        for m in self.messages:
            if isinstance(m.content, str):
                texts.append(m.content)
            elif m.content:
                texts.extend(p.text for p in m.content if getattr(p, "type", None) == "text")
        return texts

    def counted(self, model: str, count: Callable[[], int]) -> int:
        """The prompt tokens of this request for ``model``: ``count()`` the first time, remembered after."""
        if model not in self._prompt_tokens:
            self._prompt_tokens[model] = count()
        return self._prompt_tokens[model]

    def upstream_body(self) -> dict[str, Any]:
        """The request as a plain dict for providers, without unset fields and proxy-only fields.

        Keys a client sent starting with ``_`` are dropped (no provider parameter does; the proxy's own
        ``NATIVE_FIELD`` is one, set only from ``with_native``)."""
        if self.heavy:  # one message at a time, so the worker's other requests get the GIL in between
            rest = self.model_dump(exclude_none=True, exclude={"messages"})
            body = {"model": rest.pop("model"), "messages": [m.model_dump(exclude_none=True) for m in self.messages],
                    **rest}  # model and messages are the first two fields: the order of a whole dump
        else:
            body = self.model_dump(exclude_none=True, exclude_unset=False)
        for proxy_only in PROXY_ONLY_FIELDS:
            body.pop(proxy_only, None)
        for name in [k for k in body if k.startswith("_")]:
            del body[name]
        if not self.stream:
            body.pop("stream", None)
            body.pop("stream_options", None)
        if self._native:
            body[NATIVE_FIELD] = self._native
        return body

    def with_native(self, provider_type: str, payload: dict[str, Any]) -> "ChatCompletionRequest":
        """Attach the original request of another protocol for adapters of ``provider_type`` (see
        ``NATIVE_FIELD``); returns ``self``."""
        self._native = {**(self._native or {}), provider_type: payload}
        return self


# Fields the proxy accepts for its own use and never forwards to a provider.
PROXY_ONLY_FIELDS = ("text", "cache", "aiproxy")
# The body key carrying ``{provider type: native request}`` to adapters; every adapter drops it, the one
# of that type sends the native request instead of translating the chat body.
NATIVE_FIELD = "_native"


def parse_chat_request(data: Any) -> ChatCompletionRequest:
    """Validate a decoded JSON body into a ``ChatCompletionRequest``.

    A body with a plain ``text`` string (and no ``messages``) becomes one user message; a missing model
    is an error. Raises ``errors.InvalidRequest`` subclasses (400) with the offending ``param``.
    """
    if not isinstance(data, dict):
        raise errors.InvalidJSON("The request body must be a JSON object.")
    body = dict(data)
    if "messages" not in body and "text" in body:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise errors.InvalidValue("'text' must be a non-empty string.", param="text")
        body["messages"] = [{"role": "user", "content": text}]
    if "messages" not in body:
        raise errors.MissingField("Missing required parameter: 'messages' (or a plain 'text' string).",
                                  param="messages")
    if isinstance(body.get("messages"), list) and not body["messages"]:
        raise errors.MissingField("'messages' must contain at least one message.", param="messages")
    if "model" not in body:
        raise errors.MissingField("Missing required parameter: 'model'.", param="model")
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise friendly_error(exc) from None
