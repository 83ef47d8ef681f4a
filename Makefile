# civic-ledger — the two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: install system-deps run test lint bench bench-quick deploy-test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## Start the API with its projector; embedded PostgreSQL under ./.data unless DATABASE_URL is set.
run: install
	PORT=$(PORT) $(BIN)/civic dev

## Debian packages the tests drive (chromium, jq, a CJK font), installed when missing.
system-deps:
	@bash scripts/system-deps.sh

## The whole test suite against a real PostgreSQL (DATABASE_URL, else the embedded one).
test: install system-deps
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

## Render both Kustomize overlays offline and validate them against the Kubernetes schemas.
deploy-test: install
	$(BIN)/python -m pytest -p no:cacheprovider tests/deploy -q --noconftest

render-%: install
	$(BIN)/python -m tests.deploy.kustomize_render k8s/overlays/$*

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
