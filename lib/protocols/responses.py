"""The OpenAI Responses API request (``POST /v1/responses``): its pydantic models, and its translation into
the gateway's chat request (``lib.protocols.responses_chat``), so a Responses call runs through the same
pipeline as chat completions.

Translated: ``input`` (a string, or items: messages with ``input_text`` / ``input_image`` / ``input_file``
/ ``input_audio`` / ``output_text`` / ``refusal`` parts, ``function_call`` and ``function_call_output``),
``instructions`` (a system message, not carried over by ``previous_response_id``, as OpenAI does), function
``tools`` (and ``custom`` tools, which only OpenAI models take), ``tool_choice`` (``allowed_tools`` by
narrowing the tool list), ``text.format`` (→ ``response_format``) and ``text.verbosity``,
``max_output_tokens``, ``temperature``, ``top_p``, ``parallel_tool_calls``, ``reasoning.effort``, ``user``,
``safety_identifier``, ``prompt_cache_key``, ``service_tier``. ``metadata``, ``store`` and
``previous_response_id`` are the gateway's own (``lib.protocols.responses_store``).

Refused with a 400 naming the field, never dropped: built-in tools (``web_search``, ``file_search``,
``computer_use_preview``, ``code_interpreter``, ``mcp``, ``image_generation``, ``local_shell`` …) and their
items, ``reasoning`` / ``item_reference`` items, ``background``, ``conversation``, ``prompt``,
``truncation: auto``, ``max_tool_calls``, log probabilities, file ids, and any unknown parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, field_validator

from lib import errors
from lib.protocols.params import specific_error
from lib.protocols.structured import check_json_schema_format

BUILT_IN_TOOLS = ("web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11",
                  "file_search", "computer", "computer_use", "computer_use_preview", "code_interpreter", "mcp",
                  "image_generation", "local_shell", "shell", "apply_patch", "tool_search")
UNSUPPORTED_ITEMS = ("reasoning", "item_reference", "file_search_call", "web_search_call", "computer_call",
                     "computer_call_output", "code_interpreter_call", "image_generation_call", "local_shell_call",
                     "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
                     "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response",
                     "mcp_call", "custom_tool_call", "custom_tool_call_output", "compaction")
NOT_SUPPORTED = "is not supported by this gateway"


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputText(_Part):
    type: Literal["input_text"]
    text: str


class InputImage(_Part):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class InputFile(_Part):
    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


class InputAudio(_Part):
    type: Literal["input_audio"]
    input_audio: dict[str, Any]


class OutputText(_Part):
    type: Literal["output_text"]
    text: str


class Refusal(_Part):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[Union[InputText, InputImage, InputFile, InputAudio, OutputText, Refusal],
                        Field(discriminator="type")]


class MessageItem(_Part):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]


class FunctionCallItem(_Part):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str


class FunctionCallOutputItem(_Part):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ContentPart]


_TAGS = {"message": "Message", "function_call": "FunctionCall", "function_call_output": "FunctionCallOutput"}


def _item_kind(value: Any) -> str:
    """The union tag of an input item (``type``, defaulting to ``message`` as OpenAI's easy input does).
    Tags are capitalised so error locations name the field path only (``input.0.content``)."""
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return _TAGS.get(kind, str(kind)) if isinstance(kind, str) else "?"


InputItem = Annotated[Union[Annotated[MessageItem, Tag("Message")], Annotated[FunctionCallItem, Tag("FunctionCall")],
                            Annotated[FunctionCallOutputItem, Tag("FunctionCallOutput")]],
                      Discriminator(_item_kind, custom_error_type="invalid_item_type",
                                    custom_error_message="Unknown input item type (expected message, function_call or "
                                                         "function_call_output)")]
ITEMS = TypeAdapter(list[InputItem])


class FunctionTool(_Part):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(_Part):
    type: Literal["custom"]
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    format: dict[str, Any] | None = None


Tool = Annotated[Union[FunctionTool, CustomTool], Field(discriminator="type")]


class NamedChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function", "custom"]
    name: str


class AllowedTools(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]] = Field(min_length=1)


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(BaseModel):
    """A ``POST /v1/responses`` body. Unknown parameters are refused (they could not be translated)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, max_length=256)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedChoice | AllowedTools | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = Field(None, min_length=1, max_length=128)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    reasoning: Reasoning | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    max_tool_calls: int | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    cache: bool | None = None  # the gateway's own: false skips its cache, as on chat completions

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and (len(v) > 16 or any(len(k) > 64 or len(x) > 512 for k, x in v.items())):
            raise ValueError("at most 16 pairs, keys up to 64 and values up to 512 characters")
        return v

    @property
    def stored(self) -> bool:
        """Whether the response is kept for ``previous_response_id`` and ``GET`` (OpenAI's default: yes)."""
        return self.store is not False


