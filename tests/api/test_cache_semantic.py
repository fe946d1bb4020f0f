"""Semantic cache through the app (real MiniLM, real Redis): paraphrases hit, near-misses don't."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import MASTER, chat_body

URL = "/v1/chat/completions"


@pytest.fixture
def sem_client(make_settings):
    from src.app import create_app

    app = create_app(make_settings(SEMANTIC_CACHE="true"))
    return app.test_client()


def key_for(client, **body) -> str:
    body.setdefault("user_id", "sem-user")
    return client.post("/admin/keys", json=body, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]


def ask(client, key, text, **kw):
    resp = client.post(URL, json=chat_body(messages=[{"role": "user", "content": text}], **kw),
                       headers={"Authorization": f"Bearer {key}", **kw.pop("headers", {})})
    resp.close()
    return resp


BASE = "How do I reset my password for the HR portal?"


def test_paraphrase_hits_and_near_misses_do_not(sem_client):
    key = key_for(sem_client)
    first = ask(sem_client, key, BASE)
    assert first.headers["x-aiproxy-cache"] == "miss"
    para = ask(sem_client, key, "How can I reset my HR portal password?")
    assert para.headers["x-aiproxy-cache"] == "hit-semantic", para.headers
    assert 0.89 <= float(para.headers["x-aiproxy-cache-similarity"]) <= 1.0
    assert para.get_json()["choices"] == first.get_json()["choices"]
    assert para.get_json()["proxy_id"] != first.get_json()["proxy_id"]
    log = sem_client.get(f"/api/logs/{para.get_json()['proxy_id']}", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert log["cache"] == "hit-semantic" and log["cache_similarity"] >= 0.89
    assert log["cache_entry"] == first.get_json()["proxy_id"] and log["saved_tokens"] > 0
    for near_miss in (
        "How do I not reset my password for the HR portal?",  # negation
        "How do I reset my password for the finance portal?",  # different object
    ):
        assert ask(sem_client, key, near_miss).headers["x-aiproxy-cache"] == "miss", near_miss


def test_number_direction_and_instruction_changes_miss(sem_client):
    key = key_for(sem_client)
    ask(sem_client, key, "Convert 25 degrees Celsius to Fahrenheit.")
    assert ask(sem_client, key, "Convert 30 degrees Celsius to Fahrenheit.").headers["x-aiproxy-cache"] == "miss"
    assert ask(sem_client, key, "Convert 25 degrees Fahrenheit to Celsius.").headers["x-aiproxy-cache"] == "miss"
    ask(sem_client, key, "Translate 'good morning, team' from English to French.")
    assert ask(sem_client, key, "Translate 'good morning, team' from French to English.").headers["x-aiproxy-cache"] == "miss"
    text = "Our Q3 revenue grew 12% while support tickets fell by a third."
    ask(sem_client, key, f"Summarize this: {text}")
    assert ask(sem_client, key, f"Translate this into German: {text}").headers["x-aiproxy-cache"] == "miss"


def test_semantic_is_scoped_per_user_and_context(sem_client):
    alice, bob = key_for(sem_client, user_id="alice"), key_for(sem_client, user_id="bob")
    ask(sem_client, alice, BASE)
    assert ask(sem_client, bob, "How can I reset my HR portal password?").headers["x-aiproxy-cache"] == "miss"
    # a different system prompt is a different context
    other = sem_client.post(URL, json=chat_body(messages=[{"role": "system", "content": "Answer in Spanish."},
                                                          {"role": "user", "content": "How can I reset my HR portal password?"}]),
                            headers={"Authorization": f"Bearer {alice}"})
    assert other.headers["x-aiproxy-cache"] == "miss"


def test_semantic_hit_replayed_as_stream(sem_client):
    key = key_for(sem_client)
    plain = ask(sem_client, key, BASE).get_json()
    resp = sem_client.post(URL, json=chat_body(messages=[{"role": "user", "content": "How can I reset my HR portal password?"}],
                                               stream=True), headers={"Authorization": f"Bearer {key}"})
    assert resp.headers["x-aiproxy-cache"] == "hit-semantic"
    events = [b[6:] for b in resp.get_data(as_text=True).split("\n\n") if b.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == plain["choices"][0]["message"]["content"]


def test_tools_use_exact_cache_only(sem_client):
    key = key_for(sem_client)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    ask(sem_client, key, BASE, tools=tools)
    assert ask(sem_client, key, "How can I reset my HR portal password?", tools=tools).headers["x-aiproxy-cache"] == "miss"
    assert ask(sem_client, key, BASE, tools=tools).headers["x-aiproxy-cache"] == "hit-exact"
