# pawstream developer commands. `make demo` and `make test` are the README's first two commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast lint format demo bench clean docs

# Idempotent: re-installs only when pyproject.toml changed since the last install.
setup: $(STAMP)
# The Python version is checked before anything is installed (the venv's own, once it exists).
$(STAMP): pyproject.toml
	@py="$(PY)"; if test -x $(BIN)/python; then py=$(BIN)/python; fi; \
	command -v "$$py" >/dev/null 2>&1 || { echo "make setup: $$py not found; pawstream needs Python 3.11 or 3.12: make setup PY=python3.12" >&2; exit 1; }; \
	"$$py" tools/setup_check.py python
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch and torchvision first, pinned: CPU builds from PyTorch's index on Linux unless pip's
	# sources are configured (PyPI's pull GBs of CUDA packages); see tools/setup_check.py
	args="$$($(BIN)/python tools/setup_check.py torch-args)" && \
	$(BIN)/pip install --disable-pip-version-check -q $$args
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

# Two test files at a time (pytest-xdist, whole files per process so module fixtures are built
# once): measured 13.6 min against ~25 min serially on 2 vCPUs. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

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
