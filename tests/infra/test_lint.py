"""Static checks that keep the layers honest: pyflakes-class errors, and lib/ never importing Flask."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_no_errors():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (make test installs it from requirements-dev.txt)")
    result = subprocess.run([ruff, "check", "--select", "F,E9", "--output-format", "concise",
                             "lib", "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lib_never_imports_flask_or_werkzeug():
    offenders = []
    for path in (ROOT / "lib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("flask", "werkzeug") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
