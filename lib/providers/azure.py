"""Azure OpenAI (``type: azure``), on the OpenAI adapter's wire client.

Azure serves OpenAI's models behind *deployments*: the upstream model name of a route is the deployment name,
and the URL is ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`` (and
``/embeddings``), as the SDK's ``AzureOpenAI`` client builds it. Requests and answers are OpenAI's own
shapes, so everything else is the OpenAI adapter's (``openai_provider``: body passed through, key rotation
on 401/429, streams with usage, errors converted at one edge). What Azure adds:

- authentication: the ``api-key`` header (``api_key_env``, comma-separated keys rotated), or an Entra ID
  bearer token (``azure_ad_token_env``: the variable or secret holding an access token for
  ``https://cognitiveservices.azure.com``; a token expires, so whatever provides it must also restart the
  service or use keys);
- ``api_version`` (default ``DEFAULT_API_VERSION``, the current GA version);
- content filtering. A prompt the filter blocks is a 400 whose ``error.code`` is ``content_filter`` (with
  ``innererror.content_filter_result``): it becomes a 400 ``content_policy_violation`` naming the categories
  that fired, never retried on another provider. A blocked *answer* is a 200 with ``finish_reason:
  content_filter``, which is OpenAI's own value and passes through. Azure's annotations are not OpenAI's shape
  and are dropped from answers (the categories that fired are logged): ``prompt_filter_results``, each
  choice's ``content_filter_results``, and the stream's opening ``choices: []`` chunk that carries the
  prompt's (it has no id or model; the chunks after it name the model behind the deployment, which is the one
  priced).

Azure's other errors (``{"error": {"code": "429", "message": ...}}``, ``DeploymentNotFound``, 401 for a bad
key) map by status like OpenAI's; Retry-After is kept.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator
from urllib.parse import quote

import httpx

from lib import errors
from lib.providers.base import ProviderConfig, failed
from lib.providers.openai_provider import OpenAIProvider, error_object
from lib.providers.registry import Missing, ProviderType

log = logging.getLogger("aiproxy.providers.azure")

DEFAULT_API_VERSION = "2024-10-21"
AD_TOKEN = "azure_ad_token"  # the secret behind the azure_ad_token_env option


class AzureOpenAIProvider(OpenAIProvider):
    """Adapter for Azure OpenAI deployments (see module docstring)."""

    default_name = "azure"

    def __init__(self, config: ProviderConfig, http: Any = None) -> None:
        self._api_version = str(config.extra.get("api_version") or DEFAULT_API_VERSION)
        super().__init__(config, http)

    def _credentials(self, config: ProviderConfig) -> tuple[str, ...]:
        if not config.base_url:
            return ()
        keys = tuple(k for k in config.api_keys if k)
        token = config.secrets.get(AD_TOKEN)
        return keys or ((AD_TOKEN + ":" + token,) if token else ())

    def _auth(self, credential: str, config: ProviderConfig) -> dict[str, str]:
        if credential.startswith(AD_TOKEN + ":"):
            return {"Authorization": f"Bearer {credential[len(AD_TOKEN) + 1:]}"}
        return {"api-key": credential}

    def _url(self, path: str, model: str) -> str:
        deployment = quote(model, safe="")
        return f"{self._base_url}/openai/deployments/{deployment}/{path}?api-version={quote(self._api_version)}"

    def complete(self, body: dict[str, Any], *, model: str, timeout: float) -> dict[str, Any]:
        return _strip(super().complete(body, model=model, timeout=timeout), self.name)

    def _iterate(self, upstream: Any) -> Iterator[dict[str, Any]]:
        for chunk in super()._iterate(upstream):
            if not chunk.get("choices") and not chunk.get("usage"):
                continue  # the prompt-filter chunk: nothing for OpenAI clients
            yield _strip(chunk, self.name)

    def _status_error(self, response: httpx.Response, text: str) -> errors.UpstreamError:
        if response.status_code == 400:
            body = error_object(text)
            if _is_content_filter(body):
                return failed(errors.UpstreamBadRequest(_filter_message(body), provider=self.name, param="messages",
                                                        code="content_policy_violation"), text, 400)
        return super()._status_error(response, text)


def _strip(data: dict[str, Any], provider: str) -> dict[str, Any]:
    """``data`` without Azure's content-filter annotations (the categories that fired go to the log)."""
    data.pop("prompt_filter_results", None)
    for choice in data.get("choices") or []:
        verdicts = choice.pop("content_filter_results", None) or {}
        if choice.get("finish_reason") == "content_filter":
            fired = sorted(k for k, v in verdicts.items() if isinstance(v, dict) and v.get("filtered"))
            log.info("%s: the content filter cut an answer (%s)", provider, ", ".join(fired) or "no category given")
    return data


def _is_content_filter(body: object) -> bool:
    inner = body.get("error", body) if isinstance(body, dict) else None
    return isinstance(inner, dict) and inner.get("code") == "content_filter"


def _filter_message(body: object) -> str:
    """Which filter categories fired (``hate``, ``violence`` …), never the filtered text."""
    inner = body.get("error", body) if isinstance(body, dict) else {}
    result = ((inner.get("innererror") or {}).get("content_filter_result") or {}) if isinstance(inner, dict) else {}
    fired = sorted(name for name, verdict in result.items() if isinstance(verdict, dict) and verdict.get("filtered"))
    which = f" ({', '.join(fired)})" if fired else ""
    return f"The request was refused by the Azure OpenAI content filter{which}. Change the prompt and try again."


def _check(config: ProviderConfig) -> Missing | None:
    if not config.base_url:
        return Missing("no base_url (https://<resource>.openai.azure.com)")
    if config.api_keys or config.secrets.get(AD_TOKEN):
        return None
    variable = (config.key_env or (config.extra.get("azure_ad_token_env"),))[0]
    return Missing("no key" if variable else "no key (give the entry api_key_env or azure_ad_token_env)", variable)


TYPE = ProviderType(
    name="azure", adapter=AzureOpenAIProvider, env_default=False, check=_check,
    options=("base_url", "api_key_env", "azure_ad_token_env", "api_version", "headers"),
)
