"""Process-wide logging and error reporting (Honeybadger): configured once by ``build_services``."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from lib.settings import Settings


def configure_logging(level: str) -> None:
    """Plain one-line logs to stderr; billing lines go to stdout as JSON (``lib.records.recorder``)."""
    root = logging.getLogger()
    if not any(getattr(h, "_aiproxy", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._aiproxy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def configure_error_reporting(settings: Settings) -> Callable[[BaseException], Any] | None:
    """Honeybadger for unhandled exceptions and for ERROR/CRITICAL log lines; returns the notify function
    (or None when ``HONEYBADGER_API_KEY`` is unset). Notices carry no request bodies or keys."""
    if not settings.honeybadger_api_key:
        return None
    from honeybadger import Honeybadger
    from honeybadger.contrib.logger import HoneybadgerHandler

    options = {"api_key": settings.honeybadger_api_key, "environment": settings.environment,
               "force_report_data": True, "endpoint": settings.honeybadger_endpoint}
    reporter = Honeybadger()
    reporter.configure(**options)
    root = logging.getLogger()
    if not any(isinstance(h, HoneybadgerHandler) for h in root.handlers):
        handler = HoneybadgerHandler(settings.honeybadger_api_key)
        handler.honeybadger.configure(**options)
        handler.setLevel(logging.ERROR)
        root.addHandler(handler)
    return reporter.notify
