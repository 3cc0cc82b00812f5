# Two commands for a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= redis

.PHONY: demo test setup venv lint bench clean

setup:
	bash scripts/setup-host

$(BIN)/explorer: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: setup $(BIN)/explorer

demo: venv
	$(BIN)/explorer run $(SCENARIO)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check explorer tests benchmarks
	$(BIN)/ruff format --check explorer tests benchmarks

bench: venv
	$(BIN)/python benchmarks/container_startup.py
	$(BIN)/python benchmarks/vm_startup.py
	$(BIN)/python benchmarks/run_overhead.py
	$(BIN)/python benchmarks/load_overhead.py

clean:
	-$(BIN)/explorer clean
