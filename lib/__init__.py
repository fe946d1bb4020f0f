"""AI Proxy gateway logic. Nothing in this package imports Flask."""

__version__ = "0.1.0"
