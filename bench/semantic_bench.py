"""Semantic cache latency: embedding (ONNX and PyTorch backends) and SemanticIndex lookups at 1k/10k/100k entries.

    .venv/bin/python bench/semantic_bench.py [--sizes 1000,10000,100000] [--lookups 200] [--baseline-onnx PATH]

``--baseline-onnx`` measures a second ONNX file (say, a copy of an older export) in the same run, its calls
alternating with the default embedder's so that both see the same machine load.

Uses REDIS_URL when set, else a private redis-server. Baselines measured in the same run: one Redis round
trip (PING), and the numpy dot product alone at each size. Scopes are filled with random unit vectors plus
the real embeddings of a few hundred business prompts, so that lookups find candidates above the threshold
and the guards run, as they do in production. Prints a markdown table.
"""

from __future__ import annotations

import os

# As bin/start.sh sets for the server: one BLAS thread, so idle BLAS threads do not spin against the embedder.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lib import store as redis_store  # noqa: E402
from lib.cache.embedder import Embedder, default_onnx_path, find_model_path  # noqa: E402
from lib.cache.guards import analyze, check_features  # noqa: E402
from lib.cache.semantic import DEFAULT_THRESHOLD, SemanticIndex  # noqa: E402
from lib.cache.verify import prepare, verify  # noqa: E402


