# AI Proxy — the two commands: `make run` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip --disable-pip-version-check -q

.PHONY: run test install install-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(PIP) install -r requirements.txt
	# The semantic cache's ONNX export of MiniLM, fused (~15 s once; skipped when current): ~4 ms a prompt, not ~10 with torch.
	HF_HUB_OFFLINE=1 $(BIN)/python -m lib.cache.embedder export-onnx
	@touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -r requirements-dev.txt
	@touch $@

# checkov pins boto3/packaging/networkx exactly, so it lives in a venv of its own (used by tests/infra).
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV): cicd/requirements-checkov.txt | $(BIN)/python
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip --disable-pip-version-check -q install -r $<
	@touch $@

install: $(VENV)/.installed
# The browser tests (tests/browser) drive Debian's Chromium: bin/ensure-chromium.sh installs it with apt when
# /usr/bin/chromium is missing (and says why the tests will skip when it cannot).
install-dev: $(VENV)/.installed-dev $(CHECKOV)
	@bin/ensure-chromium.sh

## make run: serve the proxy on http://127.0.0.1:$${PORT:-8080} (embedded Redis and sandbox provider by default)
run: install
	bin/start.sh

## make test: install test dependencies and run the whole suite (unit, API, end-to-end, infra checks)
test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	@for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
