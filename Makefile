# The two quickstart commands (`make demo`, `make test`) bootstrap everything from Python 3.11 + pip:
# uv is installed with pip, then `uv sync` builds .venv from pyproject.toml.
PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --no-sync

.PHONY: setup demo test test-fast test-tfx116 lint format bench

setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --python $(PYTHON)

demo: setup
	$(RUN) python -m pipelines.penguin.demo

# The main suite (tests/) and, alongside it, the TFX 1.16 / Python 3.10 line (tests_tfx116/) in its
# own environment, built once and reused (.ci/tfx116-env); without Python 3.10 that part says so
# and passes, except under CI=true. .ci/test-all runs both and prints the second's output at the end.
test: setup
	PYTHON=$(PYTHON) .ci/test-all

test-tfx116:
	PYTHON=$(PYTHON) .ci/tfx116-env test

test-fast: setup
	$(RUN) pytest -m "not slow"

lint: setup
	$(RUN) ruff check .
	$(RUN) lint-imports
	$(RUN) ruff format --check .

format: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: setup
	for b in benchmarks/*.py; do [ $$b = benchmarks/report.py ] || $(RUN) python $$b || exit 1; done
	$(RUN) python benchmarks/report.py
