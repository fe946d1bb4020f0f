#!/usr/bin/env bash
# Static checks, run by both CodeBuild projects before `make test` (which repeats cfn-lint, checkov and
# hadolint as tests, so a developer's `make test` enforces them too). Fails on the first problem.
set -euo pipefail
cd "$(dirname "$0")/../.."

make install-dev
# checkov lives in its own venv: it pins boto3, packaging and networkx exactly (cicd/requirements-checkov.txt).
if [ ! -x .venv/checkov/bin/checkov ]; then
  python3 -m venv .venv/checkov
  .venv/checkov/bin/pip install --disable-pip-version-check -q -r cicd/requirements-checkov.txt
fi

bash -n bin/*.sh cicd/2-cicd/*.sh
.venv/bin/python -m compileall -q lib src tests
.venv/bin/hadolint Dockerfile
.venv/bin/cfn-lint -- cicd/*/template.yml cicd/3-app/*/template.yml
# A project-wide linter (ruff) runs here once the Makefile has a lint target.
if make -n lint >/dev/null 2>&1; then
  make lint
fi
echo "lint: ok"
