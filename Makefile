# pawstream developer commands. `make demo` and `make test` are the README's first two commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint format demo bench clean docs

# Idempotent: re-installs only when pyproject.toml changed since the last install.
setup: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned: the CPU wheel (any other torch pulls GBs of CUDA packages)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not integration and not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: setup
	$(BIN)/pawstream demo

bench: setup
	$(BIN)/pawstream bench

# Regenerate the README's configuration table from pawstream.settings.Settings.
docs: setup
	$(BIN)/python -m stack.config_doc

# The training pipeline (dvc.yaml): stage commands run `python`, so the venv goes first on PATH.
.PHONY: train
train: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Post-deploy smoke test (`pawstream smoke`) against a local stack it starts and stops.
.PHONY: smoke
smoke: setup
	$(BIN)/pawstream smoke --local

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache
