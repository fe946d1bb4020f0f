"""The verification methods measured for issue 15, side by side on the labelled pairs (development tool).

    .venv/bin/python bench/semantic_alternatives.py [--threshold T]

Each method decides, for a pair (cached ``a``, new ``b``) above the cosine threshold, whether ``a``'s answer
may be served for ``b``. Printed: hit rate on ``same`` pairs and wrong-answer rate on ``different`` pairs,
on the tuned parts (for learned methods: 5-fold cross-validation, each fold scored by a model trained on
the other four) and on the held-out part (scored by a model trained on all tuned pairs).

Methods:

- ``model``: cosine alone; ``guards``: the lexical guards (lib/cache/guards) on top;
- ``token-align``: MiniLM's contextual token embeddings (the same forward pass that gives the sentence
  vector, before pooling): every content token of each prompt must find a token of the other with cosine
  at least S (min over tokens of the max-sim, BERTScore style), with the guards; and ``token-align-order``,
  which also needs the aligned tokens in the same order (longest increasing run / tokens >= R);
- ``instruction-embed``: prompts sharing pasted text are compared by the embedding of the instruction
  alone (the prompt without the shared runs) at cosine >= S, with the guards;
- ``logreg``: logistic regression over all of those signals plus the structural comparison's
  (lib/cache/structure), probability threshold picked on the training folds for <= 0.5% wrong answers;
- ``strict`` / ``balanced``: the shipped verification stage (lib/cache/verify).

Needs torch and sentence-transformers (installed for the model export); nothing here runs in the proxy.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import semantic_eval as E  # noqa: E402
from lib.cache.embedder import Embedder, find_model_path  # noqa: E402
from lib.cache.guards import analyze  # noqa: E402
from lib.cache.guards.rules import RULES  # noqa: E402
from lib.cache.structure import CONTENT, compare, instruction, shape  # noqa: E402


def token_vectors(texts: list[str]) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per text: its lower-cased words and one L2-normalised contextual vector per word (mean of its pieces)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(find_model_path(), device="cpu")
    model.max_seq_length = 256
    tok = model.tokenizer
    out = {}
    embs = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False, batch_size=32,
                        show_progress_bar=False)
    for text, emb in zip(texts, embs):
        emb = emb.numpy() if hasattr(emb, "numpy") else np.asarray(emb)
        enc = tok(text, return_offsets_mapping=True, truncation=True, max_length=256)
        offsets = enc["offset_mapping"]
        words, vecs = [], []
        for m in re.finditer(r"[A-Za-z0-9]+(?:'[a-z]+)?", text):
            idx = [i for i, (s, e) in enumerate(offsets) if e > s and s >= m.start() and e <= m.end()]
            if idx:
                v = emb[idx].mean(0)
                words.append(m.group(0).lower())
                vecs.append(v / (np.linalg.norm(v) + 1e-9))
        out[text] = (words, np.array(vecs) if vecs else np.zeros((0, emb.shape[1])))
    return out


def content_mask(words: list[str]) -> np.ndarray:
    s = shape(" ".join(words))
    kinds = [k for k in s.kinds if k != -1]
    return np.array([k == CONTENT for k in kinds[: len(words)]] + [False] * max(0, len(words) - len(kinds)))


def alignment(a: tuple[list[str], np.ndarray], b: tuple[list[str], np.ndarray]) -> tuple[float, float]:
    """(min over content tokens of either prompt of its best cosine in the other, in-order share)."""
    (wa, va), (wb, vb) = a, b
    ma, mb = content_mask(wa), content_mask(wb)
    if not ma.any() or not mb.any():
        return 1.0, 1.0
    sims = va[ma] @ vb[mb].T
    worst = float(min(sims.max(1).min(), sims.max(0).min()))
    best_j = sims.argmax(1)
    # longest increasing subsequence of the matches' positions: the share of tokens aligned in order
    tails: list[int] = []
    for j in best_j.tolist():
        k = int(np.searchsorted(tails, j))
        tails[k:k + 1] = [j]
    return worst, len(tails) / len(best_j)


def add_signals(pairs: list[dict[str, Any]], embedder: Embedder) -> None:
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
    tv = token_vectors(texts)
    instr_texts = {}
    for p in pairs:
        sa, sb = shape(p["a"]), shape(p["b"])
        d = compare(sb, sa)
        p["d"] = d
        p["hard_guard"] = any(rule(analyze(p["b"]), analyze(p["a"])) for _, rule in RULES)
        p["align_min"], p["align_order"] = alignment(tv[p["b"]], tv[p["a"]])
        if d.pasted:
            ia = " ".join(sa.words[i] for i in instruction(sa, sb) if sa.kinds[i] != -1)
            ib = " ".join(sb.words[i] for i in instruction(sb, sa) if sb.kinds[i] != -1)
            instr_texts[id(p)] = (ia or "-", ib or "-")
    flat = sorted({t for pair in instr_texts.values() for t in pair})
    vecs = dict(zip(flat, embedder.embed_batch(flat))) if flat else {}
    for p in pairs:
        if id(p) in instr_texts:
            ia, ib = instr_texts[id(p)]
            p["instr_sim"] = float(vecs[ia] @ vecs[ib])
        else:
            p["instr_sim"] = p["sim"]


def features(p: dict[str, Any]) -> list[float]:
    d = p["d"]
    na, nb = len(set(d.only_a)), len(set(d.only_b))
    return [p["sim"], p["align_min"], p["align_order"], p["instr_sim"], float(p["hard_guard"]),
            float(p["guard"] is not None), float(bool(d.polar)), float(d.neutral_clash), float(d.roles_swapped),
            float(d.pasted), min(na, 4) / 4, min(nb, 4) / 4, float(na == 0 or nb == 0), float(max(na, nb) <= 1)]


def train_logreg(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 3000) -> tuple[np.ndarray, float]:
    """Plain gradient-descent logistic regression (no scikit-learn needed): weights and bias."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        pr = 1 / (1 + np.exp(-(z @ w + b)))
        g = pr - y
        w -= 0.1 * (z.T @ g / len(y) + l2 * w / len(y))
        b -= 0.1 * g.mean()
    return np.concatenate([w / sd, [b - float((w / sd) @ mu)]]), 0.0


