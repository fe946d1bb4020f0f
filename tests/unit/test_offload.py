"""CPU-heavy work a client can trigger runs off the gevent loop (lib/offload.py), and the heavy paths give
exactly what the light ones give."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lib import offload
from lib.accounting import Accounting
from lib.accounting.pricing import PriceBook
from lib.protocols.chat import parse_chat_request

# In a monkey-patched process (as a gevent worker is), a greenlet ticks every millisecond while a
# 300-ms pure-Python job runs: inline it cannot tick at all; offloaded it keeps ticking.
_PROBE = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import sys, threading, time
    import gevent
    from lib import offload

    def job():
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
        return threading.get_ident()

    ticks = []
    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0.001)

    t = gevent.spawn(ticker)
    gevent.sleep(0.01)
    before = len(ticks)
    ident = offload.cpu(job, heavy=sys.argv[1] == "heavy")
    during = len(ticks) - before
    try:
        offload.cpu(lambda: 1 / 0, heavy=True)
        raised = "no"
    except ZeroDivisionError:
        raised = "yes"
    t.kill()
    print(during, "other" if ident != threading.get_ident() else "same", raised)
""")


def _probe(mode: str) -> tuple[int, str, str]:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60, check=True,
                         cwd=root)
    ticks, thread, raised = out.stdout.split()
    assert "Traceback" not in out.stderr, out.stderr  # an exception is raised in the caller, not printed by gevent
    return int(ticks), thread, raised


def test_heavy_work_runs_on_another_thread_and_the_loop_keeps_going() -> None:
    ticks, thread, raised = _probe("heavy")
    assert thread == "other" and ticks > 0 and raised == "yes"


def test_light_work_runs_inline() -> None:
    ticks, thread, _ = _probe("light")
    assert thread == "same" and ticks == 0  # the loop could not run: what a heavy body did to a worker before


def test_outside_a_gevent_worker_everything_is_inline() -> None:
    import threading

    assert offload.cpu(threading.get_ident, heavy=True) == threading.get_ident()


def _request(n: int, **extra):  # noqa: ANN202
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}", "name": None}
                for i in range(n)]
    return parse_chat_request({"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2, "seed": None,
                               "some_new_param": {"a": 1}, **extra})


@pytest.mark.parametrize("stream", [False, True])
def test_the_heavy_upstream_body_is_the_light_one(stream: bool) -> None:
    light = _request(3, stream=stream, stream_options={"include_usage": True} if stream else None)
    heavy = _request(3, stream=stream, stream_options={"include_usage": True} if stream else None)
    heavy.sized(offload.HEAVY_BYTES)
    assert not light.heavy and heavy.heavy
    assert list(heavy.upstream_body().items()) == list(light.upstream_body().items())  # the same keys in the same order


def test_a_request_is_heavy_by_size_or_by_message_count() -> None:
    assert _request(offload.HEAVY_MESSAGES + 1).heavy
    assert not _request(offload.HEAVY_MESSAGES).heavy
    assert _request(1).sized(offload.HEAVY_BYTES).heavy


def test_prompt_tokens_are_counted_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    accounting = Accounting(PriceBook({}))
    req = _request(5)
    calls = []
    original = offload.cpu

    def counting(fn, *args, heavy, **kw):  # noqa: ANN001, ANN202
        calls.append(args[1])
        return original(fn, *args, heavy=heavy, **kw)

    monkeypatch.setattr(offload, "cpu", counting)
    first = accounting.prompt_tokens(req, "gpt-4o-mini")
    assert accounting.prompt_tokens(req, "gpt-4o-mini") == first
    other = accounting.prompt_tokens(req, "gpt-4")
    assert calls == ["gpt-4o-mini", "gpt-4"] and first > 5 * 3 and other > 5 * 3
