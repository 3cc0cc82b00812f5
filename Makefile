# Two commands for a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= redis

.PHONY: demo test setup venv lint bench clean docs

setup:
	bash scripts/setup-host

$(BIN)/explorer: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: setup $(BIN)/explorer

demo: venv
	$(BIN)/explorer run $(SCENARIO)

# the unit tests beside the integration tests (scripts/run-tests); PYTEST_ARGS: one pytest with them
test: venv
	bash scripts/run-tests $(BIN)/python $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check explorer tests benchmarks
	$(BIN)/ruff format --check explorer tests benchmarks
	$(BIN)/mypy explorer

# every benchmark runs and prints, whichever misses its target; then exit 1 if one did
bench: venv
	@rc=0; for b in container_startup userns_startup nspawn_startup vm_startup run_overhead load_overhead keep_result parse_result page_render inside_probe; do \
	  echo "$$ $(BIN)/python benchmarks/$$b.py"; $(BIN)/python benchmarks/$$b.py || rc=1; done; exit $$rc

# the README's screenshot of the results page, from the six-side result the tests also read
docs: venv
	bash scripts/page-screenshot tests/unit/fixtures/six-sides.json docs/page.png

clean:
	-$(BIN)/explorer clean
