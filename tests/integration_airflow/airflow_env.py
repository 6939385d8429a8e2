"""Where the Airflow tests' Airflow lives: a temporary AIRFLOW_HOME with SQLite metadata.

Airflow reads its configuration from the environment when it is first imported, so this module
sets the environment and is imported (by conftest.py) before any test module imports Airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="livecalc-airflow-"))
# The dags folder is a copy of examples/ (configs, data, the example DAG file): DAG runs
# write their outputs there, never into the repository.
DAGS = AIRFLOW_HOME / "examples" / "airflow"

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME}/airflow.db",
    }
)


def write_dag_file(name: str, body: str) -> Path:
    """A DAG file in the dags folder (``dag.test`` syncs the folder to the database)."""
    path = DAGS / f"{name}.py"
    path.write_text(body)
    return path
