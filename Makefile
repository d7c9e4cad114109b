# serverlab: `make test` (the test suite), `make report` (an experiment, headless).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXPERIMENT ?= default
BACKEND ?= docker
ARGS ?=

.PHONY: help venv test test-fast test-browser report compose offline up down clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/serverlab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(BIN)/serverlab  ## create .venv with serverlab and its test tools

test: venv  ## run the whole test suite (Docker tests skip without Docker, fail in CI)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv  ## unit tests only (no servers, no Docker)
	$(BIN)/python -m pytest -m 'not docker and not slow' $(PYTEST_ARGS)

test-browser: venv  ## the web UI and report in Debian's chromium (apt-get install chromium); screenshots in test-output/browser/
	$(BIN)/python -m pytest tests/test_browser.py tests/test_report_browser.py $(PYTEST_ARGS)

report: venv  ## run EXPERIMENT (default: default) and write reports/<run-id>/
	$(BIN)/serverlab run $(EXPERIMENT) --backend $(BACKEND) $(ARGS)

compose: venv  ## write docker-compose.yml from servers/*.toml (after adding or changing a variant; commit it)
	$(BIN)/serverlab compose

offline:  ## prepare Docker, a base image and a wheelhouse where no registry is reachable
	bash scripts/provision-offline.sh

up:  ## start the lab (every server variant + Locust web UI on http://localhost:8089); Compare runs land in reports/ as you
	$(if $(filter 0,$(shell id -u)),,SERVERLAB_UID=$$(id -u) SERVERLAB_GID=$$(id -g)) docker compose up --build

down:  ## stop the lab
	docker compose down --remove-orphans

clean:  ## remove the virtual environment and caches (reports are kept)
	rm -rf $(VENV) .pytest_cache build *.egg-info
