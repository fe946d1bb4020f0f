"""Serve AI Proxy: ``bin/start.sh`` runs ``python -m src.serve`` (make run, the e2e tests, the container).

The gunicorn master builds the settings once (environment, ``config.txt``, Secrets Manager), starts what
every worker shares — the private Redis when ``REDIS_URL`` is unset, the machine's embedding server for the
semantic cache, one server per local model directory, a generated master key outside production — and hands
the finished settings to the workers through gunicorn's application object (``load`` runs in each worker
after the fork). No environment variable is written and no file is read twice.

gevent patches the standard library first, in the master, so that nothing (boto3 reading secrets, httpx,
redis) holds an unpatched socket or ssl module when the workers fork.
"""

from gevent import monkey

monkey.patch_all()

import atexit  # noqa: E402 - after the patch, on purpose
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from gunicorn.app.base import BaseApplication  # noqa: E402

from lib.services import with_runtime_defaults  # noqa: E402
from lib.settings import Settings, SettingsError  # noqa: E402
from src import gunicorn_conf  # noqa: E402


class AIProxyServer(BaseApplication):
    """gunicorn with AI Proxy's settings; each worker builds its app from the same ``Settings``."""

    def __init__(self, settings: Settings, cleanup: list[Any]) -> None:
        self.settings = settings
        self._cleanup = cleanup
        super().__init__()

    def load_config(self) -> None:
        for name, value in gunicorn_conf.options(self.settings, on_exit=self._on_exit).items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        from src.app import create_app

        # In the worker, after the fork: the master's clean-ups (stopping the private Redis, registered with
        # atexit by lib.store) are the master's. Run by an exiting worker, they would stop the Redis every other
        # worker still uses, then wait 5 s for a process the worker cannot reap.
        for stop in self._cleanup:
            atexit.unregister(stop)
        return create_app(self.settings)

    def _on_exit(self, server: Any) -> None:
        for stop in self._cleanup:
            try:
                stop()
            except Exception:  # noqa: BLE001 - best effort at exit
                server.log.warning("cleanup at exit failed", exc_info=True)


def start_embedder(settings: Settings) -> tuple[Settings, Any]:
    """One embedding server per machine for the semantic cache (``lib/cache/embed_server.py``), unless the
    cache is off or a socket is given. Returns the settings with ``embed_socket`` and the process (or None)."""
    if not settings.semantic_cache or settings.embed_socket:
        return settings, None
    path = os.path.join(tempfile.mkdtemp(prefix="aiproxy-embed-"), "embed.sock")
    # Same process group as the master (a signal to the group reaches it too); it also exits by itself when
    # the master goes away without running on_exit.
    proc = subprocess.Popen([sys.executable, "-m", "lib.cache.embed_server", "--socket", path,
                             "--threads", str(settings.embed_threads), "--parent-pid", str(os.getpid())])
    print(f"AI Proxy: started the embedding server (pid {proc.pid}) at {path}", file=sys.stderr, flush=True)
    return settings.model_copy(update={"embed_socket": path}), proc


def start_local_models(settings: Settings) -> tuple[Settings, list[Any]]:
    """One model server per machine for each model directory a ``local`` provider instance or a sandbox vendor
    (``VENDOR_A_MODEL_PATH`` / ``VENDOR_B_MODEL_PATH``) uses (``lib/providers/local_server.py``), unless
    ``LOCAL_MODEL_SOCKETS`` already names one. Returns the settings with every socket and the processes."""
    wanted: dict[str, dict[str, Any]] = {}
    for config in settings.providers.values():
        if config.type == "local" and config.extra.get("path"):
            wanted.setdefault(str(config.extra["path"]), config.extra)
    for path in (settings.vendor_a_model_path, settings.vendor_b_model_path):
        if path:
            wanted.setdefault(path, {})
    sockets = dict(settings.local_model_sockets)
    procs = []
    for path, options in wanted.items():
        if path in sockets:
            continue
        sockets[path] = os.path.join(tempfile.mkdtemp(prefix="aiproxy-local-"), "model.sock")
        command = [sys.executable, "-m", "lib.providers.local_server", "--socket", sockets[path], "--path", path,
                   "--parent-pid", str(os.getpid())]
        for option in ("queue", "threads", "max_tokens"):
            if options.get(option):
                command += [f"--{option.replace('_', '-')}", str(options[option])]
        proc = subprocess.Popen(command)
        procs.append(proc)
        print(f"AI Proxy: started the local model server for {path} (pid {proc.pid}) at {sockets[path]}",
              file=sys.stderr, flush=True)
    return settings.model_copy(update={"local_model_sockets": sockets}), procs


def _stopper(proc: Any) -> Any:
    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

    return stop


def main() -> int:
    """Validate settings (exit 3 with a clear message when they are wrong), start the shared pieces, serve."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"AI Proxy cannot start: {exc}", file=sys.stderr, flush=True)
        return 3
    cleanup: list[Any] = []
    settings, embedded = with_runtime_defaults(settings)
    if embedded is not None:
        cleanup.append(embedded.stop)
    settings, embedder = start_embedder(settings)
    if embedder is not None:
        cleanup.insert(0, _stopper(embedder))
    settings, models = start_local_models(settings)
    for proc in models:
        cleanup.insert(0, _stopper(proc))
    AIProxyServer(settings, cleanup).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