def previous_lookup(index: SemanticIndex, scope: str, prompt: str, vec: np.ndarray, memo: dict[int, Any]) -> bool:
    """The lookup as it was before the verification stage (issue 15), for an in-run baseline: candidates at
    cosine >= 0.89, best first, the first one the lexical guards allow (cached prompts' features memoized)."""
    snap = index._sync(scope)
    _, start, end, vecs, ids, _, prompts, _ = snap
    sims = vecs[start:end] @ vec
    above = np.flatnonzero(sims >= 0.89)
    if above.size > 16:
        above = above[np.argpartition(-sims[above], 16)[:16]]
    new = analyze(prompt)
    for row in above[np.argsort(-sims[above], kind="stable")].tolist():
        key = int(ids[start + row])
        feats = memo.get(key)
        if feats is None:
            feats = memo[key] = analyze(prompts[start + row])
        if check_features(new, feats) is None:
            return True
    return False


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def timed_pair(fn_a: Callable[[], Any], fn_b: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    """Timings of ``fn_a`` and ``fn_b``, called alternately ``n`` times each (same machine load for both)."""
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        for fn, out in ((fn_a, a), (fn_b, b)) if i % 2 == 0 else ((fn_b, b), (fn_a, a)):
            started = time.perf_counter()
            fn()
            out.append((time.perf_counter() - started) * 1000)
    return a, b


def row(name: str, samples: list[float]) -> str:
    return f"| {name} | {statistics.median(samples):.2f} | {pct(samples, 0.95):.2f} | {len(samples)} |"


def prompts() -> tuple[list[str], list[str]]:
    """(cached prompts, new prompts): the two sides of the labelled pairs, so lookups hit and miss."""
    cached: list[str] = []
    new: list[str] = []
    for name in ("semantic_pairs.jsonl", "semantic_pairs_tuned.jsonl", "semantic_pairs_heldout.jsonl"):
        if not (ROOT / "tests" / "data" / name).is_file():
            continue
        with open(ROOT / "tests" / "data" / name, encoding="utf-8") as f:
            for line in f:
                p = json.loads(line)
                cached.append(p["a"])
                new.append(p["b"])
    # typical chat prompts: the pasted-text ones (up to 256 word pieces) take longer to embed
    return sorted(set(cached)), sorted(t for t in set(new) - set(cached) if len(t) < 200)


def fill(redis: Any, prefix: str, scope: str, size: int, real: list[tuple[str, np.ndarray]]) -> None:
    """Put ``size`` entries in a scope: random unit vectors, then the real prompts (the newest)."""
    index = SemanticIndex(redis, prefix=prefix, embedder=None, threshold=DEFAULT_THRESHOLD, ttl_s=3600,
                          max_entries_per_scope=size)
    rng = np.random.default_rng(size)
    n_random = max(0, size - len(real))
    pipe = redis.pipeline(transaction=False)
    state, entries = index.keys_for(scope)
    for start in range(0, n_random, 2000):
        batch = rng.standard_normal((min(2000, n_random - start), 384)).astype(np.float32)
        batch /= np.linalg.norm(batch, axis=1, keepdims=True)
        for j, vec in enumerate(batch):
            index._add_script(keys=[state, entries],
                              args=[vec.tobytes() + json.dumps({"p": f"synthetic prompt {start + j}",
                                                                "k": f"k{start + j}"}).encode(),
                                    int(time.time() * 1000), 3_600_000, size, "bench", 16],
                              client=pipe)
        pipe.execute()
    for i, (text, vec) in enumerate(real[: size - n_random]):
        index.add(scope, text, f"real{i}", vector=vec)


def semantic_lookups(index: SemanticIndex, scope: str, emb: Embedder, queries: list[str], n: int) -> list[float]:
    """Timings of whole semantic lookups (embedding included) of prompts not embedded before."""
    index.embedder = emb
    emb._memo.clear()
    fresh = iter(queries * 2)
    return timed(lambda: index.lookup(scope, next(fresh)), n)


def server_lookups(index: SemanticIndex, scope: str, queries: list[str], n: int) -> list[float]:
    """Timings of whole lookups as the gateway does them under gunicorn: the vector comes from the machine's
    embedding server (lib/cache/embed_server.py, started here the way the gunicorn master starts it)."""
    import subprocess
    import sys
    import tempfile

    from lib.cache.embed_server import EmbeddingUnavailable, RemoteEmbedder

    sock = os.path.join(tempfile.mkdtemp(prefix="bench-embed-"), "embed.sock")
    proc = subprocess.Popen([sys.executable, "-m", "lib.cache.embed_server", "--socket", sock],
                            cwd=str(Path(__file__).resolve().parents[1]), stderr=subprocess.DEVNULL)
    try:
        remote = RemoteEmbedder(sock)
        deadline = time.monotonic() + 60
        while True:
            try:
                remote.embed("warm up")
                break
            except EmbeddingUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        fresh = iter(queries * 2)

        def one() -> None:
            text = next(fresh)
            index.lookup(scope, text, vector=remote.embed(text))

        return timed(one, n)
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--baseline-onnx", default=None, help="another ONNX export to compare with, same run")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    embedded = None
    url = os.environ.get("REDIS_URL")
    if not url:
        embedded = redis_store.start_embedded_redis()
        url = embedded.url
    redis = redis_store.connect(url)
    prefix = f"bench{os.getpid()}:"
    lines = ["| measurement | p50 ms | p95 ms | n |", "| --- | --- | --- | --- |"]
    n_embed = min(args.lookups, 200)
    try:
        lines.append(row("baseline: Redis PING (one round trip)", timed(redis.ping, 500)))
        cached, queries = prompts()
        n_embed = min(n_embed, len(queries))
        has_onnx = os.path.isfile(default_onnx_path(find_model_path()))

        # What a gateway worker does: the default embedder (ONNX, 1 thread) and the index. Torch and
        # 2-thread ONNX come last: their spinning worker threads slow everything else in the process.
        emb = Embedder(backend="onnx" if has_onnx else "torch")
        started = time.perf_counter()
        emb.load()
        load_s = time.perf_counter() - started
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        emb.embed("warm up")
        it = iter(queries)
        lines.append(row(f"embed, {emb.backend}, 1 thread (load {load_s:.1f} s; process max RSS {rss:.0f} MiB)",
                         timed(lambda: emb.embed(next(it)), n_embed)))
        lines.append(row("embed, memo hit", timed(lambda: emb.embed(queries[0]), 500)))
        base_emb = None
        if args.baseline_onnx and emb.backend == "onnx":
            base_emb = Embedder(backend="onnx", onnx_path=args.baseline_onnx, memo_size=0)
            base_emb.embed("warm up")
            emb._memo.clear()
            it_a, it_b = iter(queries), iter(queries)
            new_s, base_s = timed_pair(lambda: emb.embed(next(it_a)), lambda: base_emb.embed(next(it_b)), n_embed)
            lines.append(row("embed, onnx, 1 thread, default export (alternating with the baseline)", new_s))
            lines.append(row(f"embed, onnx, 1 thread, baseline {args.baseline_onnx}", base_s))
        real = list(zip(cached, emb.embed_batch(cached)))
        sample = [(prepare(a), prepare(b)) for a, b in zip(queries[:100], cached[:100])]
        lines.append(row("verification: prepare one new prompt (features + shape)",
                         timed(lambda: prepare(queries[len(queries) // 2]), 200)))
        it_v = iter(sample * 10)
        lines.append(row("verification: verify one candidate (prepared)",
                         timed(lambda: verify(*next(it_v), 0.9, threshold=DEFAULT_THRESHOLD), 500)))
        qvecs = emb.embed_batch(queries)
        kept: tuple[SemanticIndex, str] | None = None

        for size in sizes:
            scope = f"scope{size}"
            started = time.perf_counter()
            fill(redis, prefix, scope, size, real)
            fill_s = time.perf_counter() - started
            index = SemanticIndex(redis, prefix=prefix, embedder=emb, threshold=DEFAULT_THRESHOLD, ttl_s=3600,
                                  max_entries_per_scope=size, local_max_rows=max(size, 50000))
            started = time.perf_counter()
            index.lookup(scope, queries[0], vector=qvecs[0])
            load_ms = (time.perf_counter() - started) * 1000
            matrix = np.ascontiguousarray(index._scopes[scope].vecs[:size])
            lines.append(row(f"baseline: numpy dot alone, {size:,} x 384", timed(lambda: matrix @ qvecs[0], 200)))
            k = iter(range(10**9))
            hits = []

            def one() -> None:
                i = next(k) % len(queries)
                hits.append(index.lookup(scope, queries[i], vector=qvecs[i]) is not None)

            lines.append(row(f"lookup, {size:,} entries, vector given (filled in {fill_s:.0f} s; "
                             f"first lookup loads the scope in {load_ms:.0f} ms)", timed(one, args.lookups)))
            lines[-1] += f" hits {sum(hits)}/{len(hits)}"
            examined: list[int] = []
            k2 = iter(range(10**9))

            def counted() -> None:
                i = next(k2) % len(queries)
                examined.append(index.search(scope, queries[i], vector=qvecs[i]).candidates)

            timed(counted, min(args.lookups, len(queries)))
            lines.append(f"| (candidates verified per lookup at {size:,}: mean {statistics.mean(examined):.1f}, "
                         f"max {max(examined)}) | | | |")
            memo: dict[int, Any] = {}
            k3 = iter(range(10**9))
            old_hits = []

            def old() -> None:
                i = next(k3) % len(queries)
                old_hits.append(previous_lookup(index, scope, queries[i], qvecs[i], memo))

            lines.append(row(f"baseline: the previous lookup (guards only, cosine >= 0.89), {size:,} entries",
                             timed(old, args.lookups)))
            samples = []
            for i in range(50):
                index.add(scope, "a new prompt arrives", "knew", vector=qvecs[1])
                started = time.perf_counter()
                index.lookup(scope, queries[i], vector=qvecs[i])
                samples.append((time.perf_counter() - started) * 1000)
            lines.append(row(f"lookup, {size:,} entries, right after another process added one", samples))
            if size == 10000:
                lines.append(row(f"semantic lookup incl. embedding ({emb.backend}, 1 thread), 10,000 entries",
                                 semantic_lookups(index, scope, emb, queries, n_embed)))
                if base_emb is not None:
                    emb._memo.clear()
                    it_a, it_b = iter(queries), iter(queries)
                    new_s, base_s = timed_pair(
                        lambda: (setattr(index, "embedder", emb), index.lookup(scope, next(it_a))),
                        lambda: (setattr(index, "embedder", base_emb), index.lookup(scope, next(it_b))), n_embed)
                    lines.append(row("semantic lookup incl. embedding, default export, 10,000 entries "
                                     "(alternating with the baseline)", new_s))
                    lines.append(row("semantic lookup incl. embedding, baseline export, 10,000 entries", base_s))
                    index.embedder = emb
                lines.append(row("semantic lookup incl. embedding through the embedding server (what a gunicorn "
                                 "worker does: Unix socket, server's default threads), 10,000 entries",
                                 server_lookups(index, scope, queries, n_embed)))
                kept = (index, scope)
            else:
                redis.delete(*index.keys_for(scope))

        if has_onnx:
            torch_emb = Embedder(backend="torch")
            started = time.perf_counter()
            torch_emb.load()
            load_s = time.perf_counter() - started
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            torch_emb.embed("warm up")
            it = iter(queries)
            lines.append(row(f"embed, torch (load {load_s:.1f} s; process max RSS now {rss:.0f} MiB)",
                             timed(lambda: torch_emb.embed(next(it)), n_embed)))
            if kept:
                lines.append(row("semantic lookup incl. embedding (torch), 10,000 entries",
                                 semantic_lookups(kept[0], kept[1], torch_emb, queries, n_embed)))
            two = Embedder(backend="onnx", threads=2)
            two.embed("warm up")
            it = iter(queries)
            lines.append(row("embed, onnx, 2 threads (not the default; measured after torch)",
                             timed(lambda: two.embed(next(it)), n_embed)))
        if kept:
            redis.delete(*kept[0].keys_for(kept[1]))
        print("\n".join(lines))
    finally:
        redis.close()
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
