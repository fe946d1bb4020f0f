"""Semantic cache quality: hit rate and false-hit rate by threshold, on the labelled prompt pairs.

    .venv/bin/python bench/semantic_eval.py [--backend auto|onnx|torch] [--markdown]

For each pair (a, b) the cached prompt is ``a`` and the new request is ``b``. A pair *hits* when the cosine
similarity of their all-MiniLM-L6-v2 embeddings is at least the threshold and the guards allow it.

- hit rate: hits among pairs labelled ``same`` (rewordings that should be served from cache);
- false-hit rate: hits among pairs labelled ``different`` (each one would serve a wrong answer).

Printed for the development set (``tests/data/semantic_pairs.jsonl``), the held-out set written after the
guards were frozen (``tests/data/semantic_pairs_heldout.jsonl``) and both together, with and without guards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lib.cache.embedder import Embedder  # noqa: E402
from lib.cache.guards import check_pair  # noqa: E402

DEV = ROOT / "tests" / "data" / "semantic_pairs.jsonl"
HELDOUT = ROOT / "tests" / "data" / "semantic_pairs_heldout.jsonl"
THRESHOLDS = (0.70, 0.75, 0.80, 0.83, 0.85, 0.87, 0.89, 0.91, 0.93, 0.95)


def load_pairs(path: Path) -> list[dict[str, Any]]:
    """The pairs of one JSONL file (fields a, b, label, category)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score(pairs: list[dict[str, Any]], embedder: Embedder) -> None:
    """Add ``sim`` (cosine) and ``guard`` (None or the refusal reason) to every pair, in place."""
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    vecs = embedder.embed_batch(texts)
    index = {t: i for i, t in enumerate(texts)}
    for p in pairs:
        p["sim"] = float(vecs[index[p["a"]]] @ vecs[index[p["b"]]])
        p["guard"] = check_pair(p["b"], p["a"])


def rates(pairs: list[dict[str, Any]], threshold: float, guards: bool = True) -> tuple[float, float, int, int]:
    """(hit rate on ``same``, false-hit rate on ``different``, number of same, number of different)."""
    same = [p for p in pairs if p["label"] == "same"]
    diff = [p for p in pairs if p["label"] == "different"]

    def hit(p: dict[str, Any]) -> bool:
        return p["sim"] >= threshold and (not guards or p["guard"] is None)

    return (sum(map(hit, same)) / max(1, len(same)), sum(map(hit, diff)) / max(1, len(diff)), len(same), len(diff))


def table(sets: dict[str, list[dict[str, Any]]]) -> str:
    """The markdown table: one row per threshold, hit/false-hit per set, with guards and model alone."""
    names = list(sets)
    head = "| threshold | " + " | ".join(f"{n}: hit / false hit" for n in names) + " | all, model alone: hit / false hit |"
    lines = [head, "|" + " --- |" * (len(names) + 2)]
    everything = [p for ps in sets.values() for p in ps]
    for t in THRESHOLDS:
        cells = []
        for n in names:
            h, f, _, _ = rates(sets[n], t)
            cells.append(f"{h:.1%} / {f:.1%}")
        h, f, _, _ = rates(everything, t, guards=False)
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + f" | {h:.1%} / {f:.1%} |")
    return "\n".join(lines)


def by_category(pairs: list[dict[str, Any]], threshold: float) -> str:
    """Markdown: per category and label, how many pairs hit at ``threshold`` (with guards)."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for p in pairs:
        c = counts[(p["category"], p["label"])]
        c[0] += 1
        c[1] += int(p["sim"] >= threshold and p["guard"] is None)
    lines = ["| category | label | pairs | hits |", "| --- | --- | --- | --- |"]
    for (cat, label), (n, h) in sorted(counts.items()):
        lines.append(f"| {cat} | {label} | {n} | {h} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"))
    parser.add_argument("--threshold", type=float, default=0.89, help="threshold for the per-category breakdown")
    parser.add_argument("--errors", action="store_true", help="list the wrong decisions at --threshold")
    args = parser.parse_args()
    embedder = Embedder(backend=args.backend, threads=2)
    dev, held = load_pairs(DEV), load_pairs(HELDOUT)
    started = time.perf_counter()
    score(dev + held, embedder)
    print(f"# {len(dev)} development pairs, {len(held)} held-out pairs; backend {embedder.backend}; "
          f"embedded and checked in {time.perf_counter() - started:.1f} s\n")
    print(table({"development": dev, "held-out": held, "all": dev + held}))
    print(f"\n## by category at {args.threshold:.2f} (development + held-out)\n")
    print(by_category(dev + held, args.threshold))
    if args.errors:
        print(f"\n## wrong decisions at {args.threshold:.2f}\n")
        for p in dev + held:
            hit = p["sim"] >= args.threshold and p["guard"] is None
            if hit != (p["label"] == "same"):
                print(f"- {p['label']:9} {p['category']:18} sim={p['sim']:.3f} guard={p['guard']!s:20} "
                      f"{p['a'][:70]!r} | {p['b'][:70]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
