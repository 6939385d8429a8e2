# Set-up is two commands: `make demo` (the full demo pipeline) and `make test` (the suite).
# Both create the virtual environment when it is missing. The demo installs only what a run
# needs (.installed-run); the tests, lint and benchmarks add the dev extra (.installed-dev).
# Either install ends with `livecalc warmup`, which compiles the numba kernels into numba's
# cache once, so no later run (nor worker process) compiles them again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench fuzz clean chromium

$(VENV)/.installed-run: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	$(VENV)/bin/livecalc warmup
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The name the set-up used before the split: the full development install.
$(VENV)/.installed: $(VENV)/.installed-dev
	touch $@

demo: $(VENV)/.installed-run
	$(VENV)/bin/livecalc demo --out demo_output

# The report tests drive Debian's chromium headless and render its PDFs with poppler's
# pdftoppm; both installed here when missing.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v pdftoppm >/dev/null || (apt-get update -qq && apt-get install -y -qq poppler-utils)

# Two pytest processes: the main suite, then the Airflow integration's tests, which import
# Airflow (it configures logging process-wide) and run DAGs against a temporary SQLite home.
# Both run even when the first fails; `make test` fails when either does.
test: $(VENV)/.installed-dev chromium
	$(PY) -m pytest -q; main=$$?; $(PY) -m pytest -q tests/integration_airflow && exit $$main

# The fuzzer (tests/fuzz) runs a few cases inside `make test`; this runs many. Set
# LIVECALC_FUZZ_CASES (default 300) and LIVECALC_FUZZ_SEED; replay one failing case with the
# `LIVECALC_FUZZ_SEED=S LIVECALC_FUZZ_ONLY=I make fuzz` line its report prints. The
# kill-and-resume trials (tests/fuzz/test_fuzz_resume.py): LIVECALC_FUZZ_KILLS (default 20).
fuzz: $(VENV)/.installed-dev
	LIVECALC_FUZZ_CASES=$${LIVECALC_FUZZ_CASES:-300} LIVECALC_FUZZ_KILLS=$${LIVECALC_FUZZ_KILLS:-20} $(PY) -m pytest -q -rfs tests/fuzz -k TestFuzzCases

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests benchmarks examples/airflow
	$(VENV)/bin/ruff format --check src tests benchmarks examples/airflow
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-dev
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_output .pytest_cache build src/*.egg-info
