# One place for the project's commands. `make demo` and `make test` work on a fresh machine:
# they create .venv and install everything on first use.
PYTHON ?= python3
# pip takes the CPU build from the local wheel cache where there is one; elsewhere set
# TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" for a CPU-only install.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test faults lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,dev,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/edge-trainer demo --out runs/demo

# Two workers, one per core; a test file stays on one worker, so its module fixtures are fitted once.
test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile

faults: install
	$(BIN)/python -m pytest -m faults

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
