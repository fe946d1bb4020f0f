"""Semantic cache quality at the shipped defaults, measured on the labelled prompt pairs.

The bar: at most 1% wrong answers (hits on pairs labelled ``different``) while still serving at least half
of the rewordings (pairs labelled ``same``), over the development and held-out sets together. Every pair
goes through the real path: the first prompt is added to its own scope of a real Redis, the second looked
up with ``SemanticIndex`` at ``DEFAULT_THRESHOLD``. Each distinct prompt is embedded once, in batches.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lib.cache.embedder import Embedder
from lib.cache.semantic import DEFAULT_THRESHOLD, SemanticIndex

DATA = Path(__file__).resolve().parent.parent / "data"
CATEGORIES = {"paraphrase", "negation", "numbers", "quoted", "direction_language", "direction_unit",
              "direction_format", "instruction", "near_miss", "related"}
MAX_FALSE_HIT_RATE = 0.01
MIN_HIT_RATE = 0.50


def load(name: str) -> list[dict[str, Any]]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def pairs() -> dict[str, list[dict[str, Any]]]:
    return {"development": load("semantic_pairs.jsonl"), "held-out": load("semantic_pairs_heldout.jsonl")}


@pytest.fixture(scope="module")
def vectors(pairs) -> dict[str, Any]:
    texts = sorted({p[k] for ps in pairs.values() for p in ps for k in ("a", "b")})
    matrix = Embedder().embed_batch(texts)
    return dict(zip(texts, matrix))


def test_labelled_sets_are_well_formed(pairs) -> None:
    dev, held = pairs["development"], pairs["held-out"]
    assert len(dev) >= 200 and len(held) >= 60
    seen = set()
    for p in dev + held:
        assert set(p) == {"a", "b", "label", "category"}, p
        assert p["label"] in ("same", "different") and p["category"] in CATEGORIES, p
        assert p["a"].strip() and p["b"].strip() and p["a"] != p["b"], p
        assert (p["a"], p["b"]) not in seen, p
        seen.add((p["a"], p["b"]))
    labels = Counter((p["category"], p["label"]) for p in dev)
    for category in ("negation", "numbers", "quoted", "direction_language", "direction_unit",
                     "direction_format", "instruction"):
        assert labels[(category, "same")] >= 3 and labels[(category, "different")] >= 8, category
    assert labels[("paraphrase", "same")] >= 50


def test_false_hits_and_hit_rate_at_shipped_defaults(pairs, vectors, redis_client, key_prefix) -> None:
    index = SemanticIndex(redis_client, prefix=key_prefix, embedder=None, threshold=DEFAULT_THRESHOLD,
                          ttl_s=600)
    outcome: dict[str, Counter] = {}
    wrong = []
    for name, ps in pairs.items():
        counts: Counter = Counter()
        for i, p in enumerate(ps):
            scope = f"{name}-{i}"
            index.add(scope, p["a"], f"answer-{i}", vector=vectors[p["a"]])
            hit = index.lookup(scope, p["b"], vector=vectors[p["b"]]) is not None
            counts[(p["label"], hit)] += 1
            if hit and p["label"] == "different":
                wrong.append(p)
        outcome[name] = counts
    total = sum(outcome.values(), Counter())
    same = total[("same", True)] + total[("same", False)]
    different = total[("different", True)] + total[("different", False)]
    hit_rate = total[("same", True)] / same
    false_hit_rate = total[("different", True)] / different
    summary = {name: {"hit": c[("same", True)], "same": c[("same", True)] + c[("same", False)],
                      "false_hits": c[("different", True)],
                      "different": c[("different", True)] + c[("different", False)]}
               for name, c in outcome.items()}
    assert false_hit_rate <= MAX_FALSE_HIT_RATE, (false_hit_rate, summary, wrong)
    assert hit_rate >= MIN_HIT_RATE, (hit_rate, summary)
