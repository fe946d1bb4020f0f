"""The health checks ECS and the load balancer use pass while Redis is away.

A Multi-AZ failover makes Redis unreachable for tens of seconds. If the target group's check or the
container's HEALTHCHECK depended on Redis, every task would be marked unhealthy at once and replaced by cold
starts. This starts the real server (``bin/start.sh``: gunicorn + gevent, as the image runs it) with
``REDIS_URL`` pointing at a port where nothing listens, then runs the container health-check command of the
Dockerfile and of the task definition, and the target group's path, against it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.infra import ROOT
from tests.infra.cfn import container, load, APP

LIVENESS = "/api/v1/health"
READINESS = "/health"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server_without_redis():
    """``bin/start.sh`` with Redis unreachable; yields (base URL, port). Stopped with SIGTERM afterwards."""
    port, dead_redis = _free_port(), _free_port()  # nothing listens on dead_redis
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "ANTHROPIC_", "GEMINI_", "AWS_", "GUNICORN"))
           and k not in ("ENVIRONMENT_TYPE", "DNS_RECORD", "EMBED_SOCKET")}
    env.update({"PORT": str(port), "HOST": "127.0.0.1", "REDIS_URL": f"redis://127.0.0.1:{dead_redis}/0",
                "AIPROXY_MASTER_KEY": "health-test-master-key-0123456789abcdef", "ENVIRONMENT": "test",
                "SEMANTIC_CACHE": "false", "WEB_CONCURRENCY": "1", "LOG_LEVEL": "WARNING",
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"})
    log = tempfile.NamedTemporaryFile(prefix="aiproxy-health-", suffix=".log", delete=False)
    proc = subprocess.Popen([str(ROOT / "bin" / "start.sh")], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def output() -> str:
        log.flush()
        return Path(log.name).read_text(errors="replace")[-3000:]

    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bin/start.sh exited ({proc.returncode}) with Redis unreachable; the server must "
                            f"start and answer liveness without Redis:\n{output()}")
            try:
                if httpx.get(url + LIVENESS, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{LIVENESS} never answered 200 with Redis unreachable:\n{output()}")
            time.sleep(0.3)
        yield url, port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        os.unlink(log.name)


def test_liveness_answers_while_redis_is_down_and_readiness_says_so(server_without_redis) -> None:
    url, _ = server_without_redis
    live = httpx.get(url + LIVENESS, timeout=5)
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = httpx.get(url + READINESS, timeout=15)
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] != "ok"


def _dockerfile_healthcheck() -> list[str]:
    from tests.infra.test_docker import DOCKERFILE, _effective, _stages

    spec = _effective(_stages(DOCKERFILE.read_text()), "runtime", "HEALTHCHECK")
    return json.loads(spec[spec.index("CMD") + 3:].strip())


def _task_healthcheck() -> list[str]:
    command = container()["HealthCheck"]["Command"]
    assert command[0] == "CMD"
    return command[1:]


@pytest.mark.parametrize("source", ["Dockerfile HEALTHCHECK", "task definition HealthCheck"])
def test_the_container_health_check_command_passes_without_redis(server_without_redis, source: str) -> None:
    """The exact command (python -c ...) the container runs, against the server with Redis down."""
    _, port = server_without_redis
    argv = _dockerfile_healthcheck() if source.startswith("Dockerfile") else _task_healthcheck()
    assert argv[0] == "python", argv
    assert LIVENESS in " ".join(argv), f"{source} does not check {LIVENESS}: {shlex.join(argv)}"
    proc = subprocess.run([sys.executable, *argv[1:]], env={**os.environ, "PORT": str(port)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{source} fails while Redis is down: {proc.stderr[-1000:]}"
    # The same command pointed at readiness fails: the check would have restarted every task.
    ready = [a.replace(LIVENESS, READINESS) for a in argv]
    proc = subprocess.run([sys.executable, *ready[1:]], env={**os.environ, "PORT": str(port)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0


def test_the_target_group_checks_liveness(server_without_redis) -> None:
    url, _ = server_without_redis
    target_group = load(APP)["Resources"]["TargetGroup"]["Properties"]
    assert target_group["HealthCheckPath"] == LIVENESS
    assert target_group["Matcher"] == {"HttpCode": "200"}
    answer = httpx.get(url + target_group["HealthCheckPath"], timeout=target_group["HealthCheckTimeoutSeconds"])
    assert str(answer.status_code) == target_group["Matcher"]["HttpCode"]


def test_smoke_test_still_checks_readiness() -> None:
    """People and the pipeline's smoke test keep using readiness (Redis included)."""
    smoke = (ROOT / "cicd" / "2-cicd" / "smoke.sh").read_text()
    assert '"$BASE_URL/health"' in smoke
