"""What Azure OpenAI and Amazon Bedrock add beyond the shared conformance cases, against their fakes' real wire
formats: Azure's deployment URLs, api-key or Entra ID auth, content filtering, embeddings; Bedrock's SigV4
calls, model ids in paths, image bytes, its exceptions, the credential chain and per-deadline clients."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from lib import errors
from lib.providers import REGISTRY
from lib.providers.base import ProviderConfig
from tests.fakes import FakeUpstream

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture(scope="module")
def fake():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def http():
    with httpx.Client() as client:
        yield client


def azure(fake, http, **config):
    base = {"name": "azure-east", "type": "azure", "api_keys": ("az-key",), "base_url": fake.url,
            "extra": {"api_version": "2024-10-21"}}
    return REGISTRY["azure"](ProviderConfig(**{**base, **config}), http)


def bedrock(fake, **extra):
    return REGISTRY["bedrock"](ProviderConfig(name="bedrock", type="bedrock", extra={
        "region": "us-east-1", "endpoint_url": fake.url, **extra}, secrets={"aws_access_key_id": "AKIDFAKE",
                                                                            "aws_secret_access_key": "secret"}), None)


def say(text):
    return {"messages": [{"role": "user", "content": text}]}


# -- Azure ----------------------------------------------------------------------------------------------

def test_azure_calls_the_deployment_url_with_api_version_and_api_key(fake, http) -> None:
    fake.reset()
    result = azure(fake, http).complete(say("hi"), model="gpt-4o-prod", timeout=5)
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert sent.query["api-version"] == "2024-10-21" and sent.headers["api-key"] == "az-key"
    assert "authorization" not in sent.headers
    assert result["model"] == "gpt-4o-2024-11-20"  # the model behind the deployment: the one priced
    assert set(result["choices"][0]) == {"index", "message", "logprobs", "finish_reason"}
    assert "prompt_filter_results" not in result


def test_azure_entra_id_token_is_a_bearer_header(fake, http) -> None:
    fake.reset()
    provider = azure(fake, http, api_keys=(), secrets={"azure_ad_token": "eyJ-entra-token"})
    assert provider.configured()
    provider.complete(say("hi"), model="gpt-4o-prod", timeout=5)
    assert fake.requests[-1].headers["authorization"] == "Bearer eyJ-entra-token"
    assert "api-key" not in fake.requests[-1].headers
    assert not azure(fake, http, api_keys=()).configured()


def test_azure_content_filter_on_the_prompt_is_a_400_content_policy_violation(fake, http) -> None:
    for call in ("complete", "stream"):
        with pytest.raises(errors.UpstreamBadRequest) as caught:
            result = getattr(azure(fake, http), call)(say("bad words [fake:content_filter]"), model="gpt-4o-prod",
                                                       timeout=5)
            list(result)
        assert caught.value.status == 400 and caught.value.code == "content_policy_violation"
        assert "violence" in caught.value.message and not caught.value.retryable


def test_azure_filtered_answer_finishes_with_content_filter_in_openais_shape(fake, http) -> None:
    result = azure(fake, http).complete(say("story [fake:output_filter]"), model="gpt-4o-prod", timeout=5)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "content_filter_results" not in choice
    chunks = list(azure(fake, http).stream(say("story [fake:output_filter]"), model="gpt-4o-prod", timeout=5))
    assert chunks[0]["model"] == "gpt-4o-2024-11-20"  # the prompt-filter chunk (no model) is dropped
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "content_filter"
    assert not any("content_filter_results" in c for chunk in chunks for c in chunk["choices"])


def test_azure_embeddings_use_the_deployment_url(fake, http) -> None:
    fake.reset()
    result = azure(fake, http).embed({"input": ["a b", "c"]}, model="emb-prod", timeout=5)
    assert fake.requests[-1].path == "/openai/deployments/emb-prod/embeddings"
    assert len(result["data"]) == 2 and result["usage"]["prompt_tokens"] == 3


def test_azure_errors_keep_retry_after_and_name_a_missing_deployment(fake, http) -> None:
    with pytest.raises(errors.UpstreamRateLimited) as caught:
        azure(fake, http).complete(say("x [fake:error=429 retry=3]"), model="gpt-4o-prod", timeout=5)
    assert caught.value.retry_after == 3
    with pytest.raises(errors.UpstreamNotFound) as missing:
        azure(fake, http).complete(say("x [fake:error=404]"), model="nope", timeout=5)
    assert "deployment" in missing.value.message
    with pytest.raises(errors.UpstreamNotFound):  # no such api-version: Azure's 404
        azure(fake, http, extra={"api_version": "1999-01-01"}).complete(say("x"), model="gpt-4o-prod", timeout=5)


# -- Bedrock --------------------------------------------------------------------------------------------

def test_bedrock_signs_with_sigv4_and_puts_the_model_id_in_the_path(fake) -> None:
    fake.reset()
    model = "anthropic.claude-3-5-sonnet-20241022-v2:0"
    result = bedrock(fake).complete(say("hi there"), model=model, timeout=5)
    sent = fake.requests[-1]
    assert sent.path.endswith("/converse") and sent.query["path.model"] == model
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDFAKE/")
    assert "/us-east-1/bedrock/aws4_request" in sent.headers["authorization"]
    assert result["model"] == model and result["id"].startswith("chatcmpl-")
    assert result["usage"]["prompt_tokens"] == 2 and result["choices"][0]["message"]["content"] == "Echo: hi there"


def test_bedrock_images_are_sent_as_bytes_and_urls_refused(fake) -> None:
    fake.reset()
    content = [{"type": "text", "text": "what is it"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]
    bedrock(fake).complete({"messages": [{"role": "user", "content": content}]}, model="m", timeout=5)
    block = fake.requests[-1].json["messages"][0]["content"][1]["image"]
    assert block["format"] == "png" and base64.b64decode(block["source"]["bytes"]).startswith(b"\x89PNG")
    url = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(errors.UpstreamBadRequest) as caught:
        bedrock(fake).complete({"messages": [{"role": "user", "content": url}]}, model="m", timeout=5)
    assert caught.value.param == "messages.0.content.0" and caught.value.code == "unsupported_parameter"


@pytest.mark.parametrize("name,kind,status", [
    ("ThrottlingException", errors.UpstreamRateLimited, 429),
    ("ModelNotReadyException", errors.UpstreamUnavailable, 503),
    ("ServiceUnavailableException", errors.UpstreamUnavailable, 503),
    ("ValidationException", errors.UpstreamBadRequest, 400),
    ("AccessDeniedException", errors.UpstreamAuthError, 502),
    ("UnrecognizedClientException", errors.UpstreamAuthError, 502),
    ("ResourceNotFoundException", errors.UpstreamNotFound, 404),
    ("ModelTimeoutException", errors.UpstreamTimeout, 504),
    ("ModelErrorException", errors.UpstreamError, 502),
    ("InternalServerException", errors.UpstreamError, 502),
])
def test_bedrock_exceptions_map_to_openai_statuses(fake, name, kind, status) -> None:
    for call in ("complete", "stream"):
        with pytest.raises(kind) as caught:
            list(getattr(bedrock(fake), call)(say(f"x [fake:aws_error={name}]"), model="m", timeout=5))
        assert type(caught.value) is kind and caught.value.status == status
        assert name in (caught.value.upstream_body or "")  # the owner's log says which; stdout only type/code


def test_bedrock_stream_usage_comes_from_the_metadata_event(fake) -> None:
    chunks = list(bedrock(fake).stream(say("count these four words"), model="m", timeout=5))
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 4
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_bedrock_uses_the_standard_credential_chain(fake, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    fake.reset()
    provider = REGISTRY["bedrock"](ProviderConfig(name="br", type="bedrock", extra={
        "region": "eu-west-1", "endpoint_url": fake.url}), None)
    provider.complete(say("hi"), model="m", timeout=5)
    assert "Credential=AKIDFROMENV/" in fake.requests[-1].headers["authorization"]
    assert "/eu-west-1/bedrock/" in fake.requests[-1].headers["authorization"]
    assert not REGISTRY["bedrock"](ProviderConfig(name="x", type="bedrock"), None).configured()  # no region


def test_bedrock_clients_are_made_once_per_deadline_step_without_retries(fake) -> None:
    provider = bedrock(fake)
    short, again, full = provider._client(0.4), provider._client(0.45), provider._client(30)
    assert short is again and short is not full and provider._client(29.99) is not full
    assert short.meta.config.read_timeout == 0.25 and full.meta.config.read_timeout == 30
    assert provider._client(29.99).meta.config.read_timeout == 29 and len(provider._clients) == 3
    assert full.meta.config.retries["total_max_attempts"] == 1


def test_bedrock_refuses_what_converse_cannot_do_before_calling(fake) -> None:
    fake.reset()
    with pytest.raises(errors.UpstreamBadRequest) as caught:
        bedrock(fake).complete({**say("x"), "n": 2}, model="m", timeout=5)
    assert caught.value.param == "n" and not fake.requests


def test_bedrock_request_mapping_of_tools_and_history(fake) -> None:
    fake.reset()
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "q": {"type": "string"}}}}}]
    history = [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "t1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"q": "q"})}}]},
               {"role": "tool", "tool_call_id": "t1", "content": "result"}]
    result = bedrock(fake).complete({"messages": history, "tools": tools, "tool_choice": "required", "top_k": 5,
                                     "temperature": 0.2, "stop": "END", "max_tokens": 50}, model="m", timeout=5)
    sent = fake.requests[-1].json
    assert sent["system"] == [{"text": "sys"}]
    assert sent["messages"][1]["content"][0]["toolUse"] == {"toolUseId": "t1", "name": "f", "input": {"q": "q"}}
    assert sent["messages"][2]["content"][0]["toolResult"]["content"] == [{"text": "result"}]
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]}
    assert sent["additionalModelRequestFields"] == {"top_k": 5}
    assert result["choices"][0]["message"]["content"] == "Echo: result"
