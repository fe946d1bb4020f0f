"""The Flask app: HTTP only. Parsing, calling ``lib``, serializing; no gateway logic lives here.

``src.app.create_app`` is the factory; ``src.serve`` runs it under gunicorn. Nothing is imported here, so
``python -m src.serve`` can let gevent patch the standard library before anything else loads.
"""