def refuse(param: str, message: str) -> errors.InvalidValue:
    return errors.InvalidValue(message, param=param, code="unsupported_parameter")


def precheck(data: dict[str, Any]) -> None:
    """Name what cannot be served before pydantic sees it (its union errors would be vaguer): built-in tools,
    items of built-in tools, hosted tool choices. Raises ``InvalidValue`` (400 ``unsupported_parameter``)."""
    for i, tool in enumerate(data.get("tools") or [] if isinstance(data.get("tools"), list) else []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and (kind in BUILT_IN_TOOLS or kind.startswith(BUILT_IN_TOOLS)):
            raise refuse(f"tools.{i}.type", f"The built-in tool '{kind}' {NOT_SUPPORTED}: only function tools "
                          "(type 'function') are, and they run in your code, not at the provider.")
    choice = data.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") not in ("function", "custom", "allowed_tools"):
        raise refuse("tool_choice", f"tool_choice of type '{choice.get('type')}' {NOT_SUPPORTED}.")
    items = data.get("input") if isinstance(data.get("input"), list) else []
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") in UNSUPPORTED_ITEMS:
            raise refuse(f"input.{i}.type", f"Input items of type '{item['type']}' {NOT_SUPPORTED}.")
    for name, allowed in (("background", (None, False)), ("conversation", (None,)), ("prompt", (None,)),
                          ("truncation", (None, "disabled")), ("max_tool_calls", (None,)), ("top_logprobs", (None, 0))):
        if data.get(name) not in allowed:
            raise refuse(name, f"'{name}' {NOT_SUPPORTED} (value {data.get(name)!r}).")
    if "message.output_text.logprobs" in (data.get("include") or []):
        raise refuse("include", f"Log probabilities {NOT_SUPPORTED}.")


def parse_responses_request(data: Any) -> ResponsesRequest:
    """Validate a ``/v1/responses`` body. Raises ``InvalidRequest`` subclasses (400) naming the field."""
    if not isinstance(data, dict):
        raise errors.InvalidJSON("The request body must be a JSON object.")
    if "model" not in data:
        raise errors.MissingField("Missing required parameter: 'model'.", param="model")
    precheck(data)
    try:
        req = ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        raise specific_error(exc) from None
    if req.input is None and req.previous_response_id is None:
        raise errors.MissingField("Missing required parameter: 'input'.", param="input")
    fmt = req.text.format if req.text else None
    if fmt is not None and fmt.type == "json_schema":
        if fmt.schema_ is None or not fmt.name:
            raise errors.MissingField("A json_schema text format needs 'name' and 'schema'.", param="text.format")
        try:
            check_json_schema_format({"name": fmt.name, "schema": fmt.schema_})
        except ValueError as exc:
            raise errors.InvalidValue(f"Invalid value for 'text.format.schema': {exc}", param="text.format.schema",
                                      code="invalid_json_schema") from None
    return req


def input_items(req: ResponsesRequest) -> list[Any]:
    """``req.input`` as item models (a string is one user message)."""
    if req.input is None:
        return []
    if isinstance(req.input, str):
        return [MessageItem(role="user", content=req.input)]
    return list(req.input)


def load_items(raw: list[dict[str, Any]]) -> list[Any]:
    """Stored items (``dump_items`` output) back as item models."""
    return ITEMS.validate_python(raw)


def dump_items(items: list[Any]) -> list[dict[str, Any]]:
    """Item models as plain dicts for storing."""
    return [item if isinstance(item, dict) else item.model_dump(exclude_none=True, by_alias=True) for item in items]
