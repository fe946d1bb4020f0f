"""Gateway keys: issue, store (hashed), authenticate, authorize, change and revoke.

A key looks like ``sk-aip-<id>-<secret>``: 16 hex characters of id, then 43 URL-safe random characters
(256 bits). Only ``sha256(key)`` is stored, in one Redis hash per key (``{prefix}key:{<id>}``), so
authentication is one HGETALL plus a constant-time digest comparison. A fast hash is enough because the
secret is 256 random bits (nothing to brute-force, unlike a password); it keeps auth off the CPU.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

from lib import errors
from lib.protocols import parse_model
from lib.keys.record import (ID_LEN, KEY_PREFIX, KeyCreate, KeyPatch, KeyRecord, _CODECS, _epoch, _iso,
                             hash_key, parse_key_id)
from lib.store import store_errors

if TYPE_CHECKING:
    import redis

log = logging.getLogger("aiproxy.keys")
_UNREACHABLE = "The key store is unreachable; try again shortly."



class KeyChanged(Exception):
    """A key record a worker holds is older than Redis' (its generation moved): re-read it and start over.
    Internal: the gateway catches it; it never reaches a client."""


class KeyStore:
    """Gateway keys in Redis (see module docstring). Redis errors surface as ``StoreUnavailable`` (503).

    Every change (``update``, ``revoke``) bumps the record's generation ``gen`` in the same atomic write. A
    worker may authenticate from a record it already holds only if it then confirms that generation in the
    request's own round trip (the rate-limit script does, see ``lib.limits``); a moved generation raises
    ``KeyChanged`` and the record is re-read, so revoking, deactivating, expiring or lowering a limit takes
    effect on the next request on every worker and instance. The memory is otherwise only a fail-open
    fallback: while Redis is unreachable a record confirmed within ``stale_for_s`` seconds (the setting
    ``KEY_CACHE_SECONDS``) is still accepted, loudly.
    """

    def __init__(self, redis_client: redis.Redis, *, prefix: str, clock: Callable[[], float] = time.time,
                 serve_stale_on_outage: bool = False, stale_for_s: float = 2.0,
                 on_stale: Callable[[], None] | None = None) -> None:
        self._r = redis_client
        self._prefix = prefix
        self._clock = clock
        self._serve_stale = serve_stale_on_outage
        self._stale_for_s = stale_for_s
        self._on_stale = on_stale
        self._memory: "OrderedDict[str, tuple[float, KeyRecord]]" = OrderedDict()  # id -> (confirmed at, record)
        self._had_keys = False  # this process has seen the sentinel: Redis held keys while it ran
        self._lost_logged_at = 0.0

    def key_name(self, key_id: str) -> str:
        """The Redis key of ``key_id``'s record (hash tag ``{key_id}``, the slot of its limits)."""
        return f"{self._prefix}key:{{{key_id}}}"

    _k = key_name

    @property
    def _index(self) -> str:
        return f"{self._prefix}keys"

    @property
    def _sentinel(self) -> str:
        return f"{self._prefix}keys:sentinel"

    # -- a Redis that lost its data ----------------------------------------------------------------------
    # The sentinel is written with the first key and never removed. A process that has seen it and then finds
    # it gone knows Redis was emptied (a node replaced without persistence, a FLUSHALL): it says so loudly and
    # answers 503 rather than calling every key invalid (and throttling everyone for it). A process started
    # after the loss cannot tell an emptied Redis from a new deployment; the operator's alarms can.
    def observe(self) -> None:
        """At start-up: remember whether Redis holds keys (and write the sentinel for keys made before it
        existed). Never raises: an unreachable Redis is looked at again later."""
        try:
            with store_errors("key sentinel", _UNREACHABLE):
                if self._r.exists(self._sentinel) or (self._r.scard(self._index) and self._r.set(self._sentinel, "1")):
                    self._had_keys = True
        except errors.StoreUnavailable:
            pass

    def _unknown_key(self) -> None:
        """A well-formed key id is not in Redis: fine, unless Redis has lost every key (then 503, not 401)."""
        if self.store_lost():
            raise errors.StoreUnavailable(
                "The gateway's state store has lost its data (Redis was emptied): keys cannot be checked until "
                "an operator restores it.", code="state_store_lost")

    def store_lost(self) -> bool:
        """True when Redis has lost the keys this process saw (see above). One read; never raises."""
        try:
            with store_errors("key sentinel", _UNREACHABLE):
                present = bool(self._r.exists(self._sentinel))
        except errors.StoreUnavailable:
            return False
        if present:
            self._had_keys = True
            return False
        if self._had_keys and self._clock() - self._lost_logged_at > 60:
            self._lost_logged_at = self._clock()
            log.critical("Redis has lost its data: the gateway keys this process saw are gone (the node was "
                         "replaced or emptied without persistence). Restore it from a snapshot (cicd/README.md, "
                         "'Restoring Redis'); until then requests with gateway keys get 503 state_store_lost.")
        return self._had_keys

    def create(self, data: Any) -> tuple[KeyRecord, str]:
        """Issue a key from a ``POST /admin/keys`` body. Returns ``(record, plain_key)``; the plain key is
        not stored anywhere. Raises ``InvalidRequest`` for a bad body, ``ServiceUnavailable`` on Redis errors."""
        spec = parse_model(KeyCreate, data)
        assert isinstance(spec, KeyCreate)
        key_id = secrets.token_hex(ID_LEN // 2)
        plain = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        expires = _epoch(spec.expires_at)
        record = KeyRecord(
            id=key_id, key_hash=hash_key(plain), user_id=spec.user_id, name=spec.name, models=spec.models,
            rpm=spec.rpm, tpm=spec.tpm, budget_usd=spec.budget_usd, budget_period=spec.budget_period or "total",
            expires_at=expires, created_at=self._clock(),
            cache=True if spec.cache is None else spec.cache, cache_scope=spec.cache_scope or "user",
            cache_strictness=spec.cache_strictness or "strict",
            metadata=spec.metadata or {}, key_hint=f"{plain[:len(KEY_PREFIX) + 6]}...{plain[-4:]}",
        )
        with store_errors("key create", _UNREACHABLE):
            pipe = self._r.pipeline(transaction=False)
            pipe.hset(self._k(key_id), mapping=record.to_redis())
            pipe.sadd(self._index, key_id)
            pipe.set(self._sentinel, "1")  # also how an operator re-arms a Redis that lost its data
            pipe.execute()
        self._had_keys = True
        return record, plain

    def get(self, key_id: str) -> KeyRecord | None:
        """The stored record for ``key_id``, or None."""
        if not key_id or len(key_id) > 64:
            return None
        with store_errors("key read", _UNREACHABLE):
            raw = self._r.hgetall(self._k(key_id))
        return KeyRecord.from_redis(raw) if raw else None

    def require(self, key_id: str) -> KeyRecord:
        """Like ``get`` but raises ``NotFound`` (404, code ``key_not_found``)."""
        record = self.get(key_id)
        if record is None:
            raise errors.NotFound(f"No key with id '{key_id}'.", code="key_not_found")
        return record

    def list(self) -> list[KeyRecord]:
        """Every key, newest first."""
        with store_errors("key list", _UNREACHABLE):
            ids = sorted(i.decode() for i in self._r.smembers(self._index))
            pipe = self._r.pipeline(transaction=False)
            for kid in ids:
                pipe.hgetall(self._k(kid))
            raws = pipe.execute()
        records = [KeyRecord.from_redis(raw) for raw in raws if raw]
        return sorted(records, key=lambda r: -r.created_at)

    def update(self, key_id: str, data: Any) -> KeyRecord:
        """Apply a ``PATCH /admin/keys/<id>`` body and return the new record. Raises ``NotFound``/``InvalidRequest``."""
        patch = parse_model(KeyPatch, data)
        record = self.require(key_id)
        if record.revoked_at is not None:
            raise errors.InvalidValue("This key has been revoked and cannot be changed.", code="key_revoked")
        fields = patch.model_dump(exclude_unset=True)
        for name, value in fields.items():
            if name == "expires_at":
                value = _epoch(value)
            elif name in ("budget_period", "cache_scope", "cache_strictness") and value is None:
                continue
            elif name in ("active", "cache") and value is None:
                continue
            elif name == "metadata" and value is None:
                value = {}
            setattr(record, name, value)
        record.gen = self._write(key_id, record.to_redis(tuple(n for n in _CODECS if n != "gen")), "key update")
        return record

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key for good (it stays listed, marked revoked, so its usage keeps an owner)."""
        record = self.require(key_id)
        if record.revoked_at is None:
            record.revoked_at = self._clock()
            record.active = False
            record.gen = self._write(key_id, record.to_redis(("revoked_at", "active")), "key revoke")
        return record

    def _write(self, key_id: str, fields: dict[str, str], what: str) -> int:
        """Write ``fields`` and bump the generation in one transaction; returns the new generation."""
        with store_errors(what, _UNREACHABLE):
            pipe = self._r.pipeline(transaction=True)
            pipe.hset(self._k(key_id), mapping=fields)
            pipe.hincrby(self._k(key_id), "gen", 1)
            _, gen = pipe.execute()
        self._memory.pop(key_id, None)
        return int(gen)

    # -- the hot path ------------------------------------------------------------------------------------
    def _remember(self, record: KeyRecord) -> None:
        self._memory[record.id] = (self._clock(), record)
        self._memory.move_to_end(record.id)
        while len(self._memory) > 10_000:
            self._memory.popitem(last=False)

    def confirmed(self, record: KeyRecord) -> None:
        """Note that Redis just confirmed ``record``'s generation (the fail-open window starts again)."""
        self._remember(record)

    def forget(self, key_id: str) -> None:
        """Drop this process's copy of a key."""
        self._memory.pop(key_id, None)

    def stale_ok(self, record: KeyRecord) -> bool:
        """While Redis is unreachable: may ``record`` still be trusted (fail-open, confirmed recently)? Says
        so loudly and counts it when yes."""
        entry = self._memory.get(record.id)
        if not self._serve_stale or entry is None or self._clock() - entry[0] > self._stale_for_s:
            return False
        log.error("key store unreachable; accepting key %s from memory (fail-open, confirmed %.1fs ago)",
                  record.id, self._clock() - entry[0])
        if self._on_stale is not None:
            self._on_stale()
        return True

    def authenticate(self, presented: str | None, *, confirm_later: bool = False) -> KeyRecord:
        """The active, unexpired key record for a presented key.

        ``confirm_later``: the caller will confirm the record's generation in a round trip of its own (the
        request pipeline's rate-limit script), so a copy this worker holds is returned without reading Redis;
        the caller must then call ``confirmed`` or, on ``KeyChanged``, ``refresh``. Otherwise the record is read.

        Raises ``AuthenticationError`` (401 ``missing_api_key`` / ``invalid_api_key``; revoked keys are
        invalid), ``KeyInactive`` or ``KeyExpired`` (403), ``StoreUnavailable`` (503) on Redis errors when no
        copy may stand in.
        """
        if not presented:
            raise errors.AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key")
        key_id = parse_key_id(presented)
        entry = self._memory.get(key_id) if key_id and confirm_later else None
        record = entry[1] if entry is not None else None
        if record is None and key_id:
            try:
                record = self.get(key_id)
            except errors.StoreUnavailable:
                held = self._memory.get(key_id)
                if held is None or not self.stale_ok(held[1]):
                    raise
                record = held[1]
            else:
                if record is not None:
                    self._remember(record)
        if record is None and key_id:
            self._unknown_key()
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(presented)):
            raise errors.AuthenticationError(
                f"Incorrect API key provided: {_mask(presented)}.", code="invalid_api_key")
        if entry is not None:
            try:
                return self.check(record)
            except errors.GatewayError:
                return self.refresh(record)  # a copy may only say yes on its own; a refusal is checked in Redis
        return self.check(record)

    def refresh(self, record: KeyRecord) -> KeyRecord:
        """Re-read a record whose generation moved (``KeyChanged``) and check it again. Raises as
        ``authenticate`` (a deleted record is ``invalid_api_key``)."""
        fresh = self.get(record.id)
        if fresh is None:
            self.forget(record.id)
            self._unknown_key()
        if fresh is None or fresh.key_hash != record.key_hash:
            raise errors.AuthenticationError("This API key is no longer valid.", code="invalid_api_key")
        self._remember(fresh)
        return self.check(fresh)

    def check(self, record: KeyRecord) -> KeyRecord:
        """``record`` when it may be used now; raises 401 for a revoked key, ``KeyInactive``, ``KeyExpired``."""
        if record.revoked_at is not None:
            raise errors.AuthenticationError("This API key has been revoked.", code="invalid_api_key")
        if not record.active:
            raise errors.KeyInactive("This API key is inactive. Ask your gateway admin to re-activate it.")
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise errors.KeyExpired(f"This API key expired at {_iso(record.expires_at)}.")
        return record


def _mask(key: str) -> str:
    """A masked form of a presented key, safe to echo (OpenAI shows the first and last few characters)."""
    if len(key) <= 10:
        return "*" * len(key)
    return f"{key[:6]}{'*' * 8}{key[-4:]}"
