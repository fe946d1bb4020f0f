"""Micro-benchmark of local token counting and pricing: `python bench/tokens_bench.py [repeats]`.

Prints the one-off encoding load time, then the median and p99 time of one call, after warm-up, for a
4,000-character prompt (MAX_PROMPT_LENGTH) on each encoding, a chat request of that size, and costing.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.accounting import pricing, tokens  # noqa: E402

PARAGRAPH = (
    "The gateway counts tokens locally when the provider reports no usage, prices them from data, and keeps "
    "micro-dollar counters in Redis. def handler(req): return route(req.model, req.messages)  # code\n"
    "Unicode too: caf\u00e9, \u4f60\u597d\u4e16\u754c, \U0001f680.\n"
)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, p99) seconds of one call of ``fn`` after 20 warm-up calls."""
    for _ in range(20):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    prompt = (PARAGRAPH * (4000 // len(PARAGRAPH) + 1))[:4000]
    start = time.perf_counter()
    tokens.preload()
    print(f"preload cl100k_base + o200k_base: {(time.perf_counter() - start) * 1000:.0f} ms (once per process)")
    book = pricing.PriceBook.load(None)
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": prompt}]
    cases: list[tuple[str, Callable[[], object]]] = [
        ("count_tokens 4000 chars gpt-4o (o200k)", lambda: tokens.count_tokens(prompt, "gpt-4o")),
        ("count_tokens 4000 chars gpt-4 (cl100k)", lambda: tokens.count_tokens(prompt, "gpt-4")),
        ("count_tokens 4000 chars claude (approx)", lambda: tokens.count_tokens(prompt, "claude-3-5-haiku-20241022")),
        ("count_chat_tokens 2 msgs, 4000 chars", lambda: tokens.count_chat_tokens(messages, "gpt-4o-mini")),
        ("PriceBook.cost_of", lambda: book.cost_of(1234, 567, "gpt-4o-mini-2024-07-18")),
    ]
    print(f"{tokens.count_tokens(prompt, 'gpt-4o')} o200k tokens / {tokens.count_tokens(prompt, 'gpt-4')} "
          f"cl100k tokens in the 4000-char prompt; {repeats} timed calls each")
    for label, fn in cases:
        median, p99 = timed(fn, repeats)
        print(f"{label:42s} median {median * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
