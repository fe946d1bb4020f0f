"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), encoding side, for the fakes.

One message::

    prelude:  total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes (uint32)
    headers:  name length (uint8) | name | value type (uint8, 7 = string) | value length (uint16) | value ...
    payload:  bytes (JSON for Bedrock's events)
    trailer:  CRC32 of everything before it (uint32)

All integers big-endian; the CRC is the ordinary CRC-32 (``zlib.crc32``), as botocore's decoder
(``botocore/eventstream.py``) checks it. botocore ships only the decoder, so the fake writes its own encoder.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

_STRING = 7


def encode(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string ``headers`` and ``payload``."""
    head = b"".join(
        struct.pack(">B", len(name.encode())) + name.encode() + struct.pack(">BH", _STRING, len(value.encode()))
        + value.encode() for name, value in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, data: dict[str, Any]) -> bytes:
    """A Bedrock stream event (``:message-type: event``) of type ``kind`` with a JSON payload."""
    return encode({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                  json.dumps(data, separators=(",", ":")).encode())


def exception(kind: str, message: str) -> bytes:
    """A modelled exception inside a stream (``:message-type: exception``; ``kind`` in lowerCamel, as the
    stream's union names it: ``throttlingException``)."""
    return encode({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                  json.dumps({"message": message}).encode())


def decode(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """``(headers, payload)`` of each message in ``data`` (checks both CRCs); for the fakes' own tests."""
    out = []
    while data:
        total, head_len = struct.unpack(">II", data[:8])
        assert struct.unpack(">I", data[8:12])[0] == zlib.crc32(data[:8]), "prelude CRC"
        assert struct.unpack(">I", data[total - 4:total])[0] == zlib.crc32(data[:total - 4]), "message CRC"
        head, at, headers = data[12:12 + head_len], 0, {}
        while at < len(head):
            n = head[at]
            name = head[at + 1:at + 1 + n].decode()
            at += 1 + n
            _, size = struct.unpack(">BH", head[at:at + 3])
            headers[name] = head[at + 3:at + 3 + size].decode()
            at += 3 + size
        out.append((headers, data[12 + head_len:total - 4]))
        data = data[total:]
    return out
