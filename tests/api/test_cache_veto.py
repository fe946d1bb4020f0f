"""A semantic near-miss that the verification refused says so in the request log (which check, how similar),
and a key may choose ``balanced`` strictness over the default ``strict``."""

from __future__ import annotations

from tests.api.conftest import MASTER
from tests.api.test_cache_semantic import ask, key_for, sem_client  # noqa: F401 - the fixture


def _log(client, key, proxy_id):
    return client.get(f"/api/logs/{proxy_id}", headers={"Authorization": f"Bearer {key}"}).get_json()


def test_a_refused_candidate_is_explained_in_the_log(sem_client):  # noqa: F811
    key = key_for(sem_client)
    assert ask(sem_client, key, "Is Lisbon west of Madrid?").headers["x-aiproxy-cache"] == "miss"
    swapped = ask(sem_client, key, "Is Madrid west of Lisbon?")
    assert swapped.headers["x-aiproxy-cache"] == "miss"
    record = _log(sem_client, key, swapped.get_json()["proxy_id"])
    assert record["cache"] == "miss" and record["cache_veto"] in ("roles swapped", "direction swapped")
    assert 0.5 < record["cache_similarity"] <= 1.0
    polite = ask(sem_client, key, "Is Lisbon west of Madrid? Thanks!")
    assert polite.headers["x-aiproxy-cache"] == "hit-semantic"
    assert _log(sem_client, key, polite.get_json()["proxy_id"])["cache_veto"] is None


def test_strictness_is_a_key_setting(sem_client):  # noqa: F811
    strict = key_for(sem_client, user_id="strict-user")
    created = sem_client.post("/admin/keys", json={"user_id": "balanced-user", "cache_strictness": "balanced"},
                              headers={"Authorization": f"Bearer {MASTER}"}).get_json()
    assert created["cache_strictness"] == "balanced"
    balanced = created["key"]
    for key in (strict, balanced):
        assert ask(sem_client, key, "What is the capital of Peru?").headers["x-aiproxy-cache"] == "miss"
    assert ask(sem_client, strict, "What is the capital city of Peru?").headers["x-aiproxy-cache"] == "miss"
    assert ask(sem_client, balanced, "What is the capital city of Peru?").headers["x-aiproxy-cache"] == "hit-semantic"
    bad = sem_client.post("/admin/keys", json={"user_id": "u3", "cache_strictness": "loose"},
                          headers={"Authorization": f"Bearer {MASTER}"})
    assert bad.status_code == 400
