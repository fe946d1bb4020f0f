"""A pooled Redis connection is checked before it is handed out (lib/store.py's ``can_read``, a non-blocking
peek instead of redis-py's poll): one left with an unread reply, or closed by the server, is replaced, never
reused — the next command gets its own answer."""

from __future__ import annotations

import time
import uuid

from lib import store


def _client(redis_url: str):  # noqa: ANN202
    client = store.connect(redis_url, max_connections=1)  # one connection: the next command must reuse or replace it
    client.ping()
    return client


def test_a_connection_left_with_an_unread_reply_is_replaced(redis_url) -> None:
    client = _client(redis_url)
    key = f"t:{uuid.uuid4().hex}"
    client.set(key, b"mine")
    pool = client.connection_pool
    conn = pool.get_connection()
    conn.send_command("PING")  # its reply never read, as after a command cut off mid-way
    pool.release(conn)
    time.sleep(0.1)  # the stale reply has arrived (before it arrives no check can see it, redis-py's included)
    assert client.get(key) == b"mine"  # not the stale PONG
    assert client.get(key) == b"mine"


def test_a_connection_the_server_closed_is_replaced(redis_url) -> None:
    client = _client(redis_url)
    pool = client.connection_pool
    conn = pool.get_connection()
    own_id = conn.send_command("CLIENT", "ID") or conn.read_response()
    pool.release(conn)
    other = store.connect(redis_url)
    other.execute_command("CLIENT", "KILL", "ID", own_id)
    assert client.ping() is True
    assert client.client_id() != own_id


def test_a_clean_connection_is_reused(redis_url) -> None:
    client = _client(redis_url)
    first = client.client_id()
    for _ in range(20):
        assert client.ping() is True
    assert client.client_id() == first
