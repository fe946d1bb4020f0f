"""Honeybadger gets unhandled exceptions and ERROR logs (sent to a local fake endpoint), and the client
still gets the OpenAI envelope, never a stack trace."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.api.conftest import assert_error, chat_body


@pytest.fixture
def honeybadger_sink():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"path": self.path, "key": self.headers.get("X-API-Key"), "json": json.loads(body)})
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": "x"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h).__name__ == "HoneybadgerHandler":
            root.removeHandler(h)


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_unhandled_exception_reported_and_enveloped(make_settings, honeybadger_sink, monkeypatch):
    from src.app import create_app

    url, received = honeybadger_sink
    app = create_app(make_settings(HONEYBADGER_API_KEY="hb-test-key", HONEYBADGER_ENDPOINT=url))
    client = app.test_client()
    from tests.api.conftest import MASTER

    key = client.post("/admin/keys", json={"user_id": "u"}, headers={"Authorization": f"Bearer {MASTER}"}).get_json()["key"]
    gateway = app.extensions["aiproxy"].gateway

    def boom(*a, **k):
        raise RuntimeError("unexpected failure inside the gateway")

    monkeypatch.setattr(gateway, "complete", boom)
    resp = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"})
    err = assert_error(resp, 500, "internal_error", "server_error")
    assert "unexpected failure" not in err["message"]
    assert wait_for(lambda: any(r["json"].get("error", {}).get("class") == "RuntimeError" for r in received))
    assert all(r["key"] == "hb-test-key" for r in received)
    assert key not in json.dumps(received)
