"""The OpenAI ``/v1/embeddings`` request."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from lib import errors
from lib.protocols import friendly_error


class EmbeddingRequest(BaseModel):
    """An OpenAI ``/v1/embeddings`` request body."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]  # token ids are integers, never booleans
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1, le=8192)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if v == [] or (isinstance(v, list) and any(item == [] for item in v)):
            raise ValueError("input must not be empty (nor hold an empty list of token ids)")
        if isinstance(v, list) and len(v) > 2048:
            raise ValueError("at most 2048 inputs per request")
        return v

    def texts(self) -> list[str]:
        """The inputs as strings (token-id inputs are shown as their ids, for counting only)."""
        if isinstance(self.input, str):
            return [self.input]
        return [x if isinstance(x, str) else " ".join(map(str, x if isinstance(x, list) else [x]))
                for x in self.input]


def parse_embedding_request(data: Any) -> EmbeddingRequest:
    """Validate an embeddings body. Raises ``errors.InvalidRequest`` subclasses (400)."""
    if not isinstance(data, dict):
        raise errors.InvalidJSON("The request body must be a JSON object.")
    for name in ("user", "encoding_format", "dimensions"):  # optional, but not nullable in OpenAI's spec
        if name in data and data[name] is None:
            raise errors.InvalidValue(f"Invalid value for '{name}': null is not allowed; leave it out instead.",
                                      param=name)
    for name in ("model", "input"):
        if name not in data:
            raise errors.MissingField(f"Missing required parameter: '{name}'.", param=name)
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise friendly_error(exc) from None
