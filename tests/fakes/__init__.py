"""Fake upstream servers (OpenAI, Anthropic, Gemini) speaking the real wire formats; see ``upstreams``."""

from __future__ import annotations

from typing import Any

__all__ = ["FakeUpstream"]


def __getattr__(name: str) -> Any:
    # Imported lazily so ``python -m tests.fakes.upstreams`` does not import the module twice.
    if name == "FakeUpstream":
        from tests.fakes.upstreams import FakeUpstream

        return FakeUpstream
    raise AttributeError(name)
