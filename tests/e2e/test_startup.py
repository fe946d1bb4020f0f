"""Start-up through bin/start.sh: production refuses to run misconfigured, with a clear message."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def start(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PORT": "1", "SEMANTIC_CACHE": "false"}
    return subprocess.run([str(ROOT / "bin" / "start.sh")], env={**base, **env}, capture_output=True, text=True,
                          timeout=60, cwd="/")


@pytest.mark.parametrize("env,expected", [
    ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, "AIPROXY_MASTER_KEY is required in production"),
    ({"REDIS_URL": "redis://127.0.0.1:6379/0", "AIPROXY_MASTER_KEY": "changeme"}, "too weak for production"),
    ({"AIPROXY_MASTER_KEY": "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a"}, "REDIS_URL is required in production"),
    ({"REDIS_URL": "redis://127.0.0.1:6379/0", "AIPROXY_MASTER_KEY": "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a",
      "REQUEST_TIMEOUT": "soon"}, "REQUEST_TIMEOUT"),
])
def test_production_refuses_bad_configuration(env, expected):
    result = start({"ENVIRONMENT": "production", **env})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "AI Proxy cannot start" in output and expected in output
    assert "Zq8-vN3rT6yB1wK9pL4sD7fH2jX5cM0a" not in output  # never the secret itself
