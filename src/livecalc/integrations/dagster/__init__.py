"""LiveCalc under Dagster: a pipeline config as assets, asset checks, resources and a job.

``pip install 'livecalc[dagster]'``, then::

    from livecalc.integrations.dagster import definitions_from_config

    defs = definitions_from_config(["pipeline.json"], store="runs/")

and ``dagster dev -f that_file.py``. What maps to what: docs/integrations.md.
"""

from __future__ import annotations

try:
    import dagster as _dagster  # noqa: F401
    import dagster_duckdb as _dagster_duckdb  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        f"livecalc.integrations.dagster needs Dagster ({exc.name} is not installed): "
        "pip install 'livecalc[dagster]'"
    ) from exc

from livecalc.integrations.dagster._context import DagsterRunContext, livecalc_run_id
from livecalc.integrations.dagster.assets import definitions_from_config, resource_key
from livecalc.integrations.dagster.resources import (
    STORE_RESOURCE_KEY,
    LiveCalcResource,
    run_store_resource,
)

__all__ = [
    "STORE_RESOURCE_KEY",
    "DagsterRunContext",
    "LiveCalcResource",
    "definitions_from_config",
    "livecalc_run_id",
    "resource_key",
    "run_store_resource",
]
