"""Airflow DAGs for LiveCalc's three example pipelines (examples/dag_config_*.json).

Each config becomes the DAG ``livecalc_<name>`` with one task per engine node (ESG ->
projection -> solver); ``livecalc_full_pipeline_one_task`` runs the full example as a single
task instead. Point Airflow at this folder and run one:

    export AIRFLOW_HOME=~/airflow AIRFLOW__CORE__DAGS_FOLDER=$PWD/examples/airflow
    airflow db migrate
    airflow dags test livecalc_full_pipeline

Outputs go where ``livecalc run`` puts them (examples/output/...). Set ``LIVECALC_EXECUTOR``
to ``processes`` or ``ray`` to run the engines there (default: each config's run.executor).
See docs/integrations.md (the Airflow section).
"""

from __future__ import annotations

import os
from pathlib import Path

from livecalc.integrations.airflow import LiveCalcDagBuilder

EXAMPLES = Path(__file__).resolve().parents[1]
EXECUTOR = os.environ.get("LIVECALC_EXECUTOR") or None

for config in sorted(EXAMPLES.glob("dag_config_*.json")):
    name = config.stem.removeprefix("dag_config_")
    builder = LiveCalcDagBuilder(config, dag_id=f"livecalc_{name}", executor=EXECUTOR)
    globals()[builder.dag_id] = builder.build()

livecalc_full_pipeline_one_task = LiveCalcDagBuilder(
    EXAMPLES / "dag_config_full_pipeline.json",
    dag_id="livecalc_full_pipeline_one_task",
    per_node_tasks=False,
    executor=EXECUTOR,
).build()
