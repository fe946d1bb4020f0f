"""The container: hadolint and checkov clean, the start command is bin/start.sh (the one the e2e tests run),
the offline assets load without network, and the pipeline's smoke test passes against that command."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest
import yaml

from tests.infra import CICD, ROOT, checkov_bin, find_tool, missing

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
START = ["bin/start.sh"]


def _stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Dockerfile stages by name -> [(INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for line in logical:
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            match = re.search(r"\s+AS\s+(\S+)\s*$", args, re.IGNORECASE)
            name = match.group(1) if match else f"stage{len(stages)}"
            stages[name] = []
        stages[name].append((instruction.upper(), args.strip()))
    return stages


def _effective(stages: dict[str, list[tuple[str, str]]], name: str, instruction: str) -> str | None:
    """The last ``instruction`` that applies to stage ``name``, following ``FROM <stage>`` parents."""
    found = [args for ins, args in stages[name] if ins == instruction]
    if found:
        return found[-1]
    parent = stages[name][0][1].split()[0]
    return _effective(stages, parent, instruction) if parent in stages else None


def test_hadolint_is_clean() -> None:
    tool = find_tool("hadolint")
    if tool is None:
        missing("hadolint", "pip install -r requirements-dev.txt")
    proc = subprocess.run([tool, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_hadolint_ignores_are_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("hadolint ignore=")[1].split(",")
            comments = " ".join(lines[max(0, i - 4):i])
            for rule in rules:
                assert rule.strip() in comments, f"{rule} is ignored without a reason above line {i + 1}"


def test_checkov_dockerfile_has_no_failed_check() -> None:
    tool = checkov_bin()
    if tool is None:
        missing("checkov", "python3 -m venv .venv/checkov && .venv/checkov/bin/pip install -r "
                "cicd/requirements-checkov.txt")
    proc = subprocess.run([tool, "--skip-download", "--framework", "dockerfile", "-f", str(DOCKERFILE),
                           "--output", "json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.stdout.strip().startswith("{"), f"checkov failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout)["results"]
    assert not results["failed_checks"], [(c["check_id"], c["check_name"]) for c in results["failed_checks"]]
    assert results["passed_checks"], "checkov checked nothing"
    for check in results["skipped_checks"]:
        assert len((check["check_result"].get("suppress_comment") or "").strip()) >= 30, check["check_id"]


def test_image_runs_the_start_script_as_a_non_root_user_with_a_health_check() -> None:
    stages = _stages(DOCKERFILE.read_text())
    last = list(stages)[-1]
    for name in ("runtime", last):  # compose and CodeBuild build --target runtime; `docker build .` the last
        assert json.loads(_effective(stages, name, "CMD")) == START
        assert _effective(stages, name, "USER") not in (None, "0", "root", "0:0")
        assert "/health" in _effective(stages, name, "HEALTHCHECK")
    runtime_env = " ".join(args for ins, args in stages["runtime"] if ins == "ENV")
    for setting in ("HOST=0.0.0.0", "HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"):
        assert setting in runtime_env
    # The slow dependency layer comes before any application code is copied.
    build = stages["build"]
    copies = [args for ins, args in build if ins == "COPY"]
    assert copies and all("requirements" in c for c in copies)


def test_compose_runs_the_start_script_after_redis_is_healthy() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    app, redis = compose["services"]["app"], compose["services"]["redis"]
    assert app["command"] == START
    assert app["build"]["target"] == "runtime"
    env_files = [e["path"] if isinstance(e, dict) else e for e in app["env_file"]]
    assert env_files == ["config.txt"]
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_start_script_is_the_one_the_e2e_tests_run() -> None:
    script = ROOT / START[0]
    assert script.is_file() and script.stat().st_mode & stat.S_IXUSR
    assert re.search(r"^exec python -m src\.serve$", script.read_text(), re.MULTILINE)
    serve = (ROOT / "src" / "serve.py").read_text()  # gunicorn with gevent workers, configured by src/gunicorn_conf.py
    assert "BaseApplication" in serve and "gunicorn_conf.options" in serve
    conf = (ROOT / "src" / "gunicorn_conf.py").read_text()
    worker = re.search(r'"worker_class": "([\w.]+)"', conf)
    assert worker, "src/gunicorn_conf.py no longer names its worker class"
    if worker.group(1) != "gevent":  # AI Proxy's own worker: still a gevent worker (one loop, many connections)
        from gunicorn.util import load_class
        from gunicorn.workers.ggevent import GeventWorker

        assert issubclass(load_class(worker.group(1)), GeventWorker)
    e2e = "\n".join(p.read_text() for p in (ROOT / "tests" / "e2e").glob("*.py"))
    assert '"bin" / "start.sh"' in e2e or "bin/start.sh" in e2e, "the e2e tests no longer start bin/start.sh"


def test_image_assets_load_with_the_network_switched_off() -> None:
    """The Dockerfile runs this script at build time; here it runs against the test venv."""
    proc = subprocess.run([sys.executable, str(CICD / "docker" / "check_offline_assets.py")],
                          capture_output=True, text=True, cwd=ROOT, timeout=180,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: tokenizer cl100k_base" in proc.stdout and "ok: tokenizer o200k_base" in proc.stdout


@pytest.mark.e2e
def test_pipeline_smoke_test_passes_against_the_start_script(redis_url: str, key_prefix: str) -> None:
    """cicd/2-cicd/smoke.sh, exactly as CodeBuild runs it, against bin/start.sh; then SIGTERM stops it cleanly."""
    from tests.e2e.server import ServerProcess

    master = "smoke-master-key-0123456789-abcdefghij"
    server = ServerProcess({"REDIS_URL": redis_url, "REDIS_PREFIX": key_prefix, "AIPROXY_MASTER_KEY": master},
                           workers=1)
    try:
        proc = subprocess.run(["bash", str(CICD / "2-cicd" / "smoke.sh")], capture_output=True, text=True,
                              timeout=120, cwd=ROOT,
                              env={**os.environ, "BASE_URL": server.url, "AIPROXY_MASTER_KEY": master,
                                   "SMOKE_HEALTH_WAIT": "30"})
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke: PASS" in proc.stderr and "revoked temporary key" in proc.stderr
    assert master not in proc.stdout + proc.stderr
    assert server.proc.returncode == 0, f"gunicorn did not stop cleanly on SIGTERM:\n{server.output()[-2000:]}"


def test_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "config.txt", ".env", ".aiproxy"} <= ignored
    # The runtime stage copies code by directory, never the whole context.
    stages = _stages(DOCKERFILE.read_text())
    assert not [args for ins, args in stages["runtime"] if ins == "COPY" and args.split()[0] == "."]
