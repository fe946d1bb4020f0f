"""Semantic cache quality: hit rate and wrong-answer rate on the labelled prompt pairs, by part and by kind.

    .venv/bin/python bench/semantic_eval.py [--backend auto|onnx|torch] [--threshold T] [--parts A,B]
                                            [--errors [PART]]

For each pair (a, b) the cached prompt is ``a`` and the new request is ``b``. A pair *hits* when ``a`` is a
candidate for ``b`` (cosine of their all-MiniLM-L6-v2 embeddings at least the strictness level's floor)
and the verification stage (:mod:`lib.cache.verify`) allows it: exactly what ``SemanticIndex.search`` does.

- hit rate: hits among pairs labelled ``same`` (rewordings that should be served from the cache);
- wrong-answer rate: hits among pairs labelled ``different`` (each one would serve a wrong answer).

Parts: the *development* parts (the method was built and tuned on them; the first two held-out sets are
among them, since each was spent by its single evaluation after a freeze) and the *held-out* part (written
independently, never looked at before the method was frozen; see ``PARTS``). Printed at the shipped
defaults for each strictness level, with baselines (the previous default: the lexical guards at 0.89; the
guards and the model alone at the same threshold), then by kind, then by threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lib.cache.embedder import Embedder  # noqa: E402
from lib.cache.guards import check_pair  # noqa: E402
from lib.cache.semantic import DEFAULT_THRESHOLD, STRICTNESS  # noqa: E402
from lib.cache.verify import candidate_floor, prepare, verify  # noqa: E402

DATA = ROOT / "tests" / "data"
# (name, file, role): "development" parts were looked at while the method was built, "held-out" ones were not
PARTS = (
    ("dev", "semantic_pairs.jsonl", "development"),
    ("tuned", "semantic_pairs_tuned.jsonl", "development"),
    ("held-out", "semantic_pairs_heldout.jsonl", "development"),  # looked at during the first round
    ("holdout2", "semantic_pairs_holdout2.jsonl", "development"),  # spent by the evaluation after freeze (1)
    ("holdout3", "semantic_pairs_holdout3.jsonl", "held-out"),  # independent; evaluated once after freeze (2)
)
ROLES = ("development", "held-out")
PREVIOUS_THRESHOLD = 0.89
THRESHOLDS = (0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.89, 0.93, 0.95)


def load_pairs(path: Path) -> list[dict[str, Any]]:
    """The pairs of one JSONL file (fields a, b, label, and category or kind: read as ``category``)."""
    with open(path, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f if line.strip()]
    for p in pairs:
        p.setdefault("category", p.get("kind", "-"))
    return pairs


def load_parts(names: tuple[tuple[str, str, str], ...] = PARTS) -> dict[str, list[dict[str, Any]]]:
    """Every part whose file exists, by name; each pair gets its part's role as ``role``."""
    out = {}
    for name, filename, role in names:
        if (DATA / filename).is_file():
            pairs = load_pairs(DATA / filename)
            for p in pairs:
                p["role"] = role
            out[name] = pairs
    return out


def score(pairs: list[dict[str, Any]], embedder: Embedder) -> None:
    """Add ``sim`` (cosine), ``guard`` (the previous guards' refusal) and the prepared prompts, in place."""
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    vecs = embedder.embed_batch(texts)
    index = {t: i for i, t in enumerate(texts)}
    prepared = {t: prepare(t) for t in texts}
    for p in pairs:
        p["sim"] = float(vecs[index[p["a"]]] @ vecs[index[p["b"]]])
        p["guard"] = check_pair(p["b"], p["a"])
        p["new"], p["cached"] = prepared[p["b"]], prepared[p["a"]]


def decision(method: str, threshold: float) -> Callable[[dict[str, Any]], bool]:
    """Whether a pair hits: ``model`` (cosine alone), ``guards`` (the previous lexical guards) or a strictness."""
    if method == "model":
        return lambda p: p["sim"] >= threshold
    if method == "guards":
        return lambda p: p["sim"] >= threshold and p["guard"] is None
    if method == "previous":  # what shipped before issue 15: the guards at cosine >= 0.89
        return lambda p: p["sim"] >= PREVIOUS_THRESHOLD and p["guard"] is None
    floor = candidate_floor(threshold, method)
    return lambda p: p["sim"] >= floor and verify(p["new"], p["cached"], p["sim"], threshold=threshold,
                                                   strictness=method).ok


def rates(pairs: list[dict[str, Any]], hit: Callable[[dict[str, Any]], bool]) -> tuple[float, float, int, int, int]:
    """(hit rate on ``same``, wrong-answer rate on ``different``, wrong answers, same pairs, different pairs)."""
    same = [p for p in pairs if p["label"] == "same"]
    diff = [p for p in pairs if p["label"] == "different"]
    wrong = sum(map(hit, diff))
    return sum(map(hit, same)) / max(1, len(same)), wrong / max(1, len(diff)), wrong, len(same), len(diff)


