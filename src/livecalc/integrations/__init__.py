"""Scheduler integrations: a LiveCalc pipeline config run by a workflow scheduler.

A scheduler drives LiveCalc through the ports of ``livecalc.ports`` (its run id, attempt and
log through a ``RunContext``) and ``livecalc.run``; nothing in the runner knows which
scheduler started it. Each integration is a subpackage with its own optional extra, imported
only when asked for, so ``import livecalc`` never imports a scheduler:

- ``livecalc.integrations.dagster`` (``pip install 'livecalc[dagster]'``): a config as
  Dagster assets, asset checks, resources and a job (docs/integrations.md);
- ``livecalc.integrations.airflow`` (``pip install 'livecalc[airflow]'``, Airflow 3): the
  ``LiveCalcOperator`` and ``LiveCalcDagBuilder``, a config as a DAG of one task per node.

Layer 8: above ``ops`` (the run store, declared checks, ``livecalc.run``), below the CLI.
"""
