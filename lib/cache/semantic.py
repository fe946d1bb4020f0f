"""Semantic cache index: prompt embeddings per scope in Redis, matched in-process with numpy.

A *scope* is everything that must match exactly for a cached answer to be reusable (cache scope, resolved
model, system prompt, earlier turns, output-changing parameters); the caller hashes it into
``context_hash``. Within a scope, the cached prompts whose embedding is close to the new prompt's are the
candidates, best first, and :mod:`lib.cache.verify` decides for each whether its answer may be served.
:meth:`SemanticIndex.search` says which check refused the best candidate when nothing is served.

Redis layout (all keys of a scope share the hash tag ``{<context_hash>}``, so they sit in one Cluster slot):

    {prefix}sem:{<context_hash>}:state    hash  seq (last entry id), floor (every id <= floor is gone),
                                                epoch (changes when the scope is created anew)
    {prefix}sem:{<context_hash>}:entries  hash  id -> 16 ASCII digits created_ms + 384 float32 + JSON
                                                {"p": prompt, "k": payload_key}

Entry ids grow by one per add, so "what changed" is ``(seq, floor, epoch)``: a lookup reads those three
numbers (one small round trip) and only fetches entries it has not seen. Oldest entries are evicted first,
over ``max_entries_per_scope`` or past ``ttl_s``; both keys expire ``ttl_s`` after the last add.

Each process keeps the matrices of recently used scopes (bounded by ``local_max_rows``). Redis errors
propagate (``redis.RedisError``): the caller bypasses the cache on them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from lib.cache.verify import STRICT, POLICIES, Prepared, Verdict, candidate_floor, prepare, verify

DIM = 384
MAX_TOKENS = 256  # longer prompts are not indexed: the model would only read their beginning
# The shipped default of SEMANTIC_CACHE_THRESHOLD (lib/settings.py, the contract): the cosine bar for a
# rewording that verification cannot explain word by word (measured: bench/semantic_eval.py).
DEFAULT_THRESHOLD = 0.89
STRICTNESS = tuple(POLICIES)  # ("strict", "balanced"); the first is the default
_HEAD = 16  # created_ms as 16 ASCII digits
_VEC_BYTES = DIM * 4

# KEYS: state, entries. ARGV: body (vector bytes + JSON), now_ms, ttl_ms, cap, epoch candidate, max evictions.
# Evicts from the oldest id up: holes (removed ids), entries past their TTL, then entries over the cap.
_ADD_LUA = """
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local budget = tonumber(ARGV[6])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if seq == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[5], 'floor', 0)
end
redis.call('HSET', KEYS[2], tostring(seq), string.format('%016d', now) .. ARGV[1])
local floor = tonumber(redis.call('HGET', KEYS[1], 'floor') or '0')
local over = redis.call('HLEN', KEYS[2]) - cap
while floor < seq - 1 and budget > 0 do
  local id = tostring(floor + 1)
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    if over <= 0 and tonumber(string.sub(v, 1, 16)) > now - ttl then break end
    redis.call('HDEL', KEYS[2], id)
    over = over - 1
  end
  floor = floor + 1
  budget = budget - 1
