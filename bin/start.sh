#!/usr/bin/env bash
# Start AI Proxy with gunicorn + gevent workers (src/serve.py). Used by `make run`, the e2e tests and the container.
#   HOST (default 127.0.0.1; the image sets 0.0.0.0), PORT (8080), WEB_CONCURRENCY (CPU count); see config.txt.sample.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/gunicorn ] && [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${AIPROXY_NO_VENV:-}" ]; then
  PATH="$PWD/.venv/bin:$PATH"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
# One BLAS thread per worker: the semantic index's dot product is ~0.2 ms on one thread, and idle BLAS threads
# spinning after it would steal the cores the embedding server needs (measured: lookup p50 8.2 → 3.7 ms).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# prometheus-client's multi-process mode is switched on by this variable, read in every worker: each writes
# its samples here and /metrics adds them up.
if [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  PROMETHEUS_MULTIPROC_DIR="$(mktemp -d "${TMPDIR:-/tmp}/aiproxy-metrics-XXXXXX")"
  export PROMETHEUS_MULTIPROC_DIR
fi
exec python -m src.serve
