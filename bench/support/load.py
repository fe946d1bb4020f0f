"""The load generator of ``bench/gateway_bench.py``: HTTP/1.1 keep-alive on asyncio streams, no dependencies.

- ``closed(url, body, headers, connections, seconds)``: as many requests as the server takes (saturation);
- ``open_loop(url, body, headers, rate, seconds)``: requests at a fixed rate whatever the answers do
  (latency without coordinated omission);
- ``streams(url, body, headers, n)``: ``n`` streams opened at once (completed, time to first byte).

Each returns a dict of counts and latencies in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit


class Conn:
    """One keep-alive connection: ``request`` sends and reads a whole answer (Content-Length or chunked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Conn":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        return cls(reader, writer)

    async def request(self, raw: bytes, on_first_byte: Any = None) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
            if on_first_byte:
                on_first_byte()
        else:
            first = True
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if first and size and on_first_byte:
                    on_first_byte()
                    first = False
                if size == 0:
                    break
        return status

    def close(self) -> None:
        self.writer.close()


def raw_request(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in headers.items())]
    return parts.hostname or "127.0.0.1", parts.port or 80, ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def closed(url: str, body: dict[str, Any], headers: dict[str, str], connections: int, seconds: float) -> dict:
    host, port, raw = raw_request(url, body, headers)
    done: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = await Conn.open(host, port)
        try:
            while time.perf_counter() < end:
                t = time.perf_counter()
                try:
                    status = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    conn.close()
                    conn = await Conn.open(host, port)
                    continue
                if status != 200:
                    errors += 1
                done.append((time.perf_counter() - t) * 1000)
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    took = time.perf_counter() - start
    return {"requests": len(done), "rps": len(done) / took, "errors": errors, "p50_ms": pct(done, 50),
            "p99_ms": pct(done, 99)}


async def open_loop(url: str, body: dict[str, Any], headers: dict[str, str], rate: float, seconds: float) -> dict:
    host, port, raw = raw_request(url, body, headers)
    idle: list[Conn] = []
    latencies: list[float] = []
    errors = 0

    async def one(due: float) -> None:
        nonlocal errors
        conn = idle.pop() if idle else await Conn.open(host, port)
        try:
            status = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            conn.close()
            return
        latencies.append((time.perf_counter() - due) * 1000)  # from when it was due: no coordinated omission
        if status != 200:
            errors += 1
        idle.append(conn)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.close()
    return {"requests": len(latencies), "errors": errors, "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99)}


async def streams(url: str, body: dict[str, Any], headers: dict[str, str], n: int, timeout: float = 60) -> dict:
    host, port, raw = raw_request(url, {**body, "stream": True}, headers)
    ttfb: list[float] = []
    completed = 0

    async def one() -> None:
        nonlocal completed
        t = time.perf_counter()
        try:
            conn = await Conn.open(host, port)
            status = await asyncio.wait_for(conn.request(raw, lambda: ttfb.append((time.perf_counter() - t) * 1000)),
                                            timeout)
            conn.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            return
        completed += status == 200

    await asyncio.gather(*(one() for _ in range(n)))
    return {"streams": n, "completed": completed, "ttfb_p50_ms": pct(ttfb, 50), "ttfb_p99_ms": pct(ttfb, 99)}
