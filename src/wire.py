"""One send per small answer: gunicorn's HTTP/1 response writer with the head and body coalesced.

gunicorn writes a response's head (status line and headers) with one ``sendall`` and each body item with
another. For a JSON answer of known length — nearly every non-streamed request — that is two syscalls and,
with ``TCP_NODELAY`` (gunicorn sets it on its listeners), two TCP segments where one would do. Here the head
is held back and sent with the first body bytes when the answer is not chunked and that first item is at
most ``COALESCE_MAX_BYTES``; everything else (streams, files, no-body answers, large bodies) is gunicorn's
own path. ``install()`` makes it the class gunicorn's async workers build responses with (``wsgi.create``
reads the module's ``Response`` when no class is passed); HTTP/2 keeps its own writer.

Written here rather than taken from a library: no gunicorn option does this, and the change is the two
methods below.
"""

from __future__ import annotations

from typing import Any

from gunicorn import util
from gunicorn.http import wsgi

#: A first body item larger than this is sent after the head as gunicorn does (joining would copy it).
COALESCE_MAX_BYTES = 256 * 1024


class CoalescedResponse(wsgi.Response):
    """gunicorn's ``Response``; the head of a small answer of known length leaves with its body."""

    _pending_head: bytes | None = None

    def write(self, arg: Any) -> None:
        if (self.headers_sent or self.chunked or self._omits_body or not isinstance(arg, bytes) or not arg
                or len(arg) > COALESCE_MAX_BYTES):
            super().write(arg)
            return
        tosend = self.default_headers()
        tosend.extend(["%s: %s\r\n" % (k, v) for k, v in self.headers])
        self._pending_head = util.to_bytestring("%s\r\n" % "".join(tosend), "latin-1")
        self.headers_sent = True
        try:
            super().write(arg)  # -> _emit_body, which sends the head with the body
        finally:
            if self._pending_head is not None:  # nothing of the body was to be sent (Content-Length reached)
                head, self._pending_head = self._pending_head, None
                util.write(self.sock, head)

    def _emit_body(self, data: bytes) -> None:
        head, self._pending_head = self._pending_head, None
        if head is not None:
            data = head + data
        util.write(self.sock, data, self.chunked)


def install() -> None:
    """Make ``CoalescedResponse`` the writer of this process's HTTP/1 responses (idempotent)."""
    wsgi.Response = CoalescedResponse  # type: ignore[misc]
