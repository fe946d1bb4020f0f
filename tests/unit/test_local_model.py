"""Local models: the machine's model server (a real ``python -m lib.providers.local_server`` process over a Unix
socket, serving a tiny GPT-2 built here), its bounded queue, cancellation, templates and stop strings, and the
sandbox vendors that answer with a model."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib import errors
from lib.providers.local import LocalProvider
from lib.providers.local_model import LocalModel, StopMatcher
from lib.providers.local_server import RemoteModel
from lib.providers.registry import ProviderConfig
from tests.fakes import tiny_lm

ROOT = Path(__file__).resolve().parents[2]
SAY = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def endless(tmp_path_factory) -> str:
    return tiny_lm.build(tmp_path_factory.mktemp("endless"), kind="endless", chat_template=False, positions=4096)


@pytest.fixture(scope="module")
def server(endless, tmp_path_factory):
    """The model server for the endless model, queue of one."""
    sock = str(tmp_path_factory.mktemp("sock") / "model.sock")
    proc = subprocess.Popen([sys.executable, "-m", "lib.providers.local_server", "--socket", sock, "--path", endless,
                             "--queue", "1", "--threads", "1"], cwd=str(ROOT))
    deadline = time.monotonic() + 60
    while not Path(sock).exists():
        assert proc.poll() is None and time.monotonic() < deadline, "model server did not start"
        time.sleep(0.05)
    provider_for(sock, endless).complete({**SAY, "max_tokens": 1}, model="tiny", timeout=60)  # loaded
    yield sock
    proc.terminate()
    proc.wait(10)


def provider_for(sock: str, endless: str) -> LocalProvider:
    return LocalProvider(ProviderConfig(name="tiny", type="local", extra={"path": endless, "socket": sock}))


def test_streams_token_by_token_from_the_server_process(server, endless) -> None:
    provider = provider_for(server, endless)
    started = time.monotonic()
    chunks = provider.stream({**SAY, "max_tokens": 300}, model="tiny", timeout=30)
    first = next(chunks)
    assert first["choices"][0]["delta"]["role"] == "assistant"
    second = next(chunks)
    first_text_at = time.monotonic() - started
    rest = list(chunks)
    total = time.monotonic() - started
    text = second["choices"][0]["delta"]["content"] + "".join(
        c["choices"][0]["delta"].get("content") or "" for c in rest if c["choices"])
    assert text.split() == (tiny_lm.CHAIN * 50)[:300]
    assert rest[-1]["usage"]["completion_tokens"] == 300 and rest[-2]["choices"][0]["finish_reason"] == "length"
    assert first_text_at < total / 2  # text arrived while the rest was being generated
    print(f"\nlocal model: 300 tokens in {total:.2f} s ({300 / total:.0f} tokens/s), first text after "
          f"{first_text_at * 1000:.0f} ms")


def test_a_full_queue_is_a_429_and_a_client_that_hangs_up_stops_its_generation(server, endless) -> None:
    provider = provider_for(server, endless)
    long = provider.stream({**SAY, "max_tokens": 3000}, model="tiny", timeout=30)  # runs for seconds
    next(long), next(long)  # generating now
    waiting: list[object] = []
    queued = threading.Thread(target=lambda: waiting.append(provider.complete({**SAY, "max_tokens": 3}, model="tiny",
                                                                              timeout=30)))
    queued.start()
    time.sleep(0.3)  # the second request waits in the queue of one
    with pytest.raises(errors.UpstreamRateLimited) as caught:
        provider.complete({**SAY, "max_tokens": 3}, model="tiny", timeout=30)
    assert caught.value.retry_after == 1.0 and caught.value.status == 429
    hung_up = time.monotonic()
    long.close()  # the first client goes away: its generation stops, the queued one runs
    queued.join(20)
    assert waiting and waiting[0]["choices"][0]["message"]["content"].split() == tiny_lm.CHAIN[:3]
    assert time.monotonic() - hung_up < 3  # far less than the 3,000 tokens it would have written


def test_a_prompt_longer_than_the_context_is_a_400(server, endless) -> None:
    provider = provider_for(server, endless)
    with pytest.raises(errors.UpstreamBadRequest) as caught:
        provider.complete({"messages": [{"role": "user", "content": "hello " * 5000}]}, model="tiny", timeout=30)
    assert caught.value.code == "context_length_exceeded"


def test_an_unreachable_server_is_a_503() -> None:
    with pytest.raises(errors.UpstreamUnavailable):
        list(RemoteModel("/nonexistent/model.sock").run({"messages": []}, timeout=1, provider="tiny"))


def test_without_a_chat_template_the_prompt_is_role_lines(endless) -> None:
    model = LocalModel(endless).load()
    text = model.tokenizer.decode(model.prompt_ids([{"role": "system", "content": "be brief"},
                                                    {"role": "user", "content": "hello"}]))
    assert text == "system : be brief user : hello assistant :"


def test_stop_strings_never_reach_the_client_even_split_across_pieces() -> None:
    matcher = StopMatcher(["END!"])
    out = "".join(matcher.feed(piece) for piece in ["one two E", "N", "D", "! three"])
    assert out == "one two " and matcher.stopped
    plain = StopMatcher(["zz"])
    assert "".join(plain.feed(p) for p in ["a z", "b"]) + plain.flush() == "a zb"
