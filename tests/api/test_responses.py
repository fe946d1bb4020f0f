"""``/v1/responses`` through the Flask client (sandbox provider): shapes, events, storage and ownership, and
every bad input with its exact status and code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import assert_error

URL = "/v1/responses"
TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer", "minimum": 3}},
          "required": ["answer", "score"], "additionalProperties": False}


def events(resp) -> list[dict[str, Any]]:
    out = []
    for block in resp.get_data(as_text=True).split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            data = json.loads(lines["data"])
            assert lines["event"] == data["type"]
            out.append(data)
    return out


def test_plain_text_answer_has_the_response_shape(client, auth):
    resp = client.post(URL, json={"model": "sandbox", "input": "hello there", "instructions": "Be brief.",
                                  "metadata": {"app": "t"}}, headers=auth)
    assert resp.status_code == 200
    data = resp.get_json()
    assert data["object"] == "response" and data["id"].startswith("resp_") and data["status"] == "completed"
    assert data["instructions"] == "Be brief." and data["metadata"] == {"app": "t"} and data["store"] is True
    [message] = data["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert "hello there" in message["content"][0]["text"]
    usage = data["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert resp.headers["x-aiproxy-id"] == data["proxy_id"] == resp.headers["x-request-id"]
    assert resp.headers["x-aiproxy-provider"] == "sandbox"


def test_stream_is_the_typed_event_sequence(client, auth):
    resp = client.post(URL, json={"model": "sandbox", "input": "stream please", "stream": True}, headers=auth)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    got = events(resp)
    kinds = [e["type"] for e in got]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    text = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    done = got[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == text and done["usage"]["output_tokens"] > 0
    assert len({e["response"]["id"] for e in got if "response" in e}) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_tools_give_a_function_call_item_and_the_output_continues_it(client, auth, stream):
    body = {"model": "sandbox", "input": "Paris", "tools": [TOOL], "stream": stream}
    resp = client.post(URL, json=body, headers=auth)
    if stream:
        got = events(resp)
        assert "response.function_call_arguments.delta" in [e["type"] for e in got]
        done = [e for e in got if e["type"] == "response.function_call_arguments.done"][0]
        assert json.loads(done["arguments"]) == {"city": "Paris"} and done["name"] == "get_weather"
        data = got[-1]["response"]
    else:
        data = resp.get_json()
    [call] = data["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["call_id"]
    follow = client.post(URL, json={"model": "sandbox", "previous_response_id": data["id"], "tools": [TOOL],
                                    "input": [{"type": "function_call_output", "call_id": call["call_id"],
                                               "output": "sunny, 21 C"}]}, headers=auth)
    assert follow.status_code == 200, follow.get_data(as_text=True)
    assert "sunny, 21 C" in follow.get_json()["output"][0]["content"][0]["text"]


def test_text_format_json_schema_gives_valid_json(client, auth):
    import jsonschema

    resp = client.post(URL, json={"model": "sandbox", "input": "rate it", "text": {"format": {
        "type": "json_schema", "name": "rating", "schema": SCHEMA, "strict": True}}}, headers=auth)
    data = resp.get_json()
    jsonschema.validate(json.loads(data["output"][0]["content"][0]["text"]), SCHEMA)
    assert data["text"]["format"]["name"] == "rating"


def test_stored_responses_are_owner_only(client, admin, auth):
    first = client.post(URL, json={"model": "sandbox", "input": "remember me"}, headers=auth).get_json()
    got = client.get(f"{URL}/{first['id']}", headers=auth)
    assert got.status_code == 200 and got.get_json()["output"] == first["output"]
    other = {"Authorization": "Bearer " + admin.create_key(user_id="someone-else")["key"]}
    assert_error(client.get(f"{URL}/{first['id']}", headers=other), 404, "not_found", "not_found_error")
    assert_error(client.delete(f"{URL}/{first['id']}", headers=other), 404, "not_found")
    err = assert_error(client.post(URL, json={"model": "sandbox", "input": "x", "previous_response_id": first["id"]},
                                   headers=other), 404, "not_found")
    assert err["param"] == "previous_response_id"
    deleted = client.delete(f"{URL}/{first['id']}", headers=auth)
    assert deleted.get_json() == {"id": first["id"], "object": "response", "deleted": True}
    assert_error(client.get(f"{URL}/{first['id']}", headers=auth), 404, "not_found")


def test_store_false_keeps_nothing(client, auth):
    data = client.post(URL, json={"model": "sandbox", "input": "forget me", "store": False}, headers=auth).get_json()
    assert data["store"] is False
    assert_error(client.get(f"{URL}/{data['id']}", headers=auth), 404, "not_found")


def test_previous_response_continues_the_conversation(app, client, auth):
    first = client.post(URL, json={"model": "sandbox", "input": "my name is Ada"}, headers=auth).get_json()
    second = client.post(URL, json={"model": "sandbox", "input": "what is my name?",
                                    "previous_response_id": first["id"]}, headers=auth).get_json()
    assert second["previous_response_id"] == first["id"]
    stored = app.extensions["aiproxy.responses"]
    key_id = auth["Authorization"].split("-")[2]  # sk-aip-<id>-<secret>
    items = stored.get(key_id, second["id"])["items"]
    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"]
    assert second["usage"]["input_tokens"] > first["usage"]["input_tokens"]


def test_each_request_has_one_log_record_with_the_endpoint_and_request_id(client, auth):
    resp = client.post(URL, json={"model": "sandbox", "input": "log me"}, headers={**auth, "X-Request-Id": "abc-123"})
    assert resp.headers["x-request-id"] == "abc-123"
    resp.close()  # the record is written when the response closes
    log = client.get("/api/logs/" + resp.headers["x-aiproxy-id"], headers=auth).get_json()
    assert log["endpoint"] == "responses" and log["request_id"] == "abc-123" and log["status"] == 200
    bad = client.post(URL, json={"model": "sandbox"}, headers=auth)
    bad.close()
    log = client.get("/api/logs/" + bad.headers["x-aiproxy-id"], headers=auth).get_json()
    assert log["endpoint"] == "responses" and log["status"] == 400


@pytest.mark.parametrize("body,status,code,param", [
    ({"input": "x"}, 400, "missing_field", "model"),
    ({"model": "sandbox"}, 400, "missing_field", "input"),
    ({"model": "sandbox", "input": "x", "frobnicate": 1}, 400, "unknown_parameter", "frobnicate"),
    ({"model": "sandbox", "input": [{"type": "hologram", "data": "x"}]}, 400, "invalid_value", "input.0"),
    ({"model": "sandbox", "input": [{"type": "reasoning", "summary": []}]}, 400, "unsupported_parameter",
     "input.0.type"),
    ({"model": "sandbox", "input": [{"role": "user", "content": [{"type": "input_video", "url": "x"}]}]}, 400,
     "invalid_value", "input.0.content.0"),
    ({"model": "sandbox", "input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]}, 400,
     "tool_call_not_found", "input.0.call_id"),
    ({"model": "sandbox", "input": "x", "tools": [{"type": "web_search"}]}, 400, "unsupported_parameter",
     "tools.0.type"),
    ({"model": "sandbox", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}, 400,
     "unsupported_parameter", "tools.0.type"),
    ({"model": "sandbox", "input": "x", "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, 400,
     "unsupported_parameter", "tools.0.type"),
    ({"model": "sandbox", "input": "x", "tool_choice": {"type": "web_search_preview"}}, 400,
     "unsupported_parameter", "tool_choice"),
    ({"model": "sandbox", "input": "x", "tools": [TOOL], "tool_choice": {"type": "function", "name": "nope"}}, 400,
     "invalid_value", "tool_choice"),
    ({"model": "sandbox", "input": "x", "background": True}, 400, "unsupported_parameter", "background"),
    ({"model": "sandbox", "input": "x", "truncation": "auto"}, 400, "unsupported_parameter", "truncation"),
    ({"model": "sandbox", "input": "x", "text": {"format": {"type": "json_schema", "name": "x",
                                                           "schema": {"type": "objekt"}}}}, 400,
     "invalid_json_schema", "text.format.schema"),
    ({"model": "sandbox", "input": "x", "text": {"format": {"type": "json_schema", "schema": SCHEMA}}}, 400,
     "missing_field", "text.format"),
    ({"model": "sandbox", "input": "x", "temperature": 3}, 400, "invalid_value", "temperature"),
    ({"model": "sandbox", "input": "x", "previous_response_id": "resp_doesnotexist"}, 404, "not_found",
     "previous_response_id"),
    ({"model": "no-such-model", "input": "x"}, 404, "model_not_found", "model"),
], ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict) else str(v))
def test_bad_input(client, auth, body, status, code, param):
    err = assert_error(client.post(URL, json=body, headers=auth), status, code)
    assert err["param"] == param


def test_no_key_is_401_in_the_openai_envelope(client):
    assert_error(client.post(URL, json={"model": "sandbox", "input": "x"}), 401, "missing_api_key")


def test_a_parameter_the_provider_cannot_honour_is_named_in_responses_terms(make_settings, admin):
    from src.app import create_app

    app = create_app(make_settings(ANTHROPIC_API_KEY="sk-a", ANTHROPIC_BASE_URL="http://127.0.0.1:9"))
    c = app.test_client()
    from tests.api.conftest import MASTER

    key = c.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    resp = c.post(URL, json={"model": "claude-3-5-haiku-20241022", "input": "x", "reasoning": {"effort": "low"}},
                  headers={"Authorization": f"Bearer {key}"})
    err = assert_error(resp, 400, "unsupported_parameter")
    assert err["param"] == "reasoning.effort"
