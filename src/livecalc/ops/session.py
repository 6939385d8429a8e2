"""``livecalc.run`` with operations: the run store, checkpoints, checks, SLA, alerts, report.

``run`` validates the config, computes the run's provenance, and runs the pipeline with
``OpsHooks`` following it: the store gets a ``running`` record when the run starts and the
full record when it ends; each finished chunk is checkpointed; the declared checks and the
SLA are evaluated before the summary file is written; the report and the alerts come last.
Nothing here may lose a run: a store that cannot be written is reported (``store_error``)
after the outputs are written, and an alert that fails is logged.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import get_logger
from livecalc.ops.checkpoint import RunCheckpoint, checkpoint_store
from livecalc.ops.home import checkpoint_root
from livecalc.ops.kept import (
    check_resumed_datasets,
    check_same_selection,
    checks_in_scope,
    kept_folder,
    mark_kept,
    new_run_id,
    resumed_selection,
    selection_meta,
)
from livecalc.ops.provenance import PROVENANCE_KEY, file_sha256, provenance
from livecalc.ops.store import RunStore, utc_now
from livecalc.pipeline.api import RunResult
from livecalc.pipeline.api import run as pipeline_run
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.executors import Executor
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.hooks import RunHooks
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.selection import select
from livecalc.ports import CheckpointStore, ChunkStrategy, ProgressReporter, RunContext
from livecalc.ports.context import check_run_id
from livecalc.runtime.factory import EngineFactory

if TYPE_CHECKING:
    from livecalc.pipeline._summary import RunSummary

__all__ = ["OpsHooks", "StoreOption", "resume", "run"]

_log = get_logger()

START_RECORD_DELAY = 1.0
"""Seconds a run goes before its ``running`` record is written (see ``OpsHooks``)."""

StoreOption = bool | str | Path | None
"""None or True: ``$LIVECALC_HOME``; a folder or .duckdb file; False: record nothing."""

CheckpointOption = CheckpointStore | str | Path | bool | None
"""A ``CheckpointStore``, a folder or ``pyarrow.fs`` URI; False: none; None or True: the
default (``runs/`` beside the store, when the config's ``run.checkpoint`` is true)."""


def _store_of(store: StoreOption) -> RunStore | None:
    if store is False:
        return None
    return RunStore(None if store is None or store is True else store)


class OpsHooks(RunHooks):
    """Follows one run: store records, checkpoints, checks, SLA, chart data."""

    def __init__(
        self,
        config: PipelineConfig,
        prov: dict[str, Any],
        *,
        store: RunStore | None,
        checkpoint: RunCheckpoint | None,
        source: str,
        resumed: bool = False,
    ) -> None:
        self.config = config
        self.prov = prov
        self.store = store
        self.checkpoint = checkpoint
        self.source = source
        self.resumed = resumed
        self.store_error: str | None = None
        self.record: dict[str, Any] = {}
        self.timeline: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        self._starts: dict[str, float] = {}
        self._chunk_starts: dict[str, float] = {}
        self._resolved: list[tuple[str, str, str]] = []
        self._token: Any = None
        self._starting: threading.Thread | None = None
        self._finished = threading.Event()

    # -- progress (the timeline) ------------------------------------------------------------

    def progress(self, user: ProgressReporter | None) -> ProgressReporter:
        """A progress callback that records node start and end times, then calls ``user``."""

        def follow(event: str, node_id: str, **info: Any) -> None:
            now = time.perf_counter() - self._t0
            if event == "node_started":
                self._starts[node_id] = now
                self._chunk_starts[node_id] = now
            elif event == "chunk_finished":
                self._chunk_starts[node_id] = now
            elif event == "node_finished":
                start = self._starts.get(node_id, now)
                self.timeline.append(
                    {"node_id": node_id, "start": start, "end": now, "status": info.get("status")}
                )
            if user is not None:
                user(event, node_id, **info)

        return follow

    # -- hooks --------------------------------------------------------------------------------

    def run_started(self, run_id: str, config: PipelineConfig) -> Mapping[str, str]:
        from livecalc.assumptions.client import RESOLVED

        self._t0 = time.perf_counter()
        self._token = RESOLVED.set(self._resolved)
        self.record = {
            "run_id": run_id,
            "started_at": utc_now().isoformat() + "Z",
            "finished_at": None,
            "status": "running",
            "seconds": None,
            "source": self.source,
            "resumed": int(self.resumed),
            "provenance": self.prov,
        }
        # The first record (status running: `runs list` shows the run, and a killed run stays
        # listed) is written while the run goes on, and only once it has run for
        # START_RECORD_DELAY seconds: a shorter run is recorded once, at its end, so the store
        # costs a short run one write instead of two.
        self._starting = threading.Thread(
            target=self._save_later, args=(dict(self.record),), daemon=True
        )
        self._starting.start()
        return {PROVENANCE_KEY: json.dumps(self.prov, default=str)}

    def stored_chunks(self, node_id: str, chunk_size: int, chunks: int) -> Mapping[int, np.ndarray]:
        if self.checkpoint is None or chunks < 2 or _collects_per_chunk(self.config, node_id):
            return {}
        stored = self.checkpoint.stored(node_id, chunk_size, chunks)
        if len(stored) == chunks:
            # Every chunk kept: the last one still runs, so that the engine's get_outputs()
            # (the projection's method, a node's statistics) are those of a real run.
            stored.discard(chunks - 1)
        return stored

    def chunk_output(
        self, node_id: str, chunk: int, chunks: int, records: np.ndarray, stable: bool = False
    ) -> None:
        if self.checkpoint is None or chunks < 2 or _collects_per_chunk(self.config, node_id):
            return
        options = self.config.run
        # Seconds since the node's previous chunk finished: with replicas computing chunks
        # side by side, the time per chunk of the node's throughput, which a write competes
        # with.
        seconds = time.perf_counter() - self._t0 - self._chunk_starts.get(node_id, 0.0)
        if options.checkpoint_chunks == "auto" and not (
            self.checkpoint.worth_writing(records.nbytes, seconds, options.checkpoint_max_overhead)
            if options.checkpoint_min_chunk_seconds is None
            else seconds >= options.checkpoint_min_chunk_seconds
        ):
            # Cheaper to compute again on resume than to write now.
            self.checkpoint.skipped += 1
            return
        self.checkpoint.put_chunk(node_id, chunk, chunks, records, stable=stable)

    def run_finished(self, summary: RunSummary) -> None:
        from livecalc.ops.alerts import sla_results
        from livecalc.ops.checks import RunData, evaluate_checks

        self._reset_resolved()
        if self.checkpoint is not None:
            # A run that failed keeps every part queued (resume needs them); one that
            # succeeded has no use for parts not yet written.
            self.checkpoint.close(drain=not summary.success)
        config = self.config
        if self._resolved:
            versions = {ref: (name, ver) for ref, name, ver in self._resolved}
            for a in self.prov["assumptions"]:
                a["name"], a["version"] = versions.get(a["reference"], (None, None))
        outputs = [
            {
                "name": name,
                "path": str(path),
                "sha256": file_sha256(path),
                "size_bytes": Path(path).stat().st_size,
            }
            for name, path in summary.written.items()
            if Path(path).is_file()
        ]
        statistics = {k: r.outputs for k, r in summary.nodes.items() if r.outputs}
        datasets = {
            **{k: v for k, v in summary.written.items()},
            **{k: v for k, v in summary.datasets.items() if isinstance(v, np.ndarray)},
        }
        for name, src in config.data_sources.items():
            datasets.setdefault(name, config.resolve(src.path))
        declared, not_run = config.checks, list[dict[str, str]]()
        if summary.selection:
            # A run of some nodes checks what it produced; the other runs check the rest.
            declared, not_run = checks_in_scope(config, summary.selection["nodes"])
        checks = [
            c.to_dict() for c in evaluate_checks(declared, RunData(datasets, statistics, config))
        ]
        sla = sla_results(config, summary.seconds, {k: r.seconds for k, r in summary.nodes.items()})
        if summary.selection:
            sla = [s for s in sla if s["target"] == "run" or s["target"] in summary.nodes]
        summary.failed_checks = [
            c["name"] for c in checks if not c["passed"] and c["severity"] == "error"
        ]
        summary.extras = {
            "provenance": self.prov,
            "outputs": outputs,
            "checks": checks,
            "sla": sla,
        }
        if not_run:
            summary.extras["checks_not_run"] = not_run
        if summary.kept:
            summary.extras["datasets"] = {k: str(v) for k, v in summary.kept.items()}
            self.record["datasets"] = summary.extras["datasets"]
        if summary.selection:
            self.record["selection"] = summary.selection
        self.record.update(
            {
                "nodes": [r.to_dict() for r in summary.nodes.values()],
                "metrics": _metrics(statistics),
                "checks": checks,
                "sla": sla,
                "outputs": outputs,
                "charts": _charts(summary.datasets, statistics, self.timeline),
                "seconds": summary.seconds,
            }
        )
        if config.output is not None and config.output.summary_path:
            self.record["summary_path"] = str(config.resolve(config.output.summary_path))

    def _reset_resolved(self) -> None:
        from livecalc.assumptions.client import RESOLVED

        if self._token is not None:
            RESOLVED.reset(self._token)
            self._token = None

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the run's end (status: succeeded, failed, check_failed, interrupted)."""
        self._reset_resolved()
        self.record["status"] = status
        self.record["finished_at"] = utc_now().isoformat() + "Z"
        if self.record.get("seconds") is None:
            self.record["seconds"] = time.perf_counter() - self._t0
        if error is not None:
            self.record["error"] = error
        if self.checkpoint is not None and status in ("succeeded", "check_failed"):
            try:
                self.checkpoint.finish()
            except OSError as exc:
                _log.warning("checkpoint_cleanup_failed", error=str(exc))
        elif self.checkpoint is not None:
            self.checkpoint.close(drain=True)
        if self._starting is not None:
            self._finished.set()
            self._starting.join()
        self._save(self.record)
        _log.info("run_recorded", status=status, store=self._store_name())

    def _save_later(self, record: Mapping[str, Any]) -> None:
        # A run that keeps checkpoints is recorded at once: killed in its first second, it can
        # still be resumed (resume finds the run in the store).
        delay = 0.0 if self.checkpoint is not None else START_RECORD_DELAY
        if not self._finished.wait(delay):
            self._save(record)

    def _save(self, record: Mapping[str, Any]) -> None:
        if self.store is None or self.store_error is not None:
            return
        try:
            self.store.record(record)
        except (ConfigurationError, OSError) as exc:
            # The run goes on and its outputs are written; the caller reports this at the end.
            self.store_error = str(exc)
            _log.error("store_failed", store=str(self.store.file), error=str(exc))

    def _store_name(self) -> str | None:
        return str(self.store.file) if self.store is not None else None


def _collects_per_chunk(config: PipelineConfig, node_id: str) -> bool:
    """Whether the node's engine builds part of its get_outputs() chunk by chunk (the
    projection's ``audit`` cash flows, for the audited policies each chunk holds): a chunk
    reused from a checkpoint would leave them out, so such a node computes every chunk."""
    return bool(config.node(node_id).config.get("audit"))


def _metrics(statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The numbers worth comparing between runs, by node: a node's top-level numbers, its
    ``metrics``, ``solution`` and the optimisation's parameters, value and effort."""
    out: dict[str, dict[str, float]] = {}
    for node_id, outputs in statistics.items():
        flat: dict[str, float] = {}
        _numbers("", outputs, flat)
        for key in ("metrics", "solution"):
            _numbers(f"{key}.", outputs.get(key), flat)
        opt = outputs.get("optimization")
        if isinstance(opt, Mapping):
            _numbers("optimization.parameters.", opt.get("parameters"), flat)
            keep = ("objective_value", "iterations", "evaluations", "seconds")
            _numbers("optimization.", {k: opt.get(k) for k in keep}, flat)
        if flat:
            out[node_id] = flat
    return out


def _numbers(prefix: str, values: Any, flat: dict[str, float]) -> None:
    if isinstance(values, Mapping):
        for k, v in values.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                flat[f"{prefix}{k}"] = float(v)


def _charts(
    datasets: Mapping[str, Any],
    statistics: Mapping[str, Mapping[str, Any]],
    timeline: list[dict[str, Any]],
) -> dict[str, Any]:
    from livecalc.ops.charts import chart_data

    try:
        return chart_data(datasets, statistics, timeline)
    except Exception as exc:  # the report's charts must never cost the run its record
        _log.warning("chart_data_failed", error=f"{type(exc).__name__}: {exc}")
        return {"timeline": timeline}


def _status(result: RunResult) -> str:
    if any(r.status == "failed" for r in result.nodes.values()):
        return "failed"
    if result.summary.failed_checks:
        return "check_failed"
    return "succeeded"


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
            cp = _unfinished(run_id, store, checkpoint)
            if cp is not None:
                check_same_selection(run_id, cp.manifest["meta"], nodes)
                context.log("info", "livecalc_resuming", run_id=run_id, attempt=context.attempt)
                return resume(
                    run_id,
                    store=store,
                    checkpoint=None if isinstance(checkpoint, bool) else checkpoint,
                    progress=progress,
                    report=report,
                    context=context,
                    _checkpoint=cp,
                )
    factory = factory if factory is not None else EngineFactory()
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
    run_store = _store_of(store)
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
        if keep_datasets is True and run_id is None:
            run_id = new_run_id()  # the datasets folder is named after it
        cp = _new_checkpoint(config, prov, store, checkpoint, run_id, overrides)
        if cp is not None:
            cp.manifest["meta"].update(selection_meta(selection, prov, keep_datasets))
    run_id = cp.run_id if cp is not None else run_id
    keep_folder = kept_folder(config, keep_datasets, store, run_id)
    hooks = OpsHooks(
        config, prov, store=run_store, checkpoint=cp, source=source, resumed=_resume is not None
    )
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
        hooks.finish("interrupted", "interrupted (Ctrl-C)")
        _alert(config, hooks, run_store)
        raise
    except CalcEngineError as exc:
        if hooks.record:
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
    if report is not None:
        from livecalc.ops.report import write_report

        write_report(Path(report), hooks.record)
        result.summary.written["report"] = Path(report)
    _alert(config, hooks, run_store)
    result.summary.extras["store"] = str(run_store.file) if run_store is not None else None
    if hooks.store_error is not None:
        result.summary.extras["store_error"] = hooks.store_error
    if context is not None:
        _tell(context, result, status, resumed=_resume is not None)
    return result


def _checkpoints(store: StoreOption, checkpoint: CheckpointOption) -> CheckpointStore:
    """The checkpoint store a run uses: the one given, or that of a folder or URI, or
    ``runs/`` beside the run store."""
    if isinstance(checkpoint, CheckpointStore):
        return checkpoint
    if isinstance(checkpoint, str | Path):
        return checkpoint_store(checkpoint)
    if checkpoint is not None and not isinstance(checkpoint, bool):
        raise ConfigurationError(
            f"checkpoint: {checkpoint!r} is not a CheckpointStore, a folder, a URI or a bool "
            "(a CheckpointStore has put, get, list and delete: see livecalc.ports)"
        )
    return checkpoint_store(checkpoint_root(store if isinstance(store, str | Path) else None))


def _unfinished(
    run_id: str, store: StoreOption, checkpoint: CheckpointOption
) -> RunCheckpoint | None:
    """The checkpoint of ``run_id`` when there is one that did not finish, else None."""
    if checkpoint is False:
        return None
    try:
        cp = RunCheckpoint.load(_checkpoints(store, checkpoint), run_id)
    except ConfigurationError:
        return None
    return None if cp.manifest.get("complete") else cp


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


def _new_checkpoint(
    config: PipelineConfig,
    prov: Mapping[str, Any],
    store: StoreOption,
    checkpoint: CheckpointOption,
    run_id: str | None,
    overrides: Sequence[str],
) -> RunCheckpoint | None:
    if checkpoint is False or (
        checkpoint is None and (store is False or not config.run.checkpoint)
    ):
        return None
    import uuid

    folder = store if isinstance(store, str | Path) else None
    checkpoints = _checkpoints(store, checkpoint)
    meta = {
        "config_path": prov["config_path"],
        "overrides": list(overrides),
        "config_hash": prov["config_hash"],
        "inputs": prov["inputs"],
        "config": None if prov["config_path"] else config.model_dump(mode="json"),
        "location": str(checkpoint) if isinstance(checkpoint, str | Path) else repr(checkpoints),
        "store": None if folder is None else str(folder),
    }
    return RunCheckpoint(checkpoints, run_id or uuid.uuid4().hex[:12], meta)


def _alert(config: PipelineConfig, hooks: OpsHooks, store: RunStore | None) -> None:
    if not config.alerts:
        return
    from livecalc.ops.alerts import alert_message, send_alerts

    message = alert_message(hooks.record, str(store.file) if store is not None else None)
    try:
        hooks.record["alerts"] = send_alerts(config.alerts, message)
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

    ``checkpoint`` is where the run kept its chunks: a ``livecalc.ports.CheckpointStore``,
    a folder or ``pyarrow.fs`` URI (default: ``runs/`` beside the store).

    Raises:
        ConfigurationError: no checkpoint for this run, the run finished, or its config or an
            input file changed since (sha256 mismatch).
    """
    cp = _checkpoint or RunCheckpoint.load(_checkpoints(store, checkpoint), run_id)
    meta = cp.manifest["meta"]
    if cp.manifest.get("complete"):
        raise ConfigurationError(f"run {run_id!r} finished; there is nothing to resume")
    source: Any = meta["config_path"] if meta.get("config_path") else meta["config"]
    if isinstance(source, str) and not Path(source).is_file():
        raise ConfigurationError(
            f"run {run_id!r}: its config {source} is gone; resume needs the config it ran"
        )
    base_dir = None
    if isinstance(source, dict):
        # A config given as a dict: its relative paths resolve where they did.
        source = dict(source)
        base_dir = source.pop("base_dir", None)
    config = load_config(source, meta.get("overrides", []), base_dir=base_dir)
    check_resumed_datasets(run_id, meta)
    _nodes, datasets, _keep = resumed_selection(meta)
    prov = provenance(
        config,
        config_path=None,
        overrides=[],
        executor=config.run.executor,
        datasets={name: Path(path) for name, path in (datasets or {}).items()},
    )
    if prov["config_hash"] != meta["config_hash"]:
        raise ConfigurationError(
            f"run {run_id!r}: the config {meta.get('config_path') or ''} changed since the run "
            f"started (sha256 {meta['config_hash'][:12]}... now {prov['config_hash'][:12]}...); "
            "resume refuses to mix results: start a new run"
        )
    now = {i["path"]: i["sha256"] for i in prov["inputs"]}
    for item in meta.get("inputs", []):
        if now.get(item["path"]) != item["sha256"]:
            raise ConfigurationError(
                f"run {run_id!r}: input file {item['path']} changed since the run started "
                "(sha256 differs) or is gone; resume refuses to mix results: start a new run"
            )
    _log.info(
        "run_resumed", run=run_id, done={k: len(v["done"]) for k, v in cp.manifest["nodes"].items()}
    )
    return run(
        config,
        overrides=[],
        store=store if store is not None else meta.get("store"),
        report=report,
        source="resume",
        progress=progress,
        context=context,
        _resume=cp,
    )
