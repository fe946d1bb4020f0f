"""Semantic cache quality at the shipped defaults, measured on the labelled prompt pairs.

The bar (issue 15): at most 1% wrong answers (hits on pairs labelled ``different``) while still serving at
least half of the rewordings (pairs labelled ``same``), at the shipped threshold and default strictness, on
the held-out part: written independently, never looked at before the method was frozen. Every pair goes
through the real path: the first prompt is added to its own scope of a real Redis, the second searched with
``SemanticIndex``; a refused candidate must say which check refused it. Each distinct prompt is embedded once,
in batches. The development parts (the method was built on them) are all checked for their form; two small
ones are also run, as a regression floor. ``bench/semantic_eval.py`` prints every part by kind.
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
# (file, role): see bench/semantic_eval.py
PARTS = {"semantic_pairs.jsonl": "development", "semantic_pairs_tuned.jsonl": "development",
         "semantic_pairs_heldout.jsonl": "development", "semantic_pairs_holdout2.jsonl": "development",
         "semantic_pairs_holdout3.jsonl": "held-out"}
HELD_OUT = "semantic_pairs_holdout3.jsonl"
# its single evaluation after freeze (2), strict at 0.89: 55.7% of 221 rewordings hit, 1 of 285 different
# requests served a wrong answer (0.4%: "budget minus actual" / "actual minus budget", "actual" being taken
# for the light word "actually"); the method was not changed after it
# written with their own "kind" field by someone who never saw the method
INDEPENDENT = {"semantic_pairs_holdout2.jsonl", HELD_OUT}
# development parts run here (the others take too long for one test: bench/semantic_eval.py runs them), with
# the hit rate measured when the method was frozen (2) as a floor; the wrong-answer bar holds for them too
DEVELOPMENT_RUN = {"semantic_pairs.jsonl": 0.20, "semantic_pairs_heldout.jsonl": 0.35}
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
    texts = sorted({p[k] for name, ps in parts.items() if name in DEVELOPMENT_RUN or name == HELD_OUT
                    for p in ps for k in ("a", "b")})
    matrix = Embedder(threads=2).embed_batch(texts)
    return dict(zip(texts, matrix))


def test_labelled_sets_are_well_formed(parts) -> None:
    assert sum(len(ps) for name, ps in parts.items() if PARTS[name] == "development") >= 1000
    for name, ps in parts.items():
        seen = set()
        for p in ps:
            if name in INDEPENDENT:
                assert set(p) == {"a", "b", "label", "kind"} and p["kind"], p
            else:
                assert set(p) == {"a", "b", "label", "category"}, p
                kinds = SAME_KINDS if p["label"] == "same" else DIFFERENT_KINDS
                assert p["category"] in kinds, p
            assert p["label"] in ("same", "different"), p
            assert p["a"].strip() and p["b"].strip() and p["a"] != p["b"], p
            assert (p["a"], p["b"]) not in seen, p
            seen.add((p["a"], p["b"]))
    development = [p for name, ps in parts.items() if PARTS[name] == "development" and name not in INDEPENDENT
                   for p in ps]
    labels = Counter((p["category"], p["label"]) for p in development)
    for kind in ("role_swap", "format", "size", "polarity", "task", "question", "negation", "numbers"):
        assert labels[(kind, "different")] >= 15, kind
    for kind in ("typo", "politeness", "reorder"):
        assert labels[(kind, "same")] >= 25, kind
    assert labels[("paraphrase", "same")] >= 150
    pasted = [p for p in development if "\n" in p["a"] and len(p["a"]) > 150]
    assert len(pasted) >= 150  # pairs around a pasted email, table, log, code...
    if HELD_OUT in parts:
        assert len(parts[HELD_OUT]) >= 500


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
        return {name: run(ps, index, vectors, name) for name, ps in parts.items()
                if name in DEVELOPMENT_RUN or name == HELD_OUT}
    finally:
        client.close()


def summary(results: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float, int, int]]:
    return {k: (round(r["hit_rate"], 3), round(r["wrong_rate"], 3), r["same"], r["different"])
            for k, r in results.items()}


def test_development_parts_no_worse_than_at_the_freeze(results) -> None:
    for name, floor in DEVELOPMENT_RUN.items():
        r = results[name]
        assert not r["unexplained"], (name, r["unexplained"][:3])
        assert r["wrong_rate"] <= MAX_WRONG_RATE, (name, summary(results), [(p["a"], p["b"]) for p in r["wrong"]])
        assert r["hit_rate"] >= floor, (name, summary(results))


def test_held_out_part_meets_the_bar(results) -> None:
    r = results.get(HELD_OUT)
    if r is None:
        pytest.skip(f"{HELD_OUT} is not there")
    assert not r["unexplained"], r["unexplained"][:3]
    assert r["wrong_rate"] <= MAX_WRONG_RATE, (summary(results), [(p["a"], p["b"]) for p in r["wrong"]])
    assert r["hit_rate"] >= MIN_HIT_RATE, summary(results)
