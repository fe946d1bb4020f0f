"""Request logs listed newest first, filtered, with cursor paging (``GET /api/logs``, ``GET /admin/logs``).

Every record is also indexed by time: per key in ``logs:{K}`` (written with the log, in its atomic step) and
across keys in ``logs:all`` (the admin view). A page walks an index from the cursor down, fetches the
records in pipelined batches and keeps the ones that match, so one call reads at most ``MAX_SCAN`` index
entries; when it stops early the returned cursor continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from lib import errors
from lib.records.requestlog import CACHE_STATES, RequestRecord
from lib.records.usage import text
from lib.store import store_errors

if TYPE_CHECKING:
    from lib.records.usage import UsageStore

MAX_LIMIT = 200
MAX_SCAN = 5000
_BATCH = 200
STATUS_CLASSES = {"2xx": (200, 299), "3xx": (300, 399), "4xx": (400, 499), "5xx": (500, 599), "error": (400, 599)}


def _epoch(name: str, value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise errors.InvalidValue(f"'{name}' must be an ISO 8601 time or epoch seconds.", param=name) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass(frozen=True)
class LogFilter:
    """Which records a page keeps. ``model`` matches the name asked for or the one that answered; ``status``
    is an exact code or a class (``2xx``, ``4xx``, ``5xx``, ``error``)."""

    model: str | None = None
    provider: str | None = None
    status: str | None = None
    cache: str | None = None
    user_id: str | None = None
    since: float | None = None
    until: float | None = None

    @classmethod
    def from_query(cls, args: Any) -> "LogFilter":
        """From query parameters. Raises ``InvalidValue`` (400) naming a bad one."""
        status = args.get("status") or None
        if status and status not in STATUS_CLASSES and not (status.isdigit() and len(status) == 3):
            raise errors.InvalidValue("'status' must be a code (e.g. 429) or one of 2xx, 3xx, 4xx, 5xx, error.",
                                      param="status")
        cache = args.get("cache") or None
        if cache and cache not in (*CACHE_STATES, "hit"):
            raise errors.InvalidValue(f"'cache' must be one of hit, {', '.join(CACHE_STATES)}.", param="cache")
        return cls(model=args.get("model") or None, provider=args.get("provider") or None, status=status,
                   cache=cache, user_id=args.get("user_id") or None, since=_epoch("since", args.get("since")),
                   until=_epoch("until", args.get("until")))

    def keeps(self, rec: RequestRecord) -> bool:
        if self.model and self.model not in (rec.requested_model, rec.model):
            return False
        if self.provider and rec.provider != self.provider:
            return False
        if self.user_id and rec.user_id != self.user_id:
            return False
        if self.cache and not (rec.cache == self.cache or (self.cache == "hit" and (rec.cache or "").startswith("hit"))):
            return False
        if self.status:
            low, high = STATUS_CLASSES[self.status] if self.status in STATUS_CLASSES else (int(self.status),) * 2
            if not low <= rec.status <= high:
                return False
        return True


def _cursor(score: int, member: str) -> str:
    return f"{score}:{member}"


def _parse_cursor(cursor: str | None) -> tuple[int | None, str | None]:
    if not cursor:
        return None, None
    score, _, member = cursor.partition(":")
    if not score.isdigit() or not member:
        raise errors.InvalidValue("'cursor' is not one this endpoint gave out.", param="cursor")
    return int(score), member


def list_logs(store: UsageStore, *, key_id: str | None, where: LogFilter, limit: int = 50,
              cursor: str | None = None) -> tuple[list[RequestRecord], str | None]:
    """A page of records, newest first: ``key_id``'s (``None`` = every key, for the master). Returns the
    records and the cursor of the next page (``None`` at the end). Raises ``InvalidValue`` for a bad limit or
    cursor, ``StoreUnavailable`` when Redis fails."""
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidValue(f"'limit' must be between 1 and {MAX_LIMIT}.", param="limit")
    index = store.list_key(key_id) if key_id else store.all_key
    top, after = _parse_cursor(cursor)
    high = "+inf" if top is None else top
    low = "-inf" if where.since is None else int(where.since * 1000)
    if where.until is not None and top is None:
        high = int(where.until * 1000)
    found: list[RequestRecord] = []
    scanned, offset = 0, 0
    with store_errors("log list", "The request log store is unavailable"):
        while scanned < MAX_SCAN:
            rows = store.redis.zrevrangebyscore(index, high, low, start=offset, num=_BATCH, withscores=True)
            if not rows:
                return found, None
            offset += len(rows)
            entries = [(text(m), int(score)) for m, score in rows]
            if after is not None:  # skip up to and including the cursor's entry (ties share a score)
                seen = [i for i, (m, _) in enumerate(entries) if m == after]
                if seen:
                    entries, after = entries[seen[0] + 1:], None
                elif entries and entries[-1][1] == top:
                    continue
                else:
                    after = None
            pipe = store.redis.pipeline(transaction=False)
            owners = []
            for member, _ in entries:
                kid, pid = (key_id, member) if key_id else member.split("|", 1)
                owners.append(kid)
                pipe.get(store.log_key(kid, pid))
            for (member, score), raw in zip(entries, pipe.execute()):
                scanned += 1
                if raw is None:
                    continue  # expired between the index and the log
                try:
                    rec = RequestRecord.from_json(raw)
                except ValueError:
                    continue
                if where.keeps(rec):
                    found.append(rec)
                    if len(found) == limit:
                        return found, _cursor(score, member)
            if len(rows) < _BATCH:
                return found, None
    last_member, last_score = entries[-1] if entries else (after or "", top or 0)
    return found, _cursor(last_score, last_member)
