# Two entry points a fresh machine needs: `make demo` and `make test`.
SHELL := /bin/bash
# Python 3.12 (what Cloud Functions runs): pyenv's install first, then whatever python3.12 really runs.
PYTHON ?= $(shell for p in $$HOME/.pyenv/versions/3.12*/bin/python python3.12; do $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
READY := $(VENV)/.ready

.PHONY: setup demo test stack-up stack-down clean

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

stack-up: $(READY)
	$(VENV)/bin/matrix-sync stack up

stack-down: $(READY)
	$(VENV)/bin/matrix-sync stack down

clean:
	-$(VENV)/bin/matrix-sync stack down
	rm -rf $(VENV) .matrix-sync
