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


def test_a_huge_body_is_worked_on_off_the_loop(make_settings, monkeypatch) -> None:
    """Issue 14: a body of thousands of messages is decoded, validated, policed, counted and turned into the
    upstream body on a native thread (lib/offload.py: tests/unit/test_offload.py shows the loop keeps
    running meanwhile), and answered as any other request."""
    from lib import offload
    from src.app import create_app
    from tests.api.conftest import Admin

    client = create_app(make_settings(BANNED_WORDS="forbidden")).test_client()
    auth = {"Authorization": "Bearer " + Admin(client).create_key(tpm=10_000_000)["key"]}
    offloaded: list[str] = []
    original = offload.cpu

    def watching(fn, *args, heavy: bool, **kw):  # noqa: ANN001, ANN202
        if heavy:
            offloaded.append(getattr(fn, "__name__", repr(fn)))
        return original(fn, *args, heavy=heavy, **kw)

    monkeypatch.setattr(offload, "cpu", watching)
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i}"}
                for i in range(6000)]
    resp = client.post(URL, headers=auth, json={"model": "sandbox", "messages": messages, "max_tokens": 5})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["usage"]["prompt_tokens"] > 6000 * 3
    assert {"decode_json_body", "parse_chat_request", "_count_prompt", "upstream_body", "<lambda>"} <= set(offloaded)
    offloaded.clear()
    assert client.post(URL, headers=auth, json={"model": "sandbox", "messages": messages[:3]}).status_code == 200
    assert offloaded == []  # a small request stays inline
    refused = client.post(URL, headers=auth, json={"model": "sandbox", "max_tokens": 5,
                                                   "messages": [*messages, {"role": "user", "content": "forbidden"}]})
    assert_error(refused, 403, "policy_violation")  # raised on the thread, answered as ever
