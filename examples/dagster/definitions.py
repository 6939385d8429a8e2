"""The three example pipelines as Dagster assets (`dagster dev -f examples/dagster/definitions.py`).

Needs ``pip install 'livecalc[dagster]'``. Each config (``examples/dag_config_*.json``) is a
pipeline (an asset group and a job ``<config stem>_job``); its outputs go where the config
says (``examples/output/...``) and its runs into the run store in ``$LIVECALC_HOME``
(default ``~/.livecalc``), which the Dagster resource ``livecalc_store`` reads. Set
``LIVECALC_EXECUTOR`` to ``processes`` or ``ray`` to run the engines there.
"""

from __future__ import annotations

import os
from pathlib import Path

from livecalc.integrations.dagster import definitions_from_config

EXAMPLES = Path(__file__).resolve().parents[1]

defs = definitions_from_config(
    sorted(EXAMPLES.glob("dag_config_*.json")),
    executor=os.environ.get("LIVECALC_EXECUTOR") or None,
)