def summary(parts: dict[str, list[dict[str, Any]]], threshold: float) -> str:
    """Markdown: per part, hit / wrong for each strictness level and the two baselines at ``threshold``."""
    methods = list(STRICTNESS) + ["previous", "guards", "model"]
    label = {"previous": f"previous default (guards, {PREVIOUS_THRESHOLD:.2f})", "guards": "guards alone",
             "model": "model alone"}
    head = "| part | pairs (same / different) | " + " | ".join(
        f"{label.get(m, m)}: hit / wrong" for m in methods) + " |"
    lines = [head, "|" + " --- |" * (len(methods) + 2)]
    groups = dict(parts)
    for role in ROLES:
        members = [p for ps in parts.values() for p in ps if p["role"] == role]
        if len(members) and len([n for n, ps in parts.items() if ps and ps[0]["role"] == role]) > 1:
            groups[f"all {role}"] = members
    for name, pairs in groups.items():
        cells = []
        n_same = n_diff = 0
        for m in methods:
            h, w, k, n_same, n_diff = rates(pairs, decision(m, threshold))
            cells.append(f"{h:.1%} / {w:.1%} ({k})")
        lines.append(f"| {name} | {n_same} / {n_diff} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def by_kind(pairs: list[dict[str, Any]], threshold: float) -> str:
    """Markdown: per kind and label, how many pairs hit under each strictness level and the previous default."""
    methods = list(STRICTNESS) + ["previous"]
    fns = {m: decision(m, threshold) for m in methods}
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for p in pairs:
        c = counts[(p["category"], p["label"])]
        c["n"] += 1
        for m, fn in fns.items():
            c[m] += int(fn(p))
    lines = ["| kind | label | pairs | " + " | ".join(f"hits, {m}" for m in methods) + " |",
             "|" + " --- |" * (len(methods) + 3)]
    for (kind, label), c in sorted(counts.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {kind} | {label} | {c['n']} | " + " | ".join(str(c[m]) for m in methods) + " |")
    return "\n".join(lines)


def threshold_table(parts: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: hit / wrong by threshold, development and held-out parts, for each strictness level."""
    groups = [(role, [p for ps in parts.values() for p in ps if p["role"] == role]) for role in ROLES]
    cols = [(m, name, pairs) for m in STRICTNESS for name, pairs in groups if pairs]
    lines = ["| threshold | " + " | ".join(f"{m}, {name}: hit / wrong" for m, name, _ in cols)
             + " | model alone, all: hit / wrong |", "|" + " --- |" * (len(cols) + 2)]
    everything = [p for _, pairs in groups for p in pairs]
    for t in THRESHOLDS:
        cells = []
        for m, _, pairs in cols:
            h, w, *_ = rates(pairs, decision(m, t))
            cells.append(f"{h:.1%} / {w:.1%}")
        h, w, *_ = rates(everything, decision("model", t))
        mark = f"**{t:.2f} (default)**" if abs(t - DEFAULT_THRESHOLD) < 1e-9 else f"{t:.2f}"
        lines.append(f"| {mark} | " + " | ".join(cells) + f" | {h:.1%} / {w:.1%} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="auto", choices=("auto", "onnx", "torch"))
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="the rewording threshold")
    parser.add_argument("--parts", default=None, help="comma-separated part names (default: every part present)")
    parser.add_argument("--errors", nargs="?", const="all", default=None,
                        help="list the wrong decisions at --threshold (of one part, or all)")
    args = parser.parse_args()
    embedder = Embedder(backend=args.backend, threads=2)
    parts = load_parts(tuple(p for p in PARTS if args.parts is None or p[0] in args.parts.split(",")))
    everything = [p for ps in parts.values() for p in ps]
    started = time.perf_counter()
    score(everything, embedder)
    sizes = ", ".join(f"{name} {len(ps)}" for name, ps in parts.items())
    print(f"# {len(everything)} labelled pairs ({sizes}); backend {embedder.backend}; "
          f"embedded and checked in {time.perf_counter() - started:.1f} s\n")
    print(f"## at the shipped defaults (threshold {args.threshold:.2f})\n")
    print(summary(parts, args.threshold))
    for role in ROLES:
        members = [p for p in everything if p["role"] == role]
        if members:
            print(f"\n## by kind, {role} parts, threshold {args.threshold:.2f}\n")
            print(by_kind(members, args.threshold))
    print("\n## by threshold\n")
    print(threshold_table(parts))
    if args.errors:
        print(f"\n## wrong decisions at {args.threshold:.2f}, strict\n")
        for name, pairs in parts.items():
            if args.errors not in ("all", name):
                continue
            for p in pairs:
                verdict = verify(p["new"], p["cached"], p["sim"], threshold=args.threshold)
                hit = p["sim"] >= candidate_floor(args.threshold) and verdict.ok
                if hit != (p["label"] == "same"):
                    print(f"- {name:8} {p['label']:9} {p['category']:14} sim={p['sim']:.3f} "
                          f"{verdict.check or 'hit'}: {verdict.detail} | {p['a'][:60]!r} | {p['b'][:60]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
