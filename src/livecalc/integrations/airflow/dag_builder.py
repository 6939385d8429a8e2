"""``LiveCalcDagBuilder``: an Airflow DAG from a LiveCalc pipeline config.

```python
builder = LiveCalcDagBuilder("examples/dag_config_full_pipeline.json", dag_id="full")
ok, problems = builder.validate()
dag = builder.build()  # one task per engine node, dependencies from inputs and outputs
```

With ``per_node_tasks=True`` (the default) each engine node becomes a ``LiveCalcOperator``
task named after the node, downstream of the nodes whose outputs it reads; the datasets pass
between tasks as files (paths in XCom). With ``per_node_tasks=False`` one task (``task_id``,
default ``livecalc``) runs the whole pipeline, as ``livecalc run`` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from livecalc.integrations.airflow.operator import LiveCalcOperator

__all__ = ["LiveCalcDagBuilder"]

# Airflow's rule for DAG and task ids (airflow.sdk.definitions._internal.node.KEY_REGEX).
_AIRFLOW_KEY = re.compile(r"^[\w.-]{1,250}$")
_SUMMARY = re.compile(r"^\d+ (problems in the config|engine config problems):$")


class LiveCalcDagBuilder:
    """Builds the Airflow DAG of one pipeline config.

    Args:
        config_path: the pipeline config; made absolute here, so pass it relative to the DAG
            file (``Path(__file__).parent / ...``), not to wherever Airflow parses it.
        dag_id: default ``livecalc_`` and the config's file name without ``.json``.
        schedule: Airflow's ``schedule`` (None: triggered by hand or by API).
        per_node_tasks: one task per engine node (True) or one for the whole pipeline.
        retries, retry_delay: every task's; a retry resumes the run from its checkpoint.
        overrides, store, checkpoint, executor, chunk_size, progress_every_chunks: passed to
            each ``LiveCalcOperator``.
        task_id: the single task's id when ``per_node_tasks`` is False.
        check_files: whether ``validate`` (and so ``build``) requires the config's data files
            to exist and initialises every engine (its own config checks, its assumption
            tables; no data is read); False for data another job writes before the DAG runs
            (then only the config's structure is checked when the DAG file is parsed).
        dag_kwargs: any other ``DAG`` argument (``tags``, ``default_args``, ...).
    """

    def __init__(
        self,
        config_path: str | Path,
        *,
        dag_id: str | None = None,
        schedule: Any = None,
        per_node_tasks: bool = True,
        start_date: datetime = datetime(2024, 1, 1),
        retries: int = 1,
        retry_delay: timedelta = timedelta(seconds=30),
        overrides: Sequence[str] = (),
        store: str | Path | None = None,
        checkpoint: str | Path | None = None,
        executor: str | None = None,
        chunk_size: int | None = None,
        progress_every_chunks: int | None = 10,
        task_id: str = "livecalc",
        description: str | None = None,
        check_files: bool = True,
        **dag_kwargs: Any,
    ) -> None:
        self.config_path = Path(config_path).resolve()
        stem = re.sub(r"[^\w.-]", "_", self.config_path.stem)
        self.dag_id = dag_id if dag_id is not None else f"livecalc_{stem}"
        self.schedule = schedule
        self.per_node_tasks = per_node_tasks
        self.start_date = start_date
        self.retries = retries
        self.retry_delay = retry_delay
        self.overrides = list(overrides)
        self.operator_kwargs: dict[str, Any] = {
            "store": store,
            "checkpoint": checkpoint,
            "executor": executor,
            "chunk_size": chunk_size,
            "progress_every_chunks": progress_every_chunks,
        }
        self.task_id = task_id
        self.check_files = check_files
        self.description = description or f"LiveCalc pipeline {self.config_path.name}"
        self.dag_kwargs = dag_kwargs

    def __repr__(self) -> str:
        return (
            f"LiveCalcDagBuilder({str(self.config_path)!r}, dag_id={self.dag_id!r}, "
            f"per_node_tasks={self.per_node_tasks})"
        )

    def validate(self) -> tuple[bool, list[str]]:
        """``(ok, problems)``: every problem of the config and of the ids Airflow will see."""
        problems, _ = self._check()
        return not problems, problems

    def _check(self) -> tuple[list[str], Mapping[str, set[str]]]:
        problems = [
            f"dag_id {name!r}: use 1 to 250 letters, digits, '_', '.' or '-'"
            for name in (self.dag_id,)
            if not _AIRFLOW_KEY.match(name)
        ]
        if self.retries < 0:
            problems.append(f"retries {self.retries}: use 0 or more")
        problems.extend(self._operator_problems())
        try:
            graph = self._graph()
        except Exception as exc:  # ConfigurationError, or a config file that is not JSON
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            lines = [line for line in lines if not _SUMMARY.match(line)]
            problems.extend(f"{self.config_path}: {line}" for line in lines)
            return problems, {}
        task_ids = list(graph) if self.per_node_tasks else [self.task_id]
        problems.extend(
            f"{self.config_path}: engine id {node!r} is no valid Airflow task id (1 to 250 "
            "letters, digits, '_', '.' or '-'): rename the engine, or set per_node_tasks=False"
            if self.per_node_tasks
            else f"task_id {node!r}: use 1 to 250 letters, digits, '_', '.' or '-'"
            for node in task_ids
            if not _AIRFLOW_KEY.match(node)
        )
        return problems, graph

    def _operator_problems(self) -> list[str]:
        """The operator arguments that would otherwise fail only when a task runs."""
        from livecalc.pipeline.executors import EXECUTORS

        kwargs = self.operator_kwargs
        problems = []
        executor = kwargs["executor"]
        if executor is not None and executor not in EXECUTORS:
            problems.append(
                f"executor {executor!r}: use one of {', '.join(EXECUTORS)}, or None for the "
                "config's run.executor"
            )
        chunk_size = kwargs["chunk_size"]
        if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
            problems.append(
                f"chunk_size {chunk_size!r}: use 1 or more policies per chunk, or None for the "
                "config's run.chunk_size"
            )
        every = kwargs["progress_every_chunks"]
        if every is not None and (isinstance(every, bool) or every < 1):
            problems.append(
                f"progress_every_chunks {every!r}: use 1 or more, or None for no chunk lines"
            )
        return problems

    def build(self) -> DAG:
        """The DAG; ``ConfigurationError`` listing every problem when ``validate`` finds any."""
        problems, graph = self._check()
        if problems:
            from livecalc.errors import ConfigurationError

            raise ConfigurationError(
                f"cannot build DAG {self.dag_id!r}:\n" + "\n".join(f"  {p}" for p in problems)
            )
        dag_kwargs = dict(self.dag_kwargs)
        with DAG(
            dag_id=self.dag_id,
            schedule=self.schedule,
            start_date=self.start_date,
            catchup=False,
            description=self.description,
            tags=list(dag_kwargs.pop("tags", ["livecalc"])),
            **dag_kwargs,
        ) as dag:
            if not self.per_node_tasks:
                self._task(self.task_id, None)
                return dag
            tasks = {node: self._task(node, node) for node in graph}
            for node, upstream in graph.items():
                for before in sorted(upstream):
                    tasks[before] >> tasks[node]
        return dag

    def _task(self, task_id: str, node: str | None) -> LiveCalcOperator:
        return LiveCalcOperator(
            task_id=task_id,
            config_path=self.config_path,
            node=node,
            overrides=self.overrides,
            retries=self.retries,
            retry_delay=self.retry_delay,
            **self.operator_kwargs,
        )

    def _graph(self) -> Mapping[str, set[str]]:
        """Each engine node id (in run order) and the ids of the nodes it reads from.

        With ``check_files``, every engine is initialised (and disposed of) too, as ``livecalc
        validate`` does but reading no data: an override of a key the engine does not know,
        or a value it refuses, is a problem now rather than a failed task later.
        """
        from livecalc.pipeline.api import check_engines
        from livecalc.pipeline.graph import EngineGraph
        from livecalc.pipeline.loading import load_config

        if self.check_files:
            config = check_engines(self.config_path, overrides=self.overrides, data=False)
        else:
            config = load_config(self.config_path, self.overrides, check_files=False)
        graph = EngineGraph(config)
        return {node: set(graph.predecessors.get(node, ())) for node in graph.order()}