end
redis.call('HSET', KEYS[1], 'floor', floor)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {seq, redis.call('HGET', KEYS[1], 'epoch')}
"""


class _Embedder(Protocol):
    def embed(self, text: str) -> np.ndarray: ...

    def token_length(self, text: str) -> int: ...


@dataclass(frozen=True)
class SemanticMatch:
    """A cached prompt close enough to the new one: its id, cosine similarity, text and payload key."""

    entry_id: str
    similarity: float
    cached_prompt: str
    payload_key: str


@dataclass(frozen=True)
class SemanticSearch:
    """What :meth:`SemanticIndex.search` found: the match served, or why the best candidate was refused.

    ``veto_reason``: the check that refused the most similar candidate (``"roles swapped"``, ``"similarity"``...),
    ``veto_detail``: what it saw (words only in the new prompt / only in the cached one: ``"paragraph /
    sentence"``), ``veto_similarity``: that candidate's cosine; all None when there was a match or no
    candidate. ``candidates``: how many cached prompts were examined.
    """

    match: SemanticMatch | None = None
    veto_reason: str | None = None
    veto_similarity: float | None = None
    veto_detail: str | None = None
    candidates: int = 0


_NOTHING = SemanticSearch()


@dataclass
class _Scope:
    """This process's copy of one scope: rows ``start:end`` of growable buffers, ordered by entry id."""

    epoch: bytes
    seq: int = 0
    floor: int = 0
    start: int = 0
    end: int = 0
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    created: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vecs: np.ndarray = field(default_factory=lambda: np.zeros((0, DIM), dtype=np.float32))
    prompts: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    features: dict[int, Prepared] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)

    rows = property(lambda self: self.end - self.start)

    def append(self, rows: list[tuple[int, int, np.ndarray, str, str]]) -> None:
        """Add rows (id, created_ms, vector, prompt, payload key) with ids above every id held."""
        if not rows:
            return
        need = self.rows + len(rows)
        if self.end + len(rows) > len(self.ids):
            # compact into new buffers (readers keep the old ones alive while they use them)
            cap = max(64, need * 2 if need > len(self.ids) // 2 else len(self.ids))
            ids = np.zeros(cap, dtype=np.int64)
            created = np.zeros(cap, dtype=np.int64)
            vecs = np.zeros((cap, DIM), dtype=np.float32)
            n = self.rows
            ids[:n], created[:n], vecs[:n] = (self.ids[self.start:self.end], self.created[self.start:self.end],
                                              self.vecs[self.start:self.end])
            self.prompts = self.prompts[self.start:self.end]
            self.keys = self.keys[self.start:self.end]
            self.ids, self.created, self.vecs, self.start, self.end = ids, created, vecs, 0, n
        for entry_id, created_ms, vec, prompt, key in rows:
            i = self.end
            self.ids[i], self.created[i], self.vecs[i] = entry_id, created_ms, vec
            self.prompts.append(prompt)
            self.keys.append(key)
            self.end += 1

    def drop_through(self, floor: int) -> None:
        """Forget rows with id <= ``floor`` (evicted in Redis)."""
        self.floor = max(self.floor, floor)
        cut = int(np.searchsorted(self.ids[self.start:self.end], self.floor, side="right"))
        if cut:
            for entry_id in self.ids[self.start:self.start + cut].tolist():
                self.features.pop(entry_id, None)
                self.removed.discard(entry_id)
            self.start += cut


class SemanticIndex:
    """Per-scope semantic index over Redis (see the module docstring).

    ``redis``: a redis-py client (bytes responses). ``prefix``: key prefix. ``embedder``: has
    ``embed(text) -> ndarray`` and ``token_length(text) -> int`` (:class:`lib.cache.embedder.Embedder`, or
    a client of an embedding server); used only when ``lookup``/``add`` get no ``vector``. ``threshold``: minimum
    cosine similarity for a rewording (prompts with the same words need less: see :mod:`lib.cache.verify`).
    ``max_entries_per_scope``: cap per scope, oldest evicted first. ``ttl_s``: entry lifetime.
    ``local_max_rows``: vectors this process keeps in memory across scopes (least recently used scopes
    are dropped first). ``max_candidates``: how many of the closest entries the verification stage may
    examine. ``clock``: seconds since the epoch (``time.time``).
    """

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str,
        embedder: _Embedder | None,
        threshold: float,
        max_entries_per_scope: int = 10000,
        ttl_s: int,
        local_max_rows: int = 50000,
        max_candidates: int = 16,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if max_entries_per_scope < 1 or ttl_s < 1:
            raise ValueError("max_entries_per_scope and ttl_s must be positive")
        self.redis = redis
        self.prefix = prefix
        self.embedder = embedder
        self.threshold = float(threshold)
        self.max_entries = int(max_entries_per_scope)
        self.ttl_ms = int(ttl_s) * 1000
        self.local_max_rows = int(local_max_rows)
        self.max_candidates = int(max_candidates)
        self.clock = clock
        self._add_script = redis.register_script(_ADD_LUA)
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------- keys
    def keys_for(self, context_hash: str) -> tuple[str, str]:
        """The (state, entries) Redis keys of a scope; both carry the hash tag ``{context_hash}``."""
        base = f"{self.prefix}sem:{{{context_hash}}}:"
        return base + "state", base + "entries"

    # ------------------------------------------------------------------------------------ write
    def add(self, context_hash: str, prompt: str, payload_key: str, vector: np.ndarray | None = None) -> str | None:
        """Store ``prompt`` (answer at ``payload_key``) in the scope; return the entry id.

        Returns None, storing nothing, when no ``vector`` is given and the prompt is longer than the
        model reads. Raises ``redis.RedisError`` on Redis trouble, ``ValueError`` on a malformed vector.
        """
        vec = self._vector(prompt, vector)
        if vec is None:
            return None
        body = vec.tobytes() + json.dumps({"p": prompt, "k": payload_key}, ensure_ascii=False).encode()
        state, entries = self.keys_for(context_hash)
        now_ms = int(self.clock() * 1000)
        seq, _epoch = self._add_script(
            keys=[state, entries],
            args=[body, now_ms, self.ttl_ms, self.max_entries, uuid.uuid4().hex, max(16, self.max_entries)],
        )
        return str(int(seq))

    def remove(self, context_hash: str, entry_id: str) -> None:
        """Delete one entry (e.g. its payload has gone). Other processes drop it at their next reload.

        Raises ``redis.RedisError`` on Redis trouble.
        """
        _, entries = self.keys_for(context_hash)
        self.redis.hdel(entries, entry_id)
        with self._lock:
            scope = self._scopes.get(context_hash)
            if scope is not None:
                scope.removed.add(int(entry_id))

    # ------------------------------------------------------------------------------------- read
    def lookup(self, context_hash: str, prompt: str, vector: np.ndarray | None = None, *,
               strictness: str = STRICT) -> SemanticMatch | None:
        """Return the closest cached prompt of the scope that verification allows, or None (:meth:`search`)."""
        return self.search(context_hash, prompt, vector, strictness=strictness).match

    def search(self, context_hash: str, prompt: str, vector: np.ndarray | None = None, *,
               strictness: str = STRICT) -> SemanticSearch:
        """Return the closest cached prompt of the scope that verification allows, or why none was.

        ``strictness`` is ``"strict"`` (the default) or ``"balanced"`` (see :mod:`lib.cache.verify`). The
        result has no match and no veto when no cached prompt is similar enough to be a candidate, or when
        no ``vector`` is given and the prompt is longer than the model reads. One Redis round trip when the
        scope has not changed since this process last looked, two when it has. Raises ``redis.RedisError``
        on Redis trouble, ``ValueError`` on a malformed vector or an unknown ``strictness``.
        """
        if strictness not in POLICIES:
            raise ValueError(f"strictness must be one of {STRICTNESS}, not {strictness!r}")
        vec = self._vector(prompt, vector)
        if vec is None:
            return _NOTHING
        snap = self._sync(context_hash)
        if snap is None:
            return _NOTHING
        scope, start, end, vecs, ids, created, prompts, keys = snap
        if end == start:
            return _NOTHING
        sims = vecs[start:end] @ vec
        fresh = created[start:end] > int(self.clock() * 1000) - self.ttl_ms
        above = np.flatnonzero((sims >= candidate_floor(self.threshold, strictness)) & fresh)
        if above.size == 0:
            return _NOTHING
        if above.size > self.max_candidates:
            above = above[np.argpartition(-sims[above], self.max_candidates)[: self.max_candidates]]
        order = above[np.argsort(-sims[above], kind="stable")]
        new = prepare(prompt)
        first_veto: tuple[Verdict, float] | None = None
        examined = 0
        for row in order.tolist():
            entry_id = int(ids[start + row])
            if entry_id in scope.removed:
                continue
            examined += 1
            cached_prompt = prompts[start + row]
            prepared = scope.features.get(entry_id)
            if prepared is None:
                prepared = scope.features[entry_id] = prepare(cached_prompt)
            similarity = float(sims[row])
            verdict = verify(new, prepared, similarity, threshold=self.threshold, strictness=strictness)
            if verdict.ok:
                return SemanticSearch(SemanticMatch(str(entry_id), similarity, cached_prompt, keys[start + row]),
                                      candidates=examined)
            if first_veto is None:
                first_veto = (verdict, similarity)
        if first_veto is None:
            return _NOTHING
        verdict, similarity = first_veto
        return SemanticSearch(None, verdict.check, similarity, verdict.detail or None, examined)

    def explain(self, context_hash: str, prompt: str, vector: np.ndarray | None = None, *,
                strictness: str = STRICT) -> list[tuple[str, float, str | None]]:
        """For debugging: (cached prompt, similarity, refusal or None) of the closest entries, best first."""
        vec = self._vector(prompt, vector)
        if vec is None or (snap := self._sync(context_hash)) is None:
            return []
        _, start, end, vecs, _, _, prompts, _ = snap
        sims = vecs[start:end] @ vec
        new = prepare(prompt)
        return [(prompts[start + r], float(sims[r]), verify(new, prepare(prompts[start + r]), float(sims[r]),
                                                           threshold=self.threshold, strictness=strictness).check)
                for r in np.argsort(-sims)[: self.max_candidates].tolist()]

    # ---------------------------------------------------------------------------------- helpers
    def _vector(self, prompt: str, vector: np.ndarray | None) -> np.ndarray | None:
        if vector is None:
            if self.embedder is None:
                raise ValueError("no vector given and no embedder configured")
            fits = getattr(self.embedder, "fits", None)
            if not (fits(prompt) if fits else self.embedder.token_length(prompt) <= MAX_TOKENS):
                return None
            vector = self.embedder.embed(prompt)
        vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape != (DIM,):
            raise ValueError(f"expected a {DIM}-d vector, got shape {np.shape(vector)}")
        return vec

    def _sync(self, context_hash: str) -> tuple[Any, ...] | None:
        """Bring this process's copy of the scope up to date; return a consistent snapshot of it."""
        state_key, entries_key = self.keys_for(context_hash)
        raw_seq, raw_floor, epoch = self.redis.hmget(state_key, "seq", "floor", "epoch")
        if raw_seq is None or epoch is None:
            with self._lock:
                self._scopes.pop(context_hash, None)
            return None
        seq, floor = int(raw_seq), int(raw_floor or 0)
        with self._lock:
            scope = self._scopes.get(context_hash)
            if scope is not None:
                self._scopes.move_to_end(context_hash)
        if scope is None or scope.epoch != epoch or seq - scope.seq > self.max_entries or seq < scope.seq:
            scope = self._load_all(entries_key, epoch, seq, floor)
            with self._lock:
                self._scopes[context_hash] = scope
                self._scopes.move_to_end(context_hash)
                self._trim_locked()
        elif seq > scope.seq:
            first = max(scope.seq, floor) + 1
            wanted = list(range(first, seq + 1))
            values = self.redis.hmget(entries_key, wanted) if wanted else []
            rows = [r for r in (self._parse(i, v) for i, v in zip(wanted, values)) if r is not None]
            with self._lock:
                if seq > scope.seq:  # another thread may have done it meanwhile
                    rows = [r for r in rows if r[0] > scope.seq]
                    scope.drop_through(floor)
                    scope.append(rows)
                    scope.seq = seq
                self._trim_locked()
        with self._lock:
            if floor > scope.floor:
                scope.drop_through(floor)
            return (scope, scope.start, scope.end, scope.vecs, scope.ids, scope.created, scope.prompts, scope.keys)

    def _load_all(self, entries_key: str, epoch: bytes, seq: int, floor: int) -> _Scope:
        raw = self.redis.hgetall(entries_key)
        rows = sorted(r for r in (self._parse(int(k), v) for k, v in raw.items()) if r is not None and r[0] > floor)
        scope = _Scope(epoch=epoch, floor=floor)
        scope.append(rows)
        scope.seq = max([seq] + [r[0] for r in rows[-1:]])
        return scope

    @staticmethod
    def _parse(entry_id: int, value: bytes | None) -> tuple[int, int, np.ndarray, str, str] | None:
        if not value or len(value) < _HEAD + _VEC_BYTES:
            return None
        created = int(value[:_HEAD])
        vec = np.frombuffer(value, dtype=np.float32, count=DIM, offset=_HEAD)
        meta = json.loads(value[_HEAD + _VEC_BYTES:])
        return entry_id, created, vec, str(meta["p"]), str(meta["k"])

    def _trim_locked(self) -> None:
        total = sum(s.rows for s in self._scopes.values())
        while total > self.local_max_rows and len(self._scopes) > 1:
            _, dropped = self._scopes.popitem(last=False)
            total -= dropped.rows

    def cached_scopes(self) -> dict[str, int]:
        """Scopes this process holds in memory and their row counts (for metrics and tests)."""
        with self._lock:
            return {k: s.rows for k, s in self._scopes.items()}
