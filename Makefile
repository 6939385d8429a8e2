# Set-up is two commands: `make demo` (the full demo pipeline) and `make test` (the suite).
# Both create the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench fuzz clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/livecalc demo --out demo_output

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The fuzzer (tests/fuzz) runs a few cases inside `make test`; this runs many. Set
# LIVECALC_FUZZ_CASES (default 300) and LIVECALC_FUZZ_SEED; replay one failing case with the
# `LIVECALC_FUZZ_SEED=S LIVECALC_FUZZ_ONLY=I make fuzz` line its report prints.
fuzz: $(VENV)/.installed
	LIVECALC_FUZZ_CASES=$${LIVECALC_FUZZ_CASES:-300} $(PY) -m pytest -q -rfs tests/fuzz -k TestFuzzCases

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_output .pytest_cache build src/*.egg-info
