"""The Airflow tests: Airflow 3 in-process, its metadata in SQLite in a temporary AIRFLOW_HOME.

They run in a pytest process of their own (``pytest tests/integration_airflow``, the second
half of ``make test``; pyproject's ``addopts`` keeps plain ``pytest`` from collecting this
folder): importing Airflow configures logging and warning capture for the whole process, which
the main suite must not inherit.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow_env import AIRFLOW_HOME, EXAMPLES


def pytest_configure(config: pytest.Config) -> None:
    # Third-party warnings raised while Airflow imports or runs a task; the suite turns
    # warnings into errors, and these are not ours to fix.
    for line in (
        # fastapi's test client, which Airflow's in-process execution API uses.
        "ignore:Using `httpx` with `starlette.testclient` is deprecated",
    ):
        config.addinivalue_line("filterwarnings", line)


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Iterator[Path]:
    """The examples copied into the dags folder, and a migrated SQLite metadata database."""
    shutil.copytree(EXAMPLES, AIRFLOW_HOME / "examples", ignore=shutil.ignore_patterns(
        "output", "native", "__pycache__"))  # fmt: skip
    from airflow.utils import db

    db.initdb()
    yield AIRFLOW_HOME / "airflow.db"


@pytest.fixture
def dag_files() -> Iterator[list[Path]]:
    """DAG files a test writes; removed after it, so later tests parse only their own."""
    written: list[Path] = []
    yield written
    for path in written:
        path.unlink(missing_ok=True)
