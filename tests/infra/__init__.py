"""Checks on the deployment artefacts (CloudFormation templates, Dockerfile, compose file), run by make test."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CICD = ROOT / "cicd"


def find_tool(name: str, *extra: Path) -> str | None:
    """Path of the executable ``name``: the given candidates, then the test interpreter's bin dir, then PATH."""
    env = os.environ.get(f"{name.upper().replace('-', '_')}_BIN")
    candidates = [Path(env)] if env else []
    candidates += [*extra, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def checkov_bin() -> str | None:
    """checkov lives in its own venv (.venv/checkov, from cicd/requirements-checkov.txt); ``CHECKOV_BIN`` wins."""
    return find_tool("checkov", ROOT / ".venv" / "checkov" / "bin" / "checkov")


def missing(tool: str, how: str) -> None:
    """Skip the calling test because ``tool`` is not installed, or fail it under CI (``CI`` set), where
    ``make test`` installs every tool and a skip would hide an unenforced check."""
    import pytest

    message = f"{tool} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run this check")
    pytest.skip(message)
