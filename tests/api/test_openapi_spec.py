"""``/openapi.json``: a valid OpenAPI 3.1 document, generated from the request models, covering every endpoint
in API.md; its examples are valid and accepted; the gateway's real answers match its response schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from lib.keys import KeyCreate, KeyPatch
from lib.protocols.chat import ChatCompletionRequest
from lib.protocols.embeddings import EmbeddingRequest
from lib.protocols.messages import CountTokensRequest, MessagesRequest
from lib.protocols.responses import ResponsesRequest
from tests.api.conftest import MASTER, chat_body

ROOT = Path(__file__).resolve().parents[2]
REF = "#/components/schemas/"


@pytest.fixture
def spec(client):
    resp = client.get("/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    return resp.get_json()


def check(spec, schema, instance):
    """Validate ``instance`` against ``schema`` (which may reference the spec's components)."""
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(instance)


def component(spec, name, instance):
    check(spec, {"$ref": REF + name}, instance)


def test_is_a_valid_openapi_3_1_document(spec):
    from openapi_spec_validator import validate

    assert spec["openapi"].startswith("3.1")
    validate(spec)


def _api_md_endpoints() -> set[tuple[str, str]]:
    """(METHOD, path) of every row of API.md's and CONTRACT's endpoint tables, ``<id>`` as ``{id}``."""
    text = (ROOT / "API.md").read_text()
    table = text[text.index("## Endpoints"):text.index("### `POST /v1/chat/completions`")]
    found = set()
    for row in re.findall(r"^\| (`[^|]+) \|", table, flags=re.M):
        methods: list[str] = []
        for chunk in re.findall(r"`([^`]+)`", row):
            parts = chunk.split()
            if parts[0].replace("/", "").isupper():  # "GET /x", "GET/PATCH/DELETE /x" or "DELETE /x"
                methods, path = parts[0].split("/"), parts[1] if len(parts) > 1 else None
            else:
                path = parts[0]
            if path and path.startswith("/"):
                for method in methods:
                    found.add((method, re.sub(r"<[a-z_]+>", "{}", path)))
    return found


def test_covers_every_endpoint_in_api_md(spec):
    documented = _api_md_endpoints()
    assert len(documented) > 25  # the table was read
    operations = {(m.upper(), re.sub(r"\{[a-z_]+\}", "{}", p)) for p, item in spec["paths"].items() for m in item}
    missing = documented - operations
    assert not missing, missing
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op["summary"] and op["operationId"] and op["tags"] and "security" in op, (method, path)
            assert any(s.startswith("2") for s in op["responses"]), (method, path)
            if method in ("post", "patch") and not path.startswith("/vendor"):
                assert op["requestBody"]["content"]["application/json"]["schema"], (method, path)


def test_auth_schemes(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["gatewayKey"] == {**schemes["gatewayKey"], "type": "http", "scheme": "bearer"}
    assert (schemes["apiKeyHeader"]["in"], schemes["apiKeyHeader"]["name"]) == ("header", "X-API-Key")
    assert (schemes["apiKeyQuery"]["in"], schemes["apiKeyQuery"]["name"]) == ("query", "api_key")
    ops = spec["paths"]
    assert {"masterKey": []} in ops["/admin/keys"]["post"]["security"]
    assert {"apiKeyHeader": []} in ops["/v1/messages"]["post"]["security"]
    assert ops["/api/v1/health"]["get"]["security"] == []


@pytest.mark.parametrize("model, name", [
    (ChatCompletionRequest, "ChatCompletionRequest"), (EmbeddingRequest, "EmbeddingRequest"),
    (KeyCreate, "KeyCreate"), (KeyPatch, "KeyPatch"),
    (ResponsesRequest, "Responses.ResponsesRequest"), (MessagesRequest, "Anthropic.MessagesRequest"),
    (CountTokensRequest, "Anthropic.CountTokensRequest"),
])
def test_request_schemas_are_the_validating_models_own(spec, model, name):
    prefix = name.rsplit(".", 1)[0] + "." if "." in name else ""
    own = model.model_json_schema(ref_template=REF + prefix + "{model}")
    defs = own.pop("$defs", {})
    schemas = spec["components"]["schemas"]
    assert schemas[name] == own
    for sub, schema in defs.items():
        assert schemas[prefix + sub] == schema, sub
    assert not [n for n in schemas if "__" in n]  # no pydantic collision names


def _examples(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            targets = [("request", op.get("requestBody", {}).get("content", {}))]
            targets += [(status, r.get("content", {})) for status, r in op["responses"].items()]
            for where, content in targets:
                for media, body in content.items():
                    values = [body["example"]] if "example" in body else []
                    values += [e["value"] for e in body.get("examples", {}).values()]
                    for value in values:
                        yield f"{method} {path} {where} {media}", body["schema"], media, value


def test_every_example_matches_its_schema(spec):
    count = 0
    for where, schema, media, value in _examples(spec):
        if media == "application/json":
            check(spec, schema, value)
            count += 1
        elif media == "text/event-stream":  # each data: line is one event of the schema
            for line in value.splitlines():
                if line.startswith("data: {"):
                    check(spec, schema, json.loads(line[6:]))
    for name, resp in spec["components"]["responses"].items():
        for body in resp.get("content", {}).values():
            check(spec, body["schema"], body["example"])
    assert count > 30


def test_request_examples_are_accepted_by_the_endpoints(spec, client, admin):
    key = admin.create_key(user_id="spec", models=None)["key"]
    auth = {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    master = {"Authorization": f"Bearer {MASTER}"}
    tried = 0
    for where, _schema, media, value in _examples(spec):
        method, path, part, _ = where.split(" ", 3)
        if part != "request" or "{" in path or path.startswith("/vendor"):
            continue
        headers = master if path.startswith("/admin") else auth
        resp = client.open(path, method=method.upper(), json=value, headers=headers)
        assert resp.status_code in (200, 201), (where, resp.get_data(as_text=True))
        tried += 1
    assert tried >= 12


def test_live_answers_match_the_response_schemas(spec, client, admin):
    """The gateway's own shapes (keys, logs, usage, health, webhook, Anthropic answers) as it really sends them."""
    master = {"Authorization": f"Bearer {MASTER}"}
    created = client.post("/admin/keys", json={"user_id": "spec", "budget_usd": "2", "budget_period": "daily"},
                          headers=master)
    component(spec, "ApiKeyCreated", created.get_json())
    kid, auth = created.get_json()["id"], {"Authorization": f"Bearer {created.get_json()['key']}"}
    component(spec, "ApiKeyList", client.get("/admin/keys", headers=master).get_json())
    component(spec, "ApiKeyWithSpend", client.get(f"/admin/keys/{kid}", headers=master).get_json())
    component(spec, "ApiKey", client.patch(f"/admin/keys/{kid}", json={"rpm": 100}, headers=master).get_json())
    with client.post("/v1/chat/completions", json=chat_body(), headers=auth) as chat:
        component(spec, "OpenAI.CreateChatCompletionResponse", chat.get_json())
        proxy_id = chat.get_json()["proxy_id"]
    with client.post("/api/v1/webhook", json={"prompt": "hello"}, headers=auth) as hook:
        component(spec, "WebhookResponse", hook.get_json())
    with client.post("/v1/messages", json={"model": "sandbox", "max_tokens": 9, "messages": [
            {"role": "user", "content": "hi"}]}, headers=auth) as msg:
        component(spec, "AnthropicMessageResponse", msg.get_json())
    component(spec, "AnthropicError", client.post("/v1/messages", json={"model": "sandbox"}, headers=auth).get_json())
    component(spec, "CountTokensResponse", client.post("/v1/messages/count_tokens", json={
        "model": "sandbox", "messages": [{"role": "user", "content": "hi"}]}, headers=auth).get_json())
    models = client.get("/v1/models", headers=auth).get_json()
    check(spec, spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
          models)
    component(spec, "RequestLog", client.get(f"/api/logs/{proxy_id}", headers=auth).get_json())
    component(spec, "RequestLogList", client.get("/api/logs", headers=auth).get_json())
    component(spec, "RequestLogList", client.get("/admin/logs?status=2xx", headers=master).get_json())
    component(spec, "UsageReport", client.get("/api/usage", headers=auth).get_json())
    component(spec, "UsageReport", client.get("/admin/usage", headers=master).get_json())
    component(spec, "OpenAI.ErrorResponse", client.get("/api/logs/nope", headers=auth).get_json())
    component(spec, "Health", client.get("/health").get_json())
    component(spec, "Health", client.get("/api/v1/health").get_json())
    component(spec, "ApiKeyDeleted", client.delete(f"/admin/keys/{kid}", headers=master).get_json())


def test_request_log_describes_every_record_field(spec):
    import dataclasses

    from lib.records.requestlog import RequestRecord

    props = spec["components"]["schemas"]["RequestLog"]["properties"]
    assert {f.name for f in dataclasses.fields(RequestRecord)} <= set(props)
    assert props["cost_usd"]["anyOf"][0]["type"] == "string"  # money as a decimal string


def test_vendors_only_where_served_and_openai_schemas_are_the_tests_own(make_settings):
    from src.app import create_app

    prod = create_app(make_settings(ENVIRONMENT="production")).test_client().get("/openapi.json").get_json()
    assert "/vendor-a/messages" not in prod["paths"] and "/v1/chat/completions" in prod["paths"]
    # The runtime copy of OpenAI's schemas is the file the conformance tests validate against.
    assert (ROOT / "src/apispec/openai-schemas.json").read_bytes() == (ROOT / "tests/specs/openai-schemas.json").read_bytes()
