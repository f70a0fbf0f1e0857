# `make demo` and `make test` each create .venv when it is missing and install ppl into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP_BASE := $(VENV)/.installed-base
STAMP_TEST := $(VENV)/.installed-test
# Every install takes the exact versions in constraints.txt (pyproject.toml holds ranges).
PIP_INSTALL := $(PY) -m pip install --quiet -c constraints.txt

.PHONY: demo test lint bench docs clean

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs Python 3.11 as '$(PYTHON)' (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_BASE): pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) -e ".[examples]"
	touch $@

$(STAMP_TEST): pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) -e ".[test]"
	touch $@ $(STAMP_BASE)

demo: $(STAMP_BASE)
	$(PY) examples/cone.py

# The tests run after the lint and type checks, which take well under a minute. Two
# worker processes (the machines this targets have two cores); a file's tests stay
# on one worker, so the programs it compiles once are shared by its tests.
# Almost all of the suite's time is XLA compiling small programs, and LLVM's
# optimisation passes are most of that; without them (XLA's own graph passes still
# run, so the programs compute the same things) the suite takes about a sixth less.
PYTEST_WORKERS ?= 2
TEST_XLA_FLAGS ?= --xla_backend_optimization_level=0
test: lint
	XLA_FLAGS="$(TEST_XLA_FLAGS) $(XLA_FLAGS)" $(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --durations=25 tests

lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright -p .

bench: $(STAMP_TEST)
	$(PIP_INSTALL) -e ".[bench]"
	$(PY) benchmarks/run_all.py

docs: $(STAMP_BASE)
	$(PIP_INSTALL) -e ".[docs]"
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
