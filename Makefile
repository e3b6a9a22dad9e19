# Two entry points a fresh machine needs: `make demo` and `make test`.
SHELL := /bin/bash
# Python 3.12 (what Cloud Functions runs): pyenv's install first, then whatever python3.12 really runs.
PYTHON ?= $(shell for p in $$HOME/.pyenv/versions/3.12*/bin/python python3.12; do $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
READY := $(VENV)/.ready

.PHONY: setup demo test stack-up stack-down clean package bench bench-venv

$(READY): requirements.txt requirements-dev.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	$(VENV)/bin/matrix-sync stack install
	touch $(READY)

setup: $(READY)

demo: $(READY)
	$(VENV)/bin/matrix-sync demo

test: $(READY)
	$(VENV)/bin/python -m pytest tests

# dist/<function>.zip for each Cloud Function (reproducible; Terraform uploads them by content hash).
package: $(READY)
	$(VENV)/bin/python -m matrix_sync.package --out dist

# Benchmarks side by side with dlt and reladiff (bench/README.md): make bench SIZES=100k,1M REPEATS=3;
# SCENARIOS=initial,change,reconcile,memory,hashing picks some; SMOKE=1 runs toy sizes in about a minute.
# dlt and reladiff live in their own venv: dlt needs a DuckDB newer than the emulator's pinned one.
BENCH_VENV := .venv-bench
SIZES ?= 100k,1M
REPEATS ?= 3

$(BENCH_VENV)/.ready: bench/requirements.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench-venv: $(BENCH_VENV)/.ready

bench: $(READY) $(BENCH_VENV)/.ready
	$(VENV)/bin/python -m bench $(if $(SMOKE),--smoke,--sizes $(SIZES) --repeats $(REPEATS)) $(if $(SCENARIOS),--scenarios $(SCENARIOS))

stack-up: $(READY)
	$(VENV)/bin/matrix-sync stack up

stack-down: $(READY)
	$(VENV)/bin/matrix-sync stack down

clean:
	-$(VENV)/bin/matrix-sync stack down
	rm -rf $(VENV) $(BENCH_VENV) .matrix-sync bench/.work
