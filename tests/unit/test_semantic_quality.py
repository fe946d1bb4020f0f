"""Semantic cache quality at the shipped defaults, measured on the labelled prompt pairs.

The bar (issue 15): at most 1% wrong answers (hits on pairs labelled ``different``) while still serving at
least half of the rewordings (pairs labelled ``same``), at the shipped threshold and default strictness,
on every held-out part (written without looking at the method's decisions) and on the tuned parts
together. Every pair goes through the real path: the first prompt is added to its own scope of a real
Redis, the second searched with ``SemanticIndex``; a refused candidate must say which check refused it.
Each distinct prompt is embedded once, in batches.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lib import store as redis_store
from lib.cache.embedder import Embedder
from lib.cache.semantic import DEFAULT_THRESHOLD, SemanticIndex

DATA = Path(__file__).resolve().parent.parent / "data"
# (file, role): see bench/semantic_eval.py, which prints the same numbers by kind
PARTS = {"semantic_pairs.jsonl": "tuned", "semantic_pairs_tuned.jsonl": "tuned",
         "semantic_pairs_heldout.jsonl": "held-out", "semantic_pairs_holdout2.jsonl": "held-out"}
# Written independently (its own "kind" field and names) and first evaluated after the method was frozen,
# where it missed the wrong-answer bar: 5 of 280 (1.8%), hit rate 53.9%. The bar stays asserted for it as
# an expected failure (it flips to a pass, and the xfail must go, once the method gets there without
# tuning on this file); its measured result is asserted as a floor against regressions.
INDEPENDENT = "semantic_pairs_holdout2.jsonl"
MEASURED_AT_FREEZE = {"wrong_rate": 5 / 280, "hit_rate": 0.539}
DIFFERENT_KINDS = {"negation", "numbers", "quoted", "direction_language", "direction_unit", "direction_format",
                   "instruction", "near_miss", "related", "role_swap", "format", "size", "polarity", "task",
                   "question"}
SAME_KINDS = {"paraphrase", "negation", "numbers", "quoted", "direction_language", "direction_unit",
              "direction_format", "instruction", "typo", "politeness", "reorder"}
MAX_WRONG_RATE = 0.01
MIN_HIT_RATE = 0.50


def load(name: str) -> list[dict[str, Any]]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def parts() -> dict[str, list[dict[str, Any]]]:
    return {name: load(name) for name in PARTS if (DATA / name).is_file()}


@pytest.fixture(scope="module")
def vectors(parts) -> dict[str, Any]:
    texts = sorted({p[k] for ps in parts.values() for p in ps for k in ("a", "b")})
    matrix = Embedder(threads=2).embed_batch(texts)
    return dict(zip(texts, matrix))


def test_labelled_sets_are_well_formed(parts) -> None:
    assert sum(len(ps) for ps in parts.values()) >= 1000
    owner: dict[tuple[str, str], str] = {}
    for name, ps in parts.items():
        seen = set()
        for p in ps:
            if name == INDEPENDENT:
                assert set(p) == {"a", "b", "label", "kind"} and p["kind"], p
            else:
                assert set(p) == {"a", "b", "label", "category"}, p
                kinds = SAME_KINDS if p["label"] == "same" else DIFFERENT_KINDS
                assert p["category"] in kinds, p
            assert p["label"] in ("same", "different"), p
            assert p["a"].strip() and p["b"].strip() and p["a"] != p["b"], p
            assert (p["a"], p["b"]) not in seen, p
            seen.add((p["a"], p["b"]))
            owner.setdefault((p["a"], p["b"]), name)
    # the independent part repeats 4 pairs of the tuned parts (2 from the development set, 2 written the same
    # way by both authors); nothing else is shared
    shared = [k for name, ps in parts.items() if name == INDEPENDENT for k in ((p["a"], p["b"]) for p in ps)
              if owner.get(k) != INDEPENDENT]
    assert len(shared) <= 4, shared
    tuned = [p for name, ps in parts.items() if PARTS[name] == "tuned" for p in ps]
    labels = Counter((p["category"], p["label"]) for p in tuned)
    for kind in ("role_swap", "format", "size", "polarity", "task", "question", "negation", "numbers"):
        assert labels[(kind, "different")] >= 15, kind
    for kind in ("typo", "politeness", "reorder"):
        assert labels[(kind, "same")] >= 25, kind
    assert labels[("paraphrase", "same")] >= 150
    pasted = [p for p in tuned if "\n" in p["a"] and len(p["a"]) > 150]
    assert len(pasted) >= 150  # pairs around a pasted email, table, log, code...


def run(pairs: list[dict[str, Any]], index: SemanticIndex, vectors: dict[str, Any], tag: str) -> dict[str, Any]:
    counts: Counter = Counter()
    wrong, unexplained = [], []
    for i, p in enumerate(pairs):
        scope = f"{tag}-{i}"
        index.add(scope, p["a"], f"answer-{i}", vector=vectors[p["a"]])
        found = index.search(scope, p["b"], vector=vectors[p["b"]])
        hit = found.match is not None
        counts[(p["label"], hit)] += 1
        if hit and p["label"] == "different":
            wrong.append(p)
        if not hit and found.candidates and not (found.veto_reason and found.veto_similarity is not None):
            unexplained.append(p)
    same = counts[("same", True)] + counts[("same", False)]
    different = counts[("different", True)] + counts[("different", False)]
    return {"hit_rate": counts[("same", True)] / same, "wrong_rate": counts[("different", True)] / different,
            "same": same, "different": different, "wrong": wrong, "unexplained": unexplained}


@pytest.fixture(scope="module")
def results(parts, vectors, redis_url) -> dict[str, dict[str, Any]]:
    client = redis_store.connect(redis_url)
    try:
        index = SemanticIndex(client, prefix=f"t{uuid.uuid4().hex[:10]}:", embedder=None,
                              threshold=DEFAULT_THRESHOLD, ttl_s=600)
        tuned = [p for name, ps in parts.items() if PARTS[name] == "tuned" for p in ps]
        out = {"tuned": run(tuned, index, vectors, "tuned")}
        for name, ps in parts.items():
            if PARTS[name] == "held-out":
                out[name] = run(ps, index, vectors, name)
        return out
    finally:
        client.close()


def summary(results: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, int, int]]:
    return {k: (round(r["hit_rate"], 3), round(r["wrong_rate"], 3), r["same"], r["different"])
            for k, r in results.items()}


def test_bar_at_shipped_defaults(results) -> None:
    for name, r in results.items():
        assert not r["unexplained"], (name, r["unexplained"][:3])
        if name == INDEPENDENT:
            continue
        assert r["wrong_rate"] <= MAX_WRONG_RATE, (name, summary(results), [(p["a"], p["b"]) for p in r["wrong"]])
        assert r["hit_rate"] >= MIN_HIT_RATE, (name, summary(results))


def test_independent_held_out_part_no_worse_than_at_the_freeze(results) -> None:
    r = results.get(INDEPENDENT)
    if r is None:
        pytest.skip(f"{INDEPENDENT} is not there")
    assert r["wrong_rate"] <= MEASURED_AT_FREEZE["wrong_rate"] + 1e-9, (summary(results), [(p["a"], p["b"]) for p in r["wrong"]])
    assert r["hit_rate"] >= MIN_HIT_RATE, summary(results)


@pytest.mark.xfail(reason="issue 15 not closed: 5 of 280 wrong (1.8%) on the independent held-out part at the "
                          "freeze (roles hidden by a short shared prefix taken for pasted text; multi-place "
                          "changes at cosine 0.82-0.86 served as rewordings)", strict=True)
def test_independent_held_out_part_meets_the_bar(results) -> None:
    r = results.get(INDEPENDENT)
    if r is None:
        pytest.skip(f"{INDEPENDENT} is not there")
    assert r["wrong_rate"] <= MAX_WRONG_RATE and r["hit_rate"] >= MIN_HIT_RATE, summary(results)
