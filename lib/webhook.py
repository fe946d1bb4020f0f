"""``/api/v1/webhook``: one prompt in, one processed text out (summary, keywords, sentiment, ...).

For clients that cannot speak the chat API comfortably (spreadsheets, form tools, no-code automations):
the prompt is wrapped in an instruction for its ``type`` and sent through the normal chat pipeline, so
keys, limits, budgets, cache and logs all apply.
"""

from __future__ import annotations

from typing import Any

from lib import errors
from lib.protocols.chat import ChatCompletionRequest, parse_chat_request

INSTRUCTIONS = {
    "summary": "Summarise the following text in a few clear sentences{lang}.",
    "keywords": "List the 5 to 10 most important keywords of the following text, comma-separated{lang}.",
    "sentiment": "Classify the sentiment of the following text as positive, negative, neutral or mixed, "
                 "then give a one-sentence reason{lang}.",
    "entities": "List the named entities (people, organisations, places, dates, amounts) in the following "
                "text, one per line as 'type: name'{lang}.",
    "translation": "Translate the following text{lang_to}. Reply with the translation only.",
    "custom": None,
}


def build_request(data: Any, *, model: str, max_prompt_length: int) -> tuple[ChatCompletionRequest, str]:
    """The chat request for a webhook body and its type. Raises ``InvalidRequest`` subclasses (400)."""
    if not isinstance(data, dict):
        raise errors.InvalidJSON("The request body must be a JSON object.")
    prompt = data.get("prompt")
    if prompt is None:
        raise errors.MissingField("Missing required parameter: 'prompt'.", param="prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise errors.InvalidValue("'prompt' must be a non-empty string.", param="prompt")
    if len(prompt) > max_prompt_length:
        raise errors.ContextLengthExceeded(
            f"'prompt' is {len(prompt)} characters; the limit is {max_prompt_length}.", param="prompt")
    kind = data.get("type") or "summary"
    if kind not in INSTRUCTIONS:
        raise errors.InvalidValue(f"'type' must be one of {', '.join(INSTRUCTIONS)}.", param="type")
    language = data.get("language")
    if language is not None and (not isinstance(language, str) or len(language) > 64):
        raise errors.InvalidValue("'language' must be a short string such as 'French'.", param="language")
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise errors.InvalidValue("'source' must be a string.", param="source")
    messages: list[dict[str, Any]] = []
    template = INSTRUCTIONS[kind]
    if template is not None:
        lang = f" in {language}" if language else ""
        lang_to = f" into {language}" if language else " into English"
        messages.append({"role": "system", "content": template.format(lang=lang, lang_to=lang_to)})
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"model": data.get("model") or model, "messages": messages}
    return parse_chat_request(body), kind


def answer_text(completion: dict[str, Any]) -> str:
    """The text of the first choice of a chat completion."""
    choices = completion.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""
