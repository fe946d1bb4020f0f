#!/usr/bin/env bash
# Start AI Proxy with gunicorn + gevent workers. Used by `make run`, the end-to-end tests and the container.
#   HOST (default 127.0.0.1; the image sets 0.0.0.0), PORT (8080), WEB_CONCURRENCY (CPU count).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/gunicorn ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${AIPROXY_NO_VENV:-}" ]; then
  PATH="$PWD/.venv/bin:$PATH"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
exec gunicorn -c src/gunicorn_conf.py "src.app:create_app()"
