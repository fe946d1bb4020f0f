"""Usage by the model name the client asked for (``by_requested_model``) next to the one that answered."""

from __future__ import annotations

import random

from lib.records.usage import NO_NAME
from tests.unit.test_usage import make_store, rec


def test_requested_and_answering_model_are_two_views_of_the_same_counts(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    rows = [
        rec(requested_model="gpt-4o-mini", model="sandbox", provider="sandbox", prompt_tokens=1),  # sandbox stood in
        rec(requested_model="gpt-4", model="gemini-1.5-pro", provider="gemini", prompt_tokens=2),  # an alias
        rec(requested_model="gpt-4o-mini", model="gpt-4o-mini", provider="openai", prompt_tokens=4),
        rec(requested_model="my|alias", model="claude|v2", provider="anthropic", prompt_tokens=8),  # '|' escaped
        rec(requested_model=None, model=None, provider=None, status=401, prompt_tokens=0),  # refused before routing
    ]
    assert store.record_many(rows) == 5
    report = store.usage()
    by_req, by_model = report["by_requested_model"], report["by_model"]
    assert {name: g["prompt_tokens"] for name, g in by_req.items()} == {
        "gpt-4o-mini": 5, "gpt-4": 2, "my|alias": 8, NO_NAME: 0}
    assert {name: g["prompt_tokens"] for name, g in by_model.items()} == {
        "sandbox": 1, "gemini-1.5-pro": 2, "gpt-4o-mini": 4, "claude|v2": 8, NO_NAME: 0}
    assert by_req["gpt-4o-mini"]["requests"] == 2 and by_req[NO_NAME]["errors"] == 1
    # The resolved-model filter still filters by the model that answered, and each view keeps its totals.
    filtered = store.usage(model="sandbox")
    assert filtered["totals"]["prompt_tokens"] == 1 and list(filtered["by_requested_model"]) == ["gpt-4o-mini"]


def test_every_grouping_sums_to_the_totals_and_the_logs(redis_client, key_prefix):
    store = make_store(redis_client, key_prefix)
    rng = random.Random(16)
    names = [("gpt-4o-mini", "gpt-4o-mini", "openai"), ("gpt-4o-mini", "sandbox", "sandbox"),
             ("gpt-4", "gemini-1.5-pro", "gemini"), ("claude-sonnet", "claude-3-5-sonnet", "anthropic")]
    rows = []
    for _ in range(60):
        asked, answered, provider = rng.choice(names)
        rows.append(rec(requested_model=asked, model=answered, provider=provider,
                        prompt_tokens=rng.randrange(0, 500), completion_tokens=rng.randrange(0, 200),
                        status=rng.choice([200, 200, 429])))
    assert store.record_many(rows) == 60
    report = store.usage()
    totals = report["totals"]
    assert totals["requests"] == 60 and totals["prompt_tokens"] == sum(r.prompt_tokens for r in rows)
    for view in ("by_model", "by_requested_model", "by_provider", "by_key", "by_day"):
        for counter in ("requests", "errors", "prompt_tokens", "completion_tokens"):
            assert sum(g[counter] for g in report[view].values()) == totals[counter], (view, counter)
    asked = {}
    for r in rows:
        asked[r.requested_model] = asked.get(r.requested_model, 0) + r.prompt_tokens
    assert {n: g["prompt_tokens"] for n, g in report["by_requested_model"].items()} == asked
