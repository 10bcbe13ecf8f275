# TinyClaw Cloud. `make up` runs the platform on its embedded defaults; `make test` runs the tests.
SHELL := /bin/bash
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
# pytest-xdist workers: one takes the Docker group (the long pole, about as long as all
# the rest), the other the rest; a third only loaded a 2-CPU machine into timeouts.
# --tb=native: pytest's own traceback rendering re-parses sources with ast, which on
# CPython 3.11.7 can fail in an xdist worker ("AST constructor recursion depth
# mismatch") and take the whole worker, and every report, down with it.
TEST_WORKERS ?= 2

.PHONY: up down test deps system lint format typecheck bench clean

$(UV):
	python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

deps: $(UV)  ## Python environment from the lock file
	$(UV) sync --frozen

system:  ## Docker engine, PostgreSQL, Chromium and the runtime image (root, Debian)
	scripts/setup-system.sh

up: deps  ## Run API + worker + gateway + Temporal (with Web UI) on embedded defaults
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then scripts/build-runtime-image.sh; \
	  else echo "No Docker engine: tenant runtimes will run as local processes (development isolation only)."; fi
	$(PY) -m cli up

down: deps  ## Pause every tenant runtime of this installation (the next `make up` resumes them)
	$(PY) -m cli down

test: deps system  ## The whole test suite against real services
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup --tb=native

lint: deps
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

format: deps
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

typecheck: deps
	.venv/bin/mypy

bench: deps system  ## Benchmarks; each prints its figures
	# Every module with a main is a benchmark; the client adapters beside them are not.
	for b in $$(grep -l '__name__ == "__main__"' bench/*.py); do \
	  m=bench.$$(basename $$b .py); echo "== $$m"; $(PY) -m $$m || exit 1; done

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
