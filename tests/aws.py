"""moto in server mode (a real HTTP endpoint on 127.0.0.1, a separate process) for the AWS-facing tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REGION = "eu-west-1"
FAKE_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server(log_dir: Path, *, unauthenticated_actions: int | None = None) -> Iterator[str]:
    """Run ``python -m moto.server`` on a free loopback port and yield its URL.

    ``unauthenticated_actions``: moto's ``INITIAL_NO_AUTH_ACTION_COUNT`` — after that many requests, moto
    checks every request's IAM credentials and policies, so a role without a permission gets AccessDenied.
    """
    port = _free_port()
    env = dict(os.environ)
    if unauthenticated_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(unauthenticated_actions)
    log_file = log_dir / f"moto-{port}.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start: {log_file.read_text()[-2000:]}")
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
