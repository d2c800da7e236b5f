# The front door: `make run` and `make test` need only Python 3.11+ and make.
# uv (from PyPI, pinned) installs the locked dependencies into .venv.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced-stamp
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint typecheck check bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

## run: the whole stack locally (embedded Redis, gateway on 127.0.0.1:8000, one worker)
run: $(STAMP)
	$(VENV)/bin/langscale dev

## test: lint, type-check and every test
test: $(STAMP) lint typecheck
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## bench: benchmarks side by side with peers (results in bench/results/)
bench: $(STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
