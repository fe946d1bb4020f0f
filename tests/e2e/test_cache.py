"""The cache through the real server and the official SDK: exact and semantic hits (the embedding server
is the one the gunicorn master starts), a stream replayed from the cache, per-user scope."""

from __future__ import annotations

import time

import openai
import pytest

from tests.e2e.conftest import issue_key

pytestmark = pytest.mark.e2e


def sdk(server, key):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)


def ask(client, text, **kw):
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], **kw)


def wait_semantic_ready(client, timeout=60.0):
    """The embedding server loads its model in the background; until then lookups bypass semantic."""
    deadline = time.monotonic() + timeout
    topics = ["Berlin", "Paris", "Madrid", "Lisbon", "Vienna", "Prague", "Dublin", "Oslo", "Rome", "Athens"] * 3
    for topic in topics:
        ask(client, f"What is the address of the {topic} office?")
        if ask(client, f"What's the address of the {topic} office?").headers["x-aiproxy-cache"] == "hit-semantic":
            return
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    raise AssertionError("the embedding server never became ready")


def test_exact_and_semantic_hits_through_sdk(server):
    client = sdk(server, issue_key(server, user_id="cache-e2e", rpm=0))
    wait_semantic_ready(client)
    first = ask(client, "What is the refund policy for annual software licences?")
    assert first.headers["x-aiproxy-cache"] == "miss"
    again = ask(client, "What is the refund policy for annual software licences?")
    assert again.headers["x-aiproxy-cache"] == "hit-exact"
    # a rewording the verification serves (a synonym it does not know, "yearly" for "annual", it refuses)
    para = ask(client, "Could you tell me the refund policy for annual software licences?")
    assert para.headers["x-aiproxy-cache"] == "hit-semantic"
    assert para.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert ask(client, "What is the refund policy for monthly software licences?").headers["x-aiproxy-cache"] == "miss"
    other_user = sdk(server, issue_key(server, user_id="someone-else", rpm=0))
    assert ask(other_user, "What is the refund policy for annual software licences?").headers["x-aiproxy-cache"] == "miss"


def test_stream_replayed_from_cache_parses_with_sdk(server):
    client = sdk(server, issue_key(server, user_id="cache-stream", rpm=0))
    original = ask(client, "List three benefits of code review.").parse().choices[0].message.content
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "List three benefits of code review."}],
        stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-aiproxy-cache"] == "hit-exact"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == original
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
