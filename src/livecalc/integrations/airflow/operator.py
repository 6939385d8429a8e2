"""``LiveCalcOperator``: one LiveCalc run (a whole config, or one node of it) as an Airflow task.

What maps to what:

- the task instance -> the LiveCalc run id (``airflow_run_id``: the same on every try);
- the try number -> the run's attempt: a retry (try 2, 3, ...) of a run that left an
  unfinished checkpoint resumes it, computing only the chunks the checkpoint lacks;
- the run's outputs -> XCom: ``run_id``, ``outputs`` ({name: path}), ``datasets`` (per-node
  tasks: {name: path} of every dataset the node produced), and the return value (the run's
  state: ``run_id``, ``status``, ``resumed``, ``outputs``);
- a failed ``error`` check -> the task fails with the check's message, without retries (the
  same inputs give the same values); a failed ``warn`` check -> a warning in the task log;
- a bad config -> the task fails without retries, every problem named; a node that failed ->
  the task fails and Airflow's retries resume the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from livecalc.integrations.airflow.context import AirflowRunContext

if TYPE_CHECKING:
    from livecalc.pipeline.api import RunResult

__all__ = ["LiveCalcOperator"]


class LiveCalcOperator(BaseOperator):
    """Run a LiveCalc pipeline config, or the one engine node ``node`` of it.

    Args:
        config_path: the pipeline config (JSON); relative paths inside it resolve against its
            folder, as with ``livecalc run``.
        node: run only this engine node; the datasets it reads from other nodes come from
            the ``datasets`` XCom of this task's upstream tasks, and every dataset it produces
            is kept in a file, its path pushed as XCom ``datasets``. None: the whole pipeline.
        overrides: ``engine.key=value`` strings (``livecalc run --set``).
        store: the LiveCalc run store folder (default ``$LIVECALC_HOME``).
        checkpoint: where chunk checkpoints go (a folder or ``pyarrow.fs`` URI; default
            ``runs/`` beside the store). Workers that retry a task must reach it.
        executor, chunk_size: as ``livecalc run --executor`` / ``--chunk-size``. The executor
            is kept as ``livecalc_executor``: ``BaseOperator.executor`` is Airflow's own (the
            Airflow executor that runs the task), which a LiveCalc executor name would break.
        progress_every_chunks: the task log gets each node's start and end and every n-th
            finished chunk (``livecalc.ports.progress.LogProgress``); None: none of them.
    """

    template_fields: Sequence[str] = ("config_path", "overrides", "store", "checkpoint")
    ui_color = "#dbe8f5"

    def __init__(
        self,
        *,
        config_path: str | Path,
        node: str | None = None,
        overrides: Sequence[str] = (),
        store: str | Path | None = None,
        checkpoint: str | Path | None = None,
        executor: str | None = None,
        chunk_size: int | None = None,
        progress_every_chunks: int | None = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.config_path = str(config_path)
        self.node = node
        self.overrides = list(overrides)
        self.store = None if store is None else str(store)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.livecalc_executor = executor
        self.chunk_size = chunk_size
        self.progress_every_chunks = progress_every_chunks

    def execute(self, context: Context) -> dict[str, Any]:
        """Run LiveCalc for this task instance; the run's state is the return value (XCom)."""
        ti = context["ti"]
        ctx = AirflowRunContext(ti)
        result = self._run(ctx, self._upstream_datasets(context))
        state = dict(ctx.state)
        if self.node is not None:
            ti.xcom_push(key="datasets", value=state.get("datasets", {}))
        ti.xcom_push(key="run_id", value=state["run_id"])
        ti.xcom_push(key="outputs", value=state.get("outputs", {}))
        self._check(ctx, result)
        return state

    def _run(self, ctx: AirflowRunContext, datasets: Mapping[str, str]) -> RunResult:
        from livecalc.errors import CalcEngineError, ConfigurationError
        from livecalc.ops.session import run
        from livecalc.ports.progress import LogProgress

        every = self.progress_every_chunks
        try:
            result = run(
                self.config_path,
                overrides=self.overrides,
                store=self.store,
                checkpoint=self.checkpoint,
                executor=self.livecalc_executor,
                chunk_size=self.chunk_size,
                source="airflow",
                context=ctx,
                progress=None if every is None else LogProgress(ctx, every_chunks=every),
                nodes=None if self.node is None else [self.node],
                datasets=datasets if self.node is not None else None,
                # A node's datasets are files the downstream tasks read.
                keep_datasets=self.node is not None,
            )
        except ConfigurationError as exc:
            # A config error stays one on every try: fail now, each problem named.
            raise AirflowFailException(f"LiveCalc config {self.config_path}: {exc}") from None
        except CalcEngineError as exc:
            raise AirflowException(
                f"LiveCalc run {ctx.run_id} (attempt {ctx.attempt}) failed: {exc}"
            ) from exc
        failed = {k: r.error for k, r in result.nodes.items() if r.status == "failed"}
        if failed:
            detail = "; ".join(f"node {k!r}: {e}" for k, e in failed.items())
            raise AirflowException(
                f"LiveCalc run {ctx.run_id} (attempt {ctx.attempt}) failed: {detail}; "
                "a retry resumes it from its checkpoint"
            )
        return result

    def _upstream_datasets(self, context: Context) -> dict[str, str]:
        """The dataset files this node's upstream tasks produced (their ``datasets`` XCom).

        Every ancestor, not only the direct ones: a solver that re-runs the projection reads
        the scenarios of the ESG two tasks up.
        """
        if self.node is None:
            return {}
        found: dict[str, str] = {}
        for task_id in sorted(self.get_flat_relative_ids(upstream=True)):
            pushed = context["ti"].xcom_pull(task_ids=task_id, key="datasets")
            if isinstance(pushed, Mapping):
                found.update({str(k): str(v) for k, v in pushed.items()})
        return found

    def _check(self, ctx: AirflowRunContext, result: RunResult) -> None:
        """Warn on failed ``warn`` checks; fail the task on failed ``error`` checks."""
        failed = [c for c in result.summary.extras.get("checks", []) if not c["passed"]]
        for check in failed:
            if check["severity"] != "error":
                ctx.log("warning", "livecalc_check_failed", name=check["name"],
                        message=check["message"])  # fmt: skip
        errors = [c for c in failed if c["severity"] == "error"]
        if errors:
            reasons = "; ".join(f"{c['name']}: {c['message']}" for c in errors)
            raise AirflowFailException(
                f"LiveCalc run {ctx.run_id}: {len(errors)} declared check(s) failed: {reasons} "
                f"(outputs kept: {', '.join(ctx.state.get('outputs', {}).values()) or 'none'})"
            )
