"""The spool: outcomes that could not reach Redis, kept in a bounded local file and replayed when it answers.

While Redis is unreachable a request may still be served (fail-open) or finish (it was in flight when Redis
went away). What it leaves behind — its request-log record, the settlement of its budget hold, the charge
of a request served without a hold — is appended here as one JSON line, and a background loop in each
worker replays the lines in order once Redis answers again. Every kind of line is idempotent in Redis (a
record is written with ``SET NX`` under its ``proxy_id``, a hold settles once, a charge is keyed by its
request id), so a replay interrupted half-way and run again applies each outcome exactly once; usage then
equals the logs again.

Files: ``<dir>/spool-<pid>.jsonl``, one per process. A worker replays its own file and those of processes
that are gone (a restarted worker's), claiming each by an atomic rename first. ``dir`` is private to one
Redis and prefix (``spool_dir_for``), so two gateways on one machine never replay into each other's Redis.
The total is bounded by ``max_bytes``: past it an outcome is dropped with an ERROR log (the billing line on
stdout still has it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from lib.errors import StoreUnavailable

log = logging.getLogger("aiproxy.spool")


def spool_dir_for(redis_url: str, prefix: str, base: str | None = None) -> str:
    """The spool directory of one Redis (host, port, db — never its password) and key prefix."""
    where = redis_url.rpartition("@")[2]
    digest = hashlib.sha256(f"{where}|{prefix}".encode()).hexdigest()[:16]
    return os.path.join(base or tempfile.gettempdir(), "aiproxy-spool", digest)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """A bounded append-only file of outcomes, replayed in order (see the module docstring)."""

    def __init__(self, directory: str, *, max_bytes: int = 64 * 1024 * 1024, interval_s: float = 1.0,
                 on_dropped: Callable[[str], None] | None = None) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.interval_s = interval_s
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._on_dropped = on_dropped
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def resume(self) -> None:
        """At start-up: replay in the background what earlier processes left, if anything."""
        if self.dir.is_dir() and any(self.dir.iterdir()):
            self.start()

    @property
    def file(self) -> Path:
        return self.dir / f"spool-{os.getpid()}.jsonl"  # read per call: a forked worker writes its own

    def size(self) -> int:
        """Bytes waiting in every file of this directory."""
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file()) if self.dir.is_dir() else 0

    def add(self, kind: str, payload: dict[str, Any]) -> bool:
        """Append one outcome; ``False`` (logged, counted) when the spool is full or the disk refuses it."""
        line = orjson.dumps({"kind": kind, "at": time.time(), "payload": payload}, default=str) + b"\n"
        with self._lock:
            try:
                if self.size() + len(line) > self.max_bytes:
                    raise OSError("spool full")
                self.dir.mkdir(parents=True, exist_ok=True)
                with open(self.file, "ab") as out:
                    out.write(line)
            except OSError as exc:
                log.error("could not spool a %s outcome (%s): it is only in the billing line on stdout", kind, exc)
                if self._on_dropped is not None:
                    self._on_dropped(kind)
                return False
        self.start()
        return True

    def _claim(self) -> list[Path]:
        """This process's files and those of processes that are gone (``spool-<pid>…`` and unfinished
        ``replay-<pid>-…``), renamed to ``replay-<this pid>-…`` first, so no one else replays them too."""
        me = os.getpid()
        claimed = []
        for path in sorted(self.dir.iterdir()):
            kind, _, rest = path.name.partition("-")
            owner = rest.split("-")[0].split(".")[0]
            if kind not in ("spool", "replay") or not owner.isdigit():
                continue
            if int(owner) == me and kind == "replay":
                claimed.append(path)  # left by an earlier, interrupted replay of this process
                continue
            if int(owner) != me and _alive(int(owner)):
                continue
            target = path.with_name(f"replay-{me}-{time.monotonic_ns()}-{path.name}")
            try:
                path.rename(target)
            except OSError:
                continue  # another worker claimed it first
            claimed.append(target)
        return sorted(claimed)

    def replay(self, handlers: dict[str, Callable[[dict[str, Any]], None]] | None = None) -> int:
        """Apply the spooled outcomes in order with ``handlers[kind](payload)`` (default ``self.handlers``).
        Stops at the first ``StoreUnavailable`` (the rest waits for the next try). Returns how many were
        applied."""
        handlers = handlers or self.handlers
        applied = 0
        if not self.dir.is_dir():
            return 0
        with self._lock:
            files = self._claim()
        for path in files:
            lines = path.read_bytes().splitlines()
            for i, line in enumerate(lines):
                try:
                    entry = orjson.loads(line)
                    handler = handlers[entry["kind"]]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.error("dropping an unreadable spool line in %s", path.name)
                    continue
                try:
                    handler(entry["payload"])
                except StoreUnavailable:
                    path.write_bytes(b"".join(x + b"\n" for x in lines[i:]))
                    return applied
                except Exception:  # noqa: BLE001 - one bad outcome must not block the rest
                    log.exception("replaying a spooled %s outcome failed; dropped", entry["kind"])
                    continue
                applied += 1
            path.unlink(missing_ok=True)
        if applied:
            log.warning("replayed %d outcome(s) spooled while Redis was unreachable", applied)
        return applied

    def start(self) -> None:
        """Replay in a background thread (a greenlet under gevent) every ``interval_s`` while files wait."""
        if self._thread is not None and self._thread.is_alive():
            return

        def loop() -> None:
            while True:
                time.sleep(self.interval_s)
                try:
                    if self.dir.is_dir() and any(self.dir.iterdir()):
                        self.replay()
                except Exception:  # noqa: BLE001 - the loop must survive anything
                    log.exception("spool replay failed")

        self._thread = threading.Thread(target=loop, name="aiproxy-spool", daemon=True)
        self._thread.start()
