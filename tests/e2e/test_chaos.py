"""The chaos suite, short (``bench/chaos.py`` runs the long one): a mixed load with upstream faults, client
disconnects, Redis stopped and started, Redis frozen and a SIGTERM of the server — and nothing lost, nothing
double-counted, no budget exceeded, no 500 and no answer outside the OpenAI envelope."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_nothing_lost_under_chaos() -> None:
    from chaos import chaos

    result = chaos(seconds=45, clients=6, outage_s=4, freeze_s=3)
    table = "\n".join(f"{k}: {v}" for k, v in result.items() if not k.startswith("_"))
    assert result["requests sent"] > 300, table
    assert result["lost (answered, no log record)"] == 0, table
    assert result["double-counted (records - distinct ids)"] == 0, table
    usage_requests, logs = result["usage requests vs log records"].split(" vs ")
    assert usage_requests == logs, table
    tokens, logged = result["usage tokens vs sum of logs"].split(" vs ")
    assert tokens == logged, table
    assert result["over budget"] is False, table
    assert result["500 internal_error"] == 0 and result["non-envelope answers"] == 0, table
