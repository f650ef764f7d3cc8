# The two commands a newcomer needs: `make run` and `make test`. Both build .venv from the lock
# file first (only Python 3.11+ and network access to PyPI are required).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format lock clean

$(STAMP): pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/chatbot serve --model models/default --host 127.0.0.1 --port 8000

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the lock files after changing dependencies in pyproject.toml: requirements.lock
# (what the package needs), requirements-dev.lock (plus test tools) and requirements-serve.lock
# (what the Docker image serves with: requirements-serve.in, held to requirements.lock's pins).
COMPILE := $(BIN)/uv pip compile --universal --python-version 3.11 --quiet
LOCK := $(COMPILE) pyproject.toml
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv==0.13.9
	$(LOCK) -o requirements.lock
	$(LOCK) --extra dev -o requirements-dev.lock
	$(COMPILE) requirements-serve.in -c requirements.lock -o requirements-serve.lock

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .hypothesis
