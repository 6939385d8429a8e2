"""LiveCalc under Apache Airflow 3: an operator, a DAG builder and the run context adapter.

- ``LiveCalcOperator`` runs a pipeline config (or one node of it) as one Airflow task: it
  pushes the LiveCalc run id and output paths to XCom, fails on a failed ``error`` check with
  the check's message, and on a retry resumes the run from its chunk checkpoints;
- ``LiveCalcDagBuilder(config_path, dag_id=..., per_node_tasks=True)`` turns a config into a
  DAG: one task per engine node with the config's dependencies (or one task for the whole
  pipeline); ``.validate()`` lists the problems, ``.build()`` returns the ``DAG``;
- ``AirflowRunContext`` is ``livecalc.ports.RunContext`` for an Airflow task instance: every
  try of one task instance gets the same LiveCalc run id, and ``attempt`` is the try number.

Install with ``pip install 'livecalc[airflow]'``; ``import livecalc`` never imports this.
User guide: docs/integrations.md (the Airflow section).
"""

from livecalc.integrations.airflow.context import AirflowRunContext, airflow_run_id
from livecalc.integrations.airflow.dag_builder import LiveCalcDagBuilder
from livecalc.integrations.airflow.operator import LiveCalcOperator

__all__ = ["AirflowRunContext", "LiveCalcDagBuilder", "LiveCalcOperator", "airflow_run_id"]
