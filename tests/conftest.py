"""Shared fixtures: one real Redis for the whole run (``REDIS_URL`` when set, else a private one)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from lib import store as redis_store  # noqa: E402


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis: ``REDIS_URL`` if the environment gives one, else a private server for this run."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    embedded = redis_store.start_embedded_redis()
    yield embedded.url
    embedded.stop()


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix unique to this test, so tests never see each other's state."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def redis_client(redis_url):
    client = redis_store.connect(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster():
    """A local 3-master Redis Cluster (``tests/cluster.py``) for the whole session, stopped at the end."""
    from tests.cluster import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()