def predict(model: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(x @ model[:-1] + model[-1])))


def pick_cut(prob: np.ndarray, y: np.ndarray, max_wrong: float = 0.005) -> float:
    diff = np.sort(prob[y == 0])[::-1]
    allowed = int(max_wrong * len(diff))
    return float(diff[allowed]) + 1e-9 if allowed < len(diff) else 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=E.DEFAULT_THRESHOLD)
    args = parser.parse_args()
    t = args.threshold
    parts = E.load_parts()
    tuned = [p for ps in parts.values() for p in ps if p["role"] == "development"]
    held = [p for ps in parts.values() for p in ps if p["role"] == "held-out"]
    embedder = Embedder(threads=2)
    E.score(tuned + held, embedder)
    add_signals(tuned + held, embedder)
    base = lambda p: p["sim"] >= t and not p["hard_guard"] and p["guard"] is None  # noqa: E731
    methods: dict[str, Callable[[dict[str, Any]], bool]] = {
        "model": E.decision("model", t), "guards": E.decision("guards", t)}
    for s in (0.5, 0.6, 0.7):
        methods[f"token-align S={s}"] = lambda p, s=s: base(p) and p["align_min"] >= s
        methods[f"token-align-order S={s} R=0.9"] = lambda p, s=s: base(p) and p["align_min"] >= s \
            and p["align_order"] >= 0.9
    for s in (0.8, 0.9, 0.95):
        methods[f"instruction-embed S={s}"] = lambda p, s=s: base(p) and p["instr_sim"] >= s
    methods["strict"] = E.decision("strict", t)
    methods["balanced"] = E.decision("balanced", t)

    # logistic regression: 5-fold CV on the tuned pairs (candidates only: cosine >= the strict floor)
    floor = 0.6
    x_t = np.array([features(p) for p in tuned])
    y_t = np.array([p["label"] == "same" for p in tuned], dtype=float)
    cand = np.array([p["sim"] >= floor for p in tuned])
    rng = np.random.default_rng(15)
    fold = rng.integers(0, 5, len(tuned))
    cv_hit = np.zeros(len(tuned), dtype=bool)
    for k in range(5):
        tr, te = (fold != k) & cand, (fold == k) & cand
        model, _ = train_logreg(x_t[tr], y_t[tr])
        cut = pick_cut(predict(model, x_t[tr]), y_t[tr])
        cv_hit[te] = predict(model, x_t[te]) >= cut
    model, _ = train_logreg(x_t[cand], y_t[cand])
    cut = pick_cut(predict(model, x_t[cand]), y_t[cand])
    held_hit = {id(p): p["sim"] >= floor and predict(model, np.array([features(p)]))[0] >= cut for p in held}
    tuned_hit = {id(p): bool(h) for p, h in zip(tuned, cv_hit)}
    methods["logreg (CV on tuned)"] = lambda p: tuned_hit[id(p)] if id(p) in tuned_hit else held_hit[id(p)]

    print(f"# threshold {t:.2f}: {len(tuned)} tuned pairs, {len(held)} held-out pairs\n")
    print("| method | tuned: hit / wrong | held-out: hit / wrong |")
    print("| --- | --- | --- |")
    for name, fn in methods.items():
        h1, w1, k1, *_ = E.rates(tuned, fn)
        h2, w2, k2, *_ = E.rates(held, fn)
        print(f"| {name} | {h1:.1%} / {w1:.1%} ({k1}) | {h2:.1%} / {w2:.1%} ({k2}) |")
    names = ["cos", "align_min", "align_order", "instr_sim", "hard_guard", "old_guards", "polar", "clash",
             "roles", "pasted", "only_a", "only_b", "one_sided", "edit<=1"]
    print("\nlogreg weights (raw features): " + ", ".join(f"{n} {w:+.2f}" for n, w in zip(names, model[:-1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
