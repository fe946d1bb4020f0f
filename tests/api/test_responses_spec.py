"""``/v1/responses`` output validated against OpenAI's own schemas (``Response``, ``ResponseStreamEvent``,
vendored in ``tests/specs/openai-schemas.json``), for every provider behind its fake upstream: text, tools,
structured output, plain and streamed."""

from __future__ import annotations

import json

import pytest

from tests.api.test_openapi_conformance import MODELS, SPEC, client_and_auth, fake, validate  # noqa: F401 - fixtures
from tests.api.test_responses import SCHEMA, TOOL, events

def _event_schemas() -> dict[str, str]:
    spec = json.loads(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]
    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in spec["ResponseStreamEvent"]["anyOf"]]
    return {spec[n]["properties"]["type"]["enum"][0]: n for n in names}


EVENT_SCHEMAS = _event_schemas()
CASES = {
    "text": {"input": "conformance check", "instructions": "Be brief."},
    "tools": {"input": "Paris", "tools": [TOOL]},
    "json_schema": {"input": "rate it", "text": {"format": {"type": "json_schema", "name": "rating", "schema": SCHEMA,
                                                            "strict": True}}},
    "max_output_tokens": {"input": "a long answer please", "max_output_tokens": 2},
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("provider", list(MODELS))
def test_response_and_events_match_the_spec(validate, client_and_auth, provider, case):  # noqa: F811
    c, h = client_and_auth
    body = {"model": MODELS[provider], **CASES[case]}
    resp = c.post("/v1/responses", headers=h, json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    data = resp.get_json()
    validate(data, "Response")
    kinds = {item["type"] for item in data["output"]}
    assert kinds == ({"function_call"} if case == "tools" else {"message"})
    if case == "max_output_tokens":
        assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_output_tokens"}
    if case == "json_schema":
        import jsonschema

        jsonschema.validate(json.loads(data["output"][0]["content"][0]["text"]), SCHEMA)
    streamed = events(c.post("/v1/responses", headers=h, json={**body, "stream": True}))
    for event in streamed:
        validate(event, EVENT_SCHEMAS[event["type"]])  # its own schema first: the union's error says little
        validate(event, "ResponseStreamEvent")
    assert streamed[-1]["type"] == ("response.incomplete" if case == "max_output_tokens" else "response.completed")
    assert {item["type"] for item in streamed[-1]["response"]["output"]} == kinds
