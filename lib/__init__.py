"""AI Proxy gateway logic. Nothing in this package imports Flask.

The folders name the pipeline: ``protocols/`` (ingress request shapes), ``limits/`` (rate limits, budgets,
auth throttle), ``cache/``, ``providers/``, ``accounting/`` (tokens, prices, money), ``records/`` (request
log, usage). ``services.build_services`` wires them; ``data/`` holds the tables they load once.
"""

from pathlib import Path

__version__ = "0.1.0"

DATA_DIR = Path(__file__).resolve().parent / "data"
