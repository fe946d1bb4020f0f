"""Hostile JSON gets a 400 envelope, never a 500 with a stack trace (issue 10, item 7)."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error

URL = "/v1/chat/completions"
MESSAGES = '"messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize("body, code", [
    ('{"model": "sandbox", ' + MESSAGES + ', "x": ' + "[" * 10_000 + "]" * 10_000 + "}", "json_too_deep"),
    ('{"model": "sandbox", ' + MESSAGES + ', "x": ' + '{"a": ' * 65 + "1" + "}" * 65 + "}", "json_too_deep"),
    ('{"model": "sandbox", ' + MESSAGES + ', "logit_bias": {"50256": NaN}}', "invalid_json"),
    ('{"model": "sandbox", ' + MESSAGES + ', "logit_bias": {"50256": Infinity}}', "invalid_json"),
    ('{"model": "sandbox", ' + MESSAGES + ', "seed": 1' + "0" * 5000 + "}", "invalid_json"),
    ('{"model": "sandbox", ' + MESSAGES + ', "temperature": 1e999}', "invalid_json"),
])
@pytest.mark.parametrize("path", [URL, "/api/v1/webhook", "/v1/embeddings", "/admin/keys"])
def test_hostile_json_is_a_400(client, auth, body, code, path) -> None:
    headers = {**auth, "Content-Type": "application/json"}
    if path == "/admin/keys":
        from tests.api.conftest import MASTER

        headers["Authorization"] = f"Bearer {MASTER}"
    assert_error(client.post(path, data=body.encode(), headers=headers), 400, code, "invalid_request_error")


def test_deep_but_allowed_schemas_still_work(client, auth) -> None:
    schema: dict = {"type": "string"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"a": schema}}
    resp = client.post(URL, headers=auth, json={"model": "sandbox", "messages": [{"role": "user", "content": "hi"}],
                                                "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
