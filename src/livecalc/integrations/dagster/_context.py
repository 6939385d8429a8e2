"""``DagsterRunContext``: the ``livecalc.ports.RunContext`` of a run in a Dagster step."""

from __future__ import annotations

from typing import Any

import dagster as dg

from livecalc.ports.context import BaseRunContext, check_run_id

__all__ = ["DagsterRunContext", "livecalc_run_id"]

_MAX_RUN_ID = 128


def livecalc_run_id(dagster_run_id: str, step: str) -> str:
    """The LiveCalc run id of one step of a Dagster run: ``<dagster run id>-<step>``.

    A Dagster run id is a UUID (hex digits and ``-``) and a step name is a Dagster name
    (``A-Z a-z 0-9 _``), so the id is safe as a checkpoint folder name; it is the same on every
    retry of the step, which is what lets a retried step resume from its checkpoint.
    """
    return check_run_id(f"{dagster_run_id}-{step}"[:_MAX_RUN_ID])


class DagsterRunContext(BaseRunContext):
    """A LiveCalc run driven by a Dagster asset step.

    ``run_id`` comes from the Dagster run id and the step; ``attempt`` is the step's retry
    number plus one (a retried step resumes from its checkpoint); ``log`` goes to Dagster's
    run log (``context.log``), with every secret LiveCalc knows masked; ``state`` is what the
    run leaves for Dagster (``run_id``, ``status``, ``outputs``, ``datasets``), which the
    step writes into its materialization metadata.
    """

    def __init__(self, context: dg.AssetExecutionContext, step: str) -> None:
        super().__init__(livecalc_run_id(context.run.run_id, step), int(context.retry_number) + 1)
        self._log = context.log

    def log(self, level: str, event: str, **fields: Any) -> None:
        method = {
            "debug": self._log.debug,
            "warning": self._log.warning,
            "error": self._log.error,
        }.get(level, self._log.info)
        method(self.log_text(event, fields))
