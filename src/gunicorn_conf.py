"""gunicorn settings for ``bin/start.sh``: gevent workers, one shared Redis and master key for all workers.

An LLM call takes seconds and a stream can take minutes; a sync worker per request would cap the whole
service at a handful of users, so each worker is a gevent loop holding up to ``worker_connections``.
"""

import multiprocessing
import os
import secrets
import sys

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY") or multiprocessing.cpu_count())
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))
# Long enough for a slow upstream call; streams are not limited by it (gevent workers heartbeat anyway).
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# On SIGTERM, finish in-flight requests and streams for up to this long (ECS stopTimeout must exceed it).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "90"))
# gunicorn 27's control socket lives in $HOME; the container's root filesystem is read-only.
control_socket_disable = True
keepalive = 75  # above the ALB's 60 s idle timeout default, so the ALB closes first
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# Query strings may carry api_key (spreadsheet clients): never log them.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def on_starting(server):  # noqa: ANN001 - gunicorn hook signature
    """In the master, before workers fork: start the private Redis and settle the master key once,
    so every worker shares them."""
    sys.path.insert(0, os.getcwd())
    _validate_settings()
    from dotenv import dotenv_values

    from lib import store as redis_store

    file_env = dotenv_values("config.txt") if os.path.isfile("config.txt") else {}

    def configured(name):
        return os.environ.get(name) or file_env.get(name)

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import tempfile

        # Every worker writes its metric samples here; /metrics adds them up.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="aiproxy-metrics-")
    if not configured("REDIS_URL"):
        embedded = redis_store.start_embedded_redis()
        os.environ["REDIS_URL"] = embedded.url
        server._aiproxy_redis = embedded
        server.log.info("REDIS_URL is unset: started a private Redis at %s (stopped on exit)", embedded.url)
    _start_embedder(server, configured)
    environment = (configured("ENVIRONMENT") or "development").lower()
    if not configured("AIPROXY_MASTER_KEY") and environment != "production" and not (
            configured("ENVIRONMENT_TYPE") and configured("DNS_RECORD")):
        key = "sk-aip-master-" + secrets.token_urlsafe(24)
        os.environ["AIPROXY_MASTER_KEY"] = key
        print(f"AI Proxy: AIPROXY_MASTER_KEY is unset; generated a master key for this run: {key}",
              file=sys.stderr, flush=True)


def _validate_settings():
    """Fail fast, once, with a clear message (production: missing or weak master key, bad values).

    Runs in a child process: loading settings may import boto3 (Secrets Manager) and with it ssl, which
    must not be imported in the master before the gevent workers patch it.
    """
    import subprocess

    check = ("import sys\nfrom lib.settings import Settings, SettingsError\ntry:\n    Settings.from_env()\n"
             "except SettingsError as exc:\n    print(f'AI Proxy cannot start: {exc}', file=sys.stderr)\n"
             "    sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=os.getcwd())
    if result.returncode != 0:
        sys.exit(result.returncode)


def _start_embedder(server, configured):  # noqa: ANN001
    """One embedding server per machine for the semantic cache (see lib/cache/embed_server.py)."""
    import subprocess
    import tempfile

    if (configured("SEMANTIC_CACHE") or "true").strip().lower() not in ("1", "true", "yes", "on"):
        return
    if configured("EMBED_SOCKET"):
        return  # an embedding server is already provided
    path = os.path.join(tempfile.mkdtemp(prefix="aiproxy-embed-"), "embed.sock")
    # Same process group as the master (a signal to the group reaches it too); it also exits by itself when
    # the master goes away without running on_exit.
    proc = subprocess.Popen([sys.executable, "-m", "lib.cache.embed_server", "--socket", path,
                             "--parent-pid", str(os.getpid())], cwd=os.getcwd())
    os.environ["EMBED_SOCKET"] = path
    server._aiproxy_embedder = proc
    server.log.info("started the embedding server (pid %s) at %s", proc.pid, path)


def child_exit(server, worker):  # noqa: ANN001
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001
    embedder = getattr(server, "_aiproxy_embedder", None)
    if embedder is not None and embedder.poll() is None:
        embedder.terminate()
        try:
            embedder.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort at exit
            embedder.kill()
    embedded = getattr(server, "_aiproxy_redis", None)
    if embedded is not None:
        embedded.stop()
