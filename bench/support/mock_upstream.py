"""A fast mock OpenAI upstream for ``bench/gateway_bench.py``: HTTP/1.1 keep-alive on raw asyncio protocols.

``POST .../chat/completions`` answers a ``chat.completion`` with usage (after ``--latency-ms`` when the model
name contains ``slow``: one upstream serves both the saturation and the latency scenarios), or, with
``"stream": true``, ``--chunks`` SSE chunks ``--chunk-delay-ms`` apart and a usage chunk. Request bodies
must carry a Content-Length (what the gateway and the bench's client send). Not a test fake: it checks
nothing, it only has to cost the upstream side as little as possible.

    python bench/support/mock_upstream.py --port 19100 [--latency-ms 50] [--chunks 20] [--chunk-delay-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

_ids = itertools.count(1)


def _head(length: int | None, ctype: str = "application/json") -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n{framing}\r\nConnection: keep-alive\r\n\r\n".encode()


def _completion(model: str) -> bytes:
    return json.dumps({
        "id": f"chatcmpl-bench{next(_ids)}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock upstream.",
                                             "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    }).encode()


def _frame(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream(asyncio.Protocol):
    latency = 0.0
    chunks = 20
    chunk_delay = 0.05

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.transport is None:
            return
        head = self.buf[:end].decode("latin-1").lower()
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip() == "content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return
        body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
        self.busy = True
        asyncio.get_running_loop().create_task(self._answer(body))

    async def _answer(self, raw: bytes) -> None:
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        model = request.get("model") or "gpt-4o-mini"
        if self.latency and "slow" in model:
            await asyncio.sleep(self.latency)
        if self.transport is None:
            return
        if not request.get("stream"):
            body = _completion(model)
            self.transport.write(_head(len(body)) + body)
        else:
            base = {"id": f"chatcmpl-bench{next(_ids)}", "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model}
            self.transport.write(_head(None, "text/event-stream") + _frame(
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}))
            for i in range(self.chunks):
                await asyncio.sleep(self.chunk_delay)
                if self.transport is None:
                    return
                self.transport.write(_frame({**base, "choices": [{"index": 0, "delta": {"content": f"tok{i} "},
                                                                  "finish_reason": None}]}))
            tail = _frame({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            tail += _frame({**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": self.chunks,
                                                             "total_tokens": 12 + self.chunks}})
            data = b"data: [DONE]\n\n"
            self.transport.write(tail + b"%x\r\n%s\r\n" % (len(data), data) + b"0\r\n\r\n")
        self.busy = False
        self._next()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--chunk-delay-ms", type=float, default=50)
    args = ap.parse_args()
    Upstream.latency, Upstream.chunks, Upstream.chunk_delay = args.latency_ms / 1000, args.chunks, args.chunk_delay_ms / 1000

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", args.port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
