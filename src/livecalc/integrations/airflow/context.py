"""``AirflowRunContext``: ``livecalc.ports.RunContext`` for one Airflow task instance."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Protocol

from livecalc.ports.context import BaseRunContext

__all__ = ["AirflowRunContext", "TaskInstanceLike", "airflow_run_id"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class TaskInstanceLike(Protocol):
    """What the context reads of Airflow's task instance (``context["ti"]``)."""

    @property
    def dag_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def task_id(self) -> str: ...
    @property
    def map_index(self) -> int | None: ...
    @property
    def try_number(self) -> int | None: ...


def airflow_run_id(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """The LiveCalc run id of one Airflow task instance: ``af-`` and 16 hex digits.

    A hash, not the names themselves: Airflow run ids hold ``:`` and ``+``, which a LiveCalc
    run id (a checkpoint folder name) may not. Every try of the task instance gets the same
    id, so a retry finds the checkpoint its killed predecessor left.
    """
    key = json.dumps([dag_id, run_id, task_id, -1 if map_index is None else map_index])
    return "af-" + hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]


class AirflowRunContext(BaseRunContext):
    """A LiveCalc run inside an Airflow task instance.

    ``run_id`` is ``airflow_run_id(dag_id, run_id, task_id, map_index)``, ``attempt`` the
    try number, ``state`` what the run leaves for XCom, and ``log`` writes to the task's log
    (the standard logging logger ``airflow.task.livecalc`` unless another is given).
    """

    def __init__(self, ti: TaskInstanceLike, logger: logging.Logger | None = None) -> None:
        # `airflow tasks test` on a task instance never scheduled runs it with try number 0.
        attempt = max(1, ti.try_number or 0)
        super().__init__(airflow_run_id(ti.dag_id, ti.run_id, ti.task_id, ti.map_index), attempt)
        self._logger = logger or logging.getLogger("airflow.task.livecalc")
        self.airflow = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
        if ti.map_index is not None and ti.map_index >= 0:
            self.airflow += f"[{ti.map_index}]"

    def __repr__(self) -> str:
        return (
            f"AirflowRunContext(run_id={self.run_id!r}, attempt={self.attempt}, "
            f"task_instance={self.airflow!r})"
        )

    def log(self, level: str, event: str, **fields: Any) -> None:
        """One line in the task's log: the event, then its fields as JSON (secrets masked)."""
        self._logger.log(_LEVELS.get(level, logging.INFO), "%s", self.log_text(event, fields))
