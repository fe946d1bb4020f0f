"""Responses validated against OpenAI's own OpenAPI description (the schemas vendored in
``tests/specs/openai-schemas.json``, cut from ``openai-openapi.yaml`` by ``tests/specs/extract.py``):
chat completions (every provider, plain and streamed), embeddings, models and the error envelope."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import MASTER
from tests.fakes.upstreams import FakeUpstream

SPEC = Path(__file__).resolve().parents[1] / "specs" / "openai-schemas.json"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-20241022", "gemini": "gemini-1.5-flash",
          "sandbox": "sandbox"}


@pytest.fixture(scope="module")
def validate():
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = _nullable_to_json_schema(json.loads(SPEC.read_text(encoding="utf-8")))
    uri = "urn:openai-openapi"
    registry = Registry().with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT202012))

    def check(instance, schema_name: str) -> None:
        validator = Draft202012Validator({"$ref": f"{uri}#/components/schemas/{schema_name}"}, registry=registry)
        problems = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not problems, "\n".join(f"{list(p.path)}: {p.message}" for p in problems[:10])

    return check


def _nullable_to_json_schema(node):
    """The spec still uses OpenAPI 3.0's ``nullable: true`` in places; JSON Schema 2020-12 (what 3.1 means)
    spells that as a type that also admits ``null``. Rewrite it so the validator reads the spec as intended."""
    if isinstance(node, list):
        return [_nullable_to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_to_json_schema(v) for k, v in node.items()}
    if node.pop("nullable", False) is True:
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        else:
            return {"anyOf": [node, {"type": "null"}]}
    return node


@pytest.fixture(scope="module")
def fake():
    upstream = FakeUpstream().start()
    yield upstream
    upstream.stop()


@pytest.fixture
def client_and_auth(make_settings, fake):
    from src.app import create_app

    app = create_app(make_settings(OPENAI_API_KEYS="sk-o", OPENAI_BASE_URL=fake.url + "/v1", ANTHROPIC_API_KEY="sk-a",
                                   ANTHROPIC_BASE_URL=fake.url, GEMINI_API_KEY="g-k", GEMINI_BASE_URL=fake.url))
    c = app.test_client()
    key = c.post("/admin/keys", json={"user_id": "u", "rpm": 0}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    return c, {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}


@pytest.mark.parametrize("provider", list(MODELS))
def test_chat_completion_matches_spec(validate, client_and_auth, provider):
    c, h = client_and_auth
    resp = c.post("/v1/chat/completions", headers=h, json={
        "model": MODELS[provider], "messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "conformance check"}]})
    assert resp.status_code == 200
    validate(resp.get_json(), "CreateChatCompletionResponse")


@pytest.mark.parametrize("provider", list(MODELS))
def test_stream_chunks_match_spec(validate, client_and_auth, provider):
    c, h = client_and_auth
    resp = c.post("/v1/chat/completions", headers=h, json={
        "model": MODELS[provider], "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "stream conformance check"}]})
    events = [b[6:] for b in resp.get_data(as_text=True).split("\n\n") if b.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        validate(json.loads(event), "CreateChatCompletionStreamResponse")


def test_tool_call_matches_spec(validate, client_and_auth):
    c, h = client_and_auth
    tools = [{"type": "function", "function": {"name": "lookup_order", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}]
    resp = c.post("/v1/chat/completions", headers=h, json={
        "model": "gpt-4o-mini", "tools": tools, "messages": [{"role": "user", "content": "order 42"}]})
    data = resp.get_json()
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    validate(data, "CreateChatCompletionResponse")


def test_embeddings_models_and_errors_match_spec(validate, client_and_auth):
    c, h = client_and_auth
    validate(c.post("/v1/embeddings", headers=h, json={"model": "text-embedding-3-small", "input": ["a", "b"]}).get_json(),
             "CreateEmbeddingResponse")
    validate(c.post("/v1/embeddings", headers=h, json={"model": "sandbox-embedding", "input": "a"}).get_json(),
             "CreateEmbeddingResponse")
    validate(c.get("/v1/models", headers=h).get_json(), "ListModelsResponse")
    validate(c.get("/v1/models/sandbox", headers=h).get_json(), "Model")
    for resp in (c.post("/v1/chat/completions", headers=h, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
                 c.post("/v1/chat/completions", json={"model": "sandbox"}),
                 c.post("/v1/chat/completions", headers=h, data=b"{", content_type="application/json")):
        validate(resp.get_json(), "ErrorResponse")
