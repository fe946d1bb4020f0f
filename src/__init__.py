"""The Flask app: HTTP only. Parsing, calling ``lib``, serializing; no gateway logic lives here."""

from src.app import create_app

__all__ = ["create_app"]
