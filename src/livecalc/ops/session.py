"""``livecalc.run`` with operations: the run store, checkpoints, checks, SLA, alerts, report.

``run`` validates the config, computes the run's provenance, and runs the pipeline with
``OpsHooks`` following it: the store gets a ``running`` record when the run starts and the
full record when it ends; each finished chunk is checkpointed; the declared checks and the
SLA are evaluated before the summary file is written; the report and the alerts come last.
Nothing here may lose a run: a store that cannot be written is reported (``store_error``)
after the outputs are written, and an alert that fails is logged.

``resume`` finishes a killed run from its checkpoint, and a scheduler's retry of a run id
resumes it too. Beside this module: ``OpsHooks`` (``_hooks.py``), what the ``store=`` and
``checkpoint=`` options mean (``_options.py``), and the checks a resume makes (``_resume.py``);
their public names are imported from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import get_logger
from livecalc.ops._hooks import START_RECORD_DELAY, OpsHooks
from livecalc.ops._options import (
    CheckpointOption,
    StoreOption,
    checkpoints_of,
    new_checkpoint,
    store_of,
)
from livecalc.ops._result import RecordedRunResult
from livecalc.ops._resume import (
    RunFinished,
    finish_record,
    refused_record,
    resolve_run_id,
    resumable,
    retried_checkpoint,
)
from livecalc.ops.checkpoint import RunCheckpoint
from livecalc.ops.kept import kept_folder, mark_kept, new_run_id, resumed_selection, selection_meta
from livecalc.ops.liveness import RunLock, RunLockedError, lock_root, owner_of, run_id_of
from livecalc.ops.provenance import provenance
from livecalc.ops.store import RunStore
from livecalc.pipeline.api import RunResult
from livecalc.pipeline.api import run as pipeline_run
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.executors import Executor
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.selection import select
from livecalc.ports import CheckpointStore, ChunkStrategy, ProgressReporter, RunContext
from livecalc.ports.context import check_run_id
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.leftovers import check_replaceable

__all__ = [
    "START_RECORD_DELAY",
    "CheckpointOption",
    "OpsHooks",
    "RunFinished",
    "StoreOption",
    "resume",
    "run",
]

_log = get_logger()


def run(
    config_or_path: str | Path | Mapping[str, Any] | PipelineConfig,
    *,
    overrides: Sequence[str] = (),
    executor: str | Executor | None = None,
    chunk_size: int | None = None,
    credentials: AMCredentials | None = None,
    factory: EngineFactory | None = None,
    progress: ProgressReporter | None = None,
    base_dir: str | Path | None = None,
    parallelism: int | None = None,
    address: str | None = None,
    store: StoreOption = None,
    report: str | Path | None = None,
    checkpoint: CheckpointOption = None,
    source: str = "api",
    run_id: str | None = None,
    context: RunContext | None = None,
    nodes: Sequence[str] | None = None,
    datasets: Mapping[str, str | Path] | None = None,
    keep_datasets: bool | str | Path = False,
    chunking: ChunkStrategy | None = None,
    _resume: RunCheckpoint | None = None,
    _lock: RunLock | None = None,
) -> RunResult:
    """Validate and run a pipeline, recorded in the run store; see ``livecalc.pipeline.api.run``.

    Args:
        store: None or True: the store in ``$LIVECALC_HOME``; a folder (or .duckdb file):
            that store; False: record nothing (and keep no checkpoint by default).
        report: write the HTML run report to this file at the end.
        checkpoint: where chunk checkpoints go: a ``livecalc.ports.CheckpointStore``, a folder
            or ``pyarrow.fs`` URI; False: none; None: ``runs/`` beside the store, when the
            config's ``run.checkpoint`` is true.
        chunking: a ``livecalc.ports.ChunkStrategy`` (see ``livecalc.pipeline.api.run``).
        source: what started the run (``api``, ``cli``, ``demo``), shown by ``runs list``.
        parallelism, address: replica pools and the Ray cluster, as in
            ``livecalc.pipeline.api.run``.
        context: how a scheduler hands over its run (``livecalc.ports.RunContext``): the run
            id to use and the attempt. A retry (``attempt > 1``) of a run whose checkpoint
            is unfinished resumes it instead of starting over. When the run ends, the
            context's ``state`` gets ``run_id``, ``status``, ``resumed`` and ``outputs``
            (and ``datasets``, with ``keep_datasets``).
        nodes: run only these node ids; ``datasets`` gives the files of the datasets they read
            that other nodes produce (``{name: path}``; see docs/operations.md, "Running part
            of a pipeline").
        keep_datasets: True: write every dataset the run produces to
            ``$LIVECALC_HOME/runs/RUN_ID/datasets/`` (beside the store given); a folder: there.
            The paths are in ``result.summary.extras["datasets"]``.

    A run store that cannot be written (corrupt, from a newer LiveCalc, locked too long)
    does not lose the run: its outputs are written, the failure is logged (``store_failed``)
    and ``result.summary.extras["store_error"]`` says why (the CLI exits 2 with it).

    Raises:
        ConfigurationError: bad config or input; nothing ran.
    """
    if context is not None:
        if run_id is not None and run_id != context.run_id:
            raise ConfigurationError(
                f"run id {run_id!r} and the context's run id {context.run_id!r} differ: give one"
            )
        run_id = check_run_id(context.run_id)
        if _resume is None and context.attempt > 1:
            cp = retried_checkpoint(context, run_id, store, checkpoint, nodes)
            if cp is not None:
                return resume(
                    run_id,
                    store=store,
                    checkpoint=None if isinstance(checkpoint, bool) else checkpoint,
                    progress=progress,
                    report=report,
                    context=context,
                    _checkpoint=cp,
                )
    if _resume is not None:
        run_id = _resume.run_id
    # Checked before anything is written: the id names the run's folder.
    run_id = run_id_of(run_id) if run_id is not None else new_run_id()
    lock = _lock if _lock is not None else _claim(run_id, store, checkpoint, "run")
    try:
        return _run(
            config_or_path,
            run_id=run_id,
            lock=lock,
            overrides=overrides,
            executor=executor,
            chunk_size=chunk_size,
            credentials=credentials,
            factory=factory,
            progress=progress,
            base_dir=base_dir,
            parallelism=parallelism,
            address=address,
            store=store,
            report=report,
            checkpoint=checkpoint,
            source=source,
            context=context,
            nodes=nodes,
            datasets=datasets,
            keep_datasets=keep_datasets,
            chunking=chunking,
            _resume=_resume,
        )
    finally:
        if lock is not None and _lock is None:
            lock.release()


def _claim(
    run_id: str, store: StoreOption, checkpoint: CheckpointOption, action: str
) -> RunLock | None:
    """This process's claim on ``run_id`` (its lock in the run folder), or None where there is
    no local run folder for it (no store, no local checkpoint) or it cannot be made (a store
    folder that cannot be written: the run goes on, as with a store that cannot be written).

    Raises:
        RunLockedError: a live process owns the run id.
    """
    root = lock_root(store, checkpoint)
    if root is None:
        return None
    where = str(checkpoint) if isinstance(checkpoint, str | Path) else None
    try:
        return RunLock.acquire(root, run_id, checkpoint=where, action=action)
    except ImportError:  # pragma: no cover - no flock (Windows): no claim
        return None
    except OSError as exc:
        _log.warning("run_lock_failed", run=run_id, folder=str(root), error=str(exc))
        return None


def _run(
    config_or_path: str | Path | Mapping[str, Any] | PipelineConfig,
    *,
    run_id: str,
    lock: RunLock | None,
    overrides: Sequence[str],
    executor: str | Executor | None,
    chunk_size: int | None,
    credentials: AMCredentials | None,
    factory: EngineFactory | None,
    progress: ProgressReporter | None,
    base_dir: str | Path | None,
    parallelism: int | None,
    address: str | None,
    store: StoreOption,
    report: str | Path | None,
    checkpoint: CheckpointOption,
    source: str,
    context: RunContext | None,
    nodes: Sequence[str] | None,
    datasets: Mapping[str, str | Path] | None,
    keep_datasets: bool | str | Path,
    chunking: ChunkStrategy | None,
    _resume: RunCheckpoint | None,
) -> RunResult:
    """``run`` once the run id is claimed."""
    factory = factory if factory is not None else EngineFactory()
    run_store = store_of(store)
    try:
        config = load_config(
            config_or_path,
            overrides if _resume is None else (),
            factory=factory,
            base_dir=base_dir,
        )
        config_path = (
            str(Path(config_or_path).resolve()) if isinstance(config_or_path, str | Path) else None
        )
        if _resume is not None:
            config_path = _resume.manifest["meta"].get("config_path")
            overrides = _resume.manifest["meta"].get("overrides", [])
            nodes, datasets, keep_datasets = resumed_selection(_resume.manifest["meta"])
        selection = select(config, EngineGraph(config), factory, nodes, datasets)
        if report is not None:
            check_replaceable(Path(report))  # refused before the run, not after its outputs
        executor_name = executor if isinstance(executor, str) else config.run.executor
        prov = provenance(
            config,
            config_path=config_path,
            overrides=list(overrides),
            executor=str(executor_name),
            datasets=selection.files if selection is not None else None,
        )
        cp = _resume
        if cp is None:
            cp = new_checkpoint(config, prov, store, checkpoint, run_id, overrides, credentials)
            if cp is not None:
                cp.manifest["meta"].update(selection_meta(selection, prov, keep_datasets))
        keep_folder = kept_folder(config, keep_datasets, store, run_id)
    except ConfigurationError as exc:
        # Bad input, found once the config was read: the run is recorded as failed, and
        # its alerts go out (the nightly run whose input file is missing must be heard of).
        record, alerts = refused_record(
            config_or_path, exc, run_id=run_id, source=source, overrides=overrides
        )
        if record is not None:
            _record_and_alert(record, alerts, run_store)
        raise
    hooks = OpsHooks(
        config,
        prov,
        store=run_store,
        checkpoint=cp,
        source=source,
        resumed=_resume is not None,
        dataset_files=datasets,
    )
    if _resume is not None and run_store is not None:
        hooks.continue_from(_previous_record(run_store, run_id), lock.previous if lock else None)
    try:
        result = pipeline_run(
            config,
            executor=executor,
            chunk_size=chunk_size,
            credentials=credentials,
            factory=factory,
            progress=hooks.progress(progress),
            parallelism=parallelism,
            address=address,
            hooks=hooks,
            run_id=run_id,
            nodes=nodes,
            datasets=datasets,
            keep_datasets=keep_folder,
            chunking=chunking,
        )
    except KeyboardInterrupt:
        if not hooks.record:
            hooks.run_started(run_id, config)
        hooks.finish("interrupted", "interrupted (Ctrl-C)")
        _alert(config, hooks, run_store)
        raise
    except CalcEngineError as exc:
        if not hooks.record:
            # Refused before it started (an engine's config, its data): recorded all the same.
            hooks.run_started(run_id, config)
        hooks.finish("failed", str(exc))
        _alert(config, hooks, run_store)
        if context is not None:
            context.state.update({"run_id": hooks.record.get("run_id"), "status": "failed"})
            context.log("error", "livecalc_run_failed", error=str(exc))
        raise
    status = _status(result)
    if report is not None:
        hooks.record["report_path"] = str(Path(report).resolve())
    hooks.finish(status)
    if keep_datasets is True and keep_folder is not None:
        mark_kept(keep_folder)
    try:
        if report is not None:
            from livecalc.ops.report import write_report

            write_report(Path(report), hooks.record)
            result.summary.written["report"] = Path(report)
    except BaseException:
        hooks.record["report_path"] = None  # the alert points at no report that is not there
        raise
    finally:
        _alert(config, hooks, run_store)  # whatever the report did
    result.summary.extras["store"] = str(run_store.file) if run_store is not None else None
    if hooks.store_error is not None:
        result.summary.extras["store_error"] = hooks.store_error
    if context is not None:
        _tell(context, result, status, resumed=_resume is not None)
    return RecordedRunResult(result.summary, result.config, hooks.record)


def _previous_record(run_store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The record of the attempt a resume continues (None when the store has none)."""
    try:
        return run_store.get(run_id)
    except ConfigurationError:
        return None


def _record_and_alert(
    record: dict[str, Any], alerts: Sequence[Any], run_store: RunStore | None
) -> None:
    """Record a run refused before it started, and send its alerts; neither may raise."""
    if run_store is not None:
        try:
            run_store.record(record)
        except (ConfigurationError, OSError) as exc:
            _log.error("store_failed", store=str(run_store.file), error=str(exc))
    if not alerts:
        return
    from livecalc.ops.alerts import alert_message, send_alerts

    message = alert_message(record, str(run_store.file) if run_store is not None else None)
    try:
        send_alerts(alerts, message)
    except Exception as exc:  # an alert must never fail the run
        _log.error("alert_failed", error=type(exc).__name__)


def resume(
    run_id: str,
    *,
    store: StoreOption = None,
    checkpoint: CheckpointStore | str | Path | None = None,
    progress: ProgressReporter | None = None,
    report: str | Path | None = None,
    context: RunContext | None = None,
    _checkpoint: RunCheckpoint | None = None,
) -> RunResult:
    """Finish a run that was killed: only the chunks its checkpoint lacks are computed.

    ``run_id`` may be a unique prefix of the run's id. ``checkpoint`` is where the run kept
    its chunks: a ``livecalc.ports.CheckpointStore``, a folder or ``pyarrow.fs`` URI
    (default: ``runs/`` beside the store). The resume claims the run id first, so a run
    that is still running (or being resumed) is refused; the record keeps the first
    attempt's start and every attempt (``attempts``).

    Raises:
        ConfigurationError: no checkpoint for this run, the run finished, or its config or an
            input file changed since (sha256 mismatch).
        RunLockedError: the run is still running (its pid and host named).
        RunFinished: the run had finished when it was killed (before its final record):
            its record is now complete, and there is nothing to resume.
    """
    run_id = run_id_of(run_id)
    if _checkpoint is None:
        run_id = resolve_run_id(run_id, store, checkpoint)
    first = _checkpoint
    if first is None:
        try:
            first = RunCheckpoint.load(checkpoints_of(store, checkpoint), run_id)
        except ConfigurationError:
            root = lock_root(store, checkpoint)
            owner = owner_of(root, run_id) if root is not None else None
            if owner is not None and owner.alive:
                raise RunLockedError(
                    f"run {run_id!r} is running ({owner.describe()}) and has kept no "
                    "checkpoint yet; resume it once it has ended (or stop that process)"
                ) from None
            raise
    run_store = store if store is not None else first.manifest["meta"].get("store")
    lock = _claim(run_id, run_store, checkpoint, "resume")
    try:
        # Read again now that the run is ours: its owner may have written more meanwhile.
        cp = RunCheckpoint.load(first.store, run_id)
        if cp.manifest.get("complete"):
            finish_record(run_id, cp, store_of(run_store))
        config, cp = resumable(run_id, run_store, checkpoint, cp)
        return run(
            config,
            overrides=[],
            store=run_store,
            report=report,
            source="resume",
            progress=progress,
            context=context,
            _resume=cp,
            _lock=lock,
        )
    finally:
        if lock is not None:
            lock.release()


def _status(result: RunResult) -> str:
    if any(r.status == "failed" for r in result.nodes.values()):
        return "failed"
    if result.summary.failed_checks:
        return "check_failed"
    return "succeeded"


def _tell(context: RunContext, result: RunResult, status: str, resumed: bool) -> None:
    """Leave the run's outcome in the scheduler's context."""
    context.state.update(
        {
            "run_id": result.run_id,
            "status": status,
            "resumed": resumed,
            "outputs": {name: str(path) for name, path in result.written.items()},
            "datasets": {name: str(path) for name, path in result.summary.kept.items()},
        }
    )
    context.log(
        "info" if status == "succeeded" else "error",
        "livecalc_run_finished",
        run_id=result.run_id,
        status=status,
        seconds=round(result.seconds, 3),
    )


def _alert(config: PipelineConfig, hooks: OpsHooks, store: RunStore | None) -> None:
    if not config.alerts:
        return
    from livecalc.ops.alerts import alert_message, send_alerts

    message = alert_message(hooks.record, str(store.file) if store is not None else None)
    try:
        hooks.record["alerts"] = send_alerts(config.alerts, message)
    except Exception as exc:  # an alert must never fail the run
        _log.error("alert_failed", error=type(exc).__name__)
