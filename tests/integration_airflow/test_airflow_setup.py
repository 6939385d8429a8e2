"""The Airflow tests run in CI: `make test` runs them in a second pytest process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pytest_collect(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert 0 == done.returncode, done.stdout + done.stderr
    return done.stdout


def test_make_test_runs_both_pytest_processes(tmp_path: Path) -> None:
    """make test: the main suite, then tests/integration_airflow, its failure kept."""
    commands = subprocess.run(
        ["make", "-n", "test", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip

    assert "-m pytest -q; main=$?; " in commands
    assert "-m pytest -q tests/integration_airflow && exit $main" in commands


def test_plain_pytest_leaves_this_folder_to_its_own_process() -> None:
    """Plain `pytest` collects none of these tests; `pytest tests/integration_airflow` all."""
    main = _pytest_collect()
    own = _pytest_collect("tests/integration_airflow")

    assert "integration_airflow" not in main
    assert "tests/test_layout.py::" in main
    assert "tests/integration_airflow/test_airflow_setup.py::" in own
