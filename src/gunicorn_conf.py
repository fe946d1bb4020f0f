"""gunicorn's configuration for AI Proxy, as a function of ``Settings`` (``src/serve.py`` applies it).

An LLM call takes seconds and a stream can take minutes; a sync worker per request would cap the whole
service at a handful of users, so each worker is a gevent loop holding up to ``worker_connections``.
Every value comes from the one settings object (``WEB_CONCURRENCY``, ``GRACEFUL_TIMEOUT``, ``KEEPALIVE``
…); this module reads no environment and no file.
"""

from __future__ import annotations

from typing import Any, Callable

from lib.settings import Settings

# The defaults, for the infrastructure checks that keep ECS, the ALB and gunicorn consistent.
graceful_timeout: int = Settings.model_fields["graceful_timeout"].default
keepalive: int = Settings.model_fields["keepalive"].default


def options(settings: Settings, *, on_exit: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The gunicorn settings for ``settings``; ``on_exit`` runs in the master when it stops."""
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": settings.web_concurrency,
        # gunicorn's gevent worker, with OpenAI-envelope errors, bounded head/body reads and a graceful stop
        # that records what it cuts (src/worker.py).
        "worker_class": "src.worker.AIProxyWorker",
        "worker_connections": settings.worker_connections,
        # Long enough for a slow upstream call; streams are not limited by it (gevent workers heartbeat anyway).
        "timeout": settings.gunicorn_timeout,
        # On SIGTERM, finish in-flight requests and streams for up to this long (ECS stopTimeout must exceed it).
        "graceful_timeout": settings.graceful_timeout,
        # Above the ALB's idle timeout, so the ALB closes idle connections first. Only the wait between
        # requests: the worker bounds a request's head and body by REQUEST_HEADER/BODY_TIMEOUT.
        "keepalive": settings.keepalive,
        # gunicorn 27's control socket lives in $HOME; the container's root filesystem is read-only.
        "control_socket_disable": True,
        "accesslog": "-" if settings.access_log else None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # Query strings may carry api_key (spreadsheet clients): never log them.
        "access_log_format": '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss',
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "child_exit": _child_exit(settings),
        "on_exit": on_exit or (lambda server: None),
    }


def _child_exit(settings: Settings) -> Callable[[Any, Any], None]:
    def child_exit(server: Any, worker: Any) -> None:
        if settings.prometheus_multiproc_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, settings.prometheus_multiproc_dir)

    return child_exit
