"""The DAG runner: initialise every engine, run nodes in dependency order, merge, write, report.

A run goes:

1. data sources are read into buffers (shared memory when the executor needs it: ``_inputs``);
2. every node's engine is created and initialised once; engine config errors from all nodes
   are collected and raised as one ConfigurationError, prefixed with each node's JSON path,
   before anything runs (``_engines``);
3. nodes run as soon as their inputs are ready, independent ones at the same time on threads
   (numba kernels release the GIL: ``_scheduling``); a chunked node streams its records to
   the Parquet writer when no other node reads them (``_node``, ``_recording``);
4. a solver that binds an evaluator gets one that re-runs its upstream projection with
   parameter overrides, on the same initialised engine and reused buffers; the projection's
   original parameters are restored afterwards (``_goal_seek``);
5. a failing node fails alone: its downstream nodes are skipped, outputs already finished are
   kept and written, and the summary says what ran, what failed and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import CalcEngineError, ExecutionError
from livecalc.log import get_logger, run_context
from livecalc.pipeline._data_checks import check_source_data, handles_checker
from livecalc.pipeline._engines import check_buffer_sizes, esg_horizons, start_engines
from livecalc.pipeline._goal_seek import bind_evaluator, upstream_projection
from livecalc.pipeline._inputs import load_files, load_sources, node_inputs
from livecalc.pipeline._node import ChunkPlan, NodeRunner
from livecalc.pipeline._outputs import OutputPlan
from livecalc.pipeline._recording import engine_esg_metadata, publish, record_result
from livecalc.pipeline._scheduling import mark_failed, run_when_ready
from livecalc.pipeline._summary import NodeReport, RunSummary, write_json_atomic
from livecalc.pipeline.chunking import Footprint, node_chunk_size, strategy_of
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.executors import EngineHandle, Executor, create_executor
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.hooks import RunHooks
from livecalc.pipeline.pool import ReplicaPool, reads_policies
from livecalc.pipeline.selection import DatasetKeeper, Selection
from livecalc.ports import ChunkStrategy, ProgressReporter
from livecalc.runtime.buffers import BufferManager
from livecalc.runtime.factory import EngineFactory

__all__ = ["ProgressCallback", "Runner"]

_log = get_logger()

RUN_ID_KEY = "livecalc.run_id"
"""Parquet key-value metadata key of the run that wrote the file."""

ProgressCallback = ProgressReporter
"""The old name of ``livecalc.ports.ProgressReporter``: called as ``progress(event, node_id,
**info)`` with events ``node_started`` (chunks, chunk_size, chunking), ``chunk_finished``
(chunk, chunks, policies) and ``node_finished`` (status)."""


class Runner:
    """Runs a validated pipeline config once; ``run()`` returns the RunSummary."""

    def __init__(
        self,
        config: PipelineConfig,
        *,
        factory: EngineFactory | None = None,
        credentials: AMCredentials | None = None,
        executor: str | Executor | None = None,
        chunk_size: int | None = None,
        progress: ProgressReporter | None = None,
        parallelism: int | None = None,
        address: str | None = None,
        hooks: RunHooks | None = None,
        run_id: str | None = None,
        selection: Selection | None = None,
        keep_datasets: Path | None = None,
        chunking: ChunkStrategy | None = None,
    ) -> None:
        self.config = config
        self.graph = EngineGraph(config)
        # Part of the pipeline (livecalc.pipeline.selection): the nodes run, those only
        # initialised, the datasets read from files; None runs every node.
        self.selection = selection
        self._keeper = DatasetKeeper(keep_datasets) if keep_datasets is not None else None
        self.factory = factory if factory is not None else EngineFactory()
        self.credentials = credentials
        self._executor = executor if executor is not None else config.run.executor
        # How many policies go in a chunk of each chunked node: the strategy given, else
        # --chunk-size, else run.chunking, else run.chunk_size (a node's own chunk_size wins).
        self.chunking = (
            chunking if chunking is not None else strategy_of(config.run.chunking, chunk_size)
        )
        if chunk_size is None and config.run.chunking is not None:
            chunk_size = config.run.chunking.size
        self.chunk_size = chunk_size if chunk_size is not None else config.run.chunk_size
        # Replica pools: --parallelism and --address override run.parallelism, run.ray.address.
        update: dict[str, Any] = {}
        if parallelism is not None:
            update["parallelism"] = parallelism
        if address is not None:
            update["ray"] = config.run.ray.model_copy(update={"address": address})
        self.options = config.run.model_copy(update=update)
        self._progress = progress
        # The run store and checkpoints follow the run through these (livecalc.ops).
        self._hooks = hooks if hooks is not None else RunHooks()
        self._run_id = run_id
        self._handles: dict[str, EngineHandle] = {}
        self._runners: dict[str, NodeRunner] = {}
        self._datasets: dict[str, Any] = {}
        self._node_inputs: dict[str, dict[str, np.ndarray]] = {}
        self._chunk_sizes: dict[str, int] = {}
        # Set on Ctrl-C: running nodes stop at their next chunk and leave no file behind.
        self._cancel = threading.Event()
        self._executor_used: Executor | None = None  # the run's, once it has started

    def _emit(self, event: str, node_id: str, **info: Any) -> None:
        if self._progress is not None:
            self._progress(event, node_id, **info)

    def run(self) -> RunSummary:
        """Run the whole pipeline.

        Raises:
            ConfigurationError: bad input data or engine config; nothing ran, nothing written.
        """
        executor = (
            create_executor(self._executor, self.options.ray)
            if isinstance(self._executor, str)
            else self._executor
        )
        self._executor_used = executor
        with run_context(self._run_id) as run_id, BufferManager() as buffers, executor:
            summary = RunSummary(
                run_id=run_id,
                executor=executor.name,
                nodes={
                    nid: NodeReport(nid, self.config.node(nid).type) for nid in self._selected()
                },
                selection=self.selection.to_dict() if self.selection is not None else {},
            )
            start = time.perf_counter()
            _log.info("run_started", executor=executor.name, nodes=len(summary.nodes))
            try:
                # Projections fed by files are sized from the footers before the data is
                # read; those fed by an ESG once it is initialised (and says how many).
                check_buffer_sizes(self.config, self.factory, {}, self.chunk_size)
                extra_metadata = dict(self._hooks.run_started(run_id, self.config))
                shared = executor.shared_buffers
                load_sources(self.config, self.selection, buffers, shared, self._datasets)
                load_files(
                    self.config, self.selection, self.factory, buffers, shared, self._datasets
                )
                outputs = OutputPlan.of(self.graph)
                outputs.metadata.update(extra_metadata)
                outputs.metadata[RUN_ID_KEY] = run_id
                self._start_engines(executor, buffers, summary)
                check_buffer_sizes(self.config, self.factory, self._handles, self.chunk_size)
                ready = {n: self._handles[n] for n in self._runners}
                check_source_data(
                    self.config, self._datasets, handles_checker(ready), self._esg_horizons()
                )
                for node_id in self.selection.support if self.selection else ():
                    self._check_support(node_id)
                summary.parallelism = max(
                    (h.size for h in self._handles.values() if isinstance(h, ReplicaPool)),
                    default=1,
                )
                summary.address = executor.address
                self._schedule(summary, outputs)
            finally:
                for node_id, handle in self._handles.items():
                    try:
                        handle.dispose()
                    except Exception as exc:  # a failed dispose must not hide the run's outcome
                        _log.warning("engine_dispose_failed", engine_id=node_id, error=str(exc))
            summary.seconds = time.perf_counter() - start
            summary.written = outputs.written
            if self._keeper is not None:
                summary.kept = dict(self._keeper.paths)
            summary.datasets = {
                # Shared segments are unlinked on exit: hand the caller its own copies.
                k: (v.copy() if executor.shared_buffers and isinstance(v, np.ndarray) else v)
                for k, v in self._datasets.items()
            }
            self._hooks.run_finished(summary)
            if self.config.output is not None and self.config.output.summary_path:
                path = self.config.resolve(self.config.output.summary_path)
                try:
                    write_json_atomic(path, summary.to_dict())
                except OSError as exc:
                    raise ExecutionError(
                        f"output.summary_path: cannot write {str(path)!r} ({exc.strerror}); "
                        "choose another path"
                    ) from exc
                summary.written["summary"] = path
            _log.info(
                "run_finished",
                success=summary.success,
                seconds=summary.seconds,
                failed=[r.node_id for r in summary.failed],
                skipped=[r.node_id for r in summary.skipped],
            )
            return summary

    # -- set-up -----------------------------------------------------------------------------

    def _selected(self) -> list[str]:
        """The nodes this run runs, in run order."""
        return list(self.selection.nodes) if self.selection is not None else self.graph.order()

    def _initialised(self) -> list[str]:
        """The nodes this run initialises: those it runs, and those only re-run (support)."""
        return self.selection.initialised(self.graph) if self.selection else self.graph.order()

    def _start_engines(
        self, executor: Executor, buffers: BufferManager, summary: RunSummary
    ) -> None:
        start_engines(
            self.config,
            self._initialised(),
            factory=self.factory,
            credentials=self.credentials,
            options=self.options,
            executor=executor,
            buffers=buffers,
            cancel=self._cancel,
            summary=summary,
            handles=self._handles,
            runners=self._runners,
            fail=lambda node_id, exc, stage: self._fail(summary, node_id, exc, stage),
        )

    def _esg_horizons(self) -> dict[str, int]:
        """Scenario years of each dataset the data check sees: from the ESGs, and from the
        scenario files a selection reads."""
        horizons = esg_horizons(self.config, self.factory, self._handles)
        if self.selection is not None:
            horizons.update(self.selection.horizons(self._datasets))  # scenarios from files
        return horizons

    def _footprint(self, node_id: str) -> Footprint:
        """What a memory budget must cover besides ``node_id``'s chunks: its replicas and
        their chunks in flight, the run's engine processes, the nodes that may run at once.
        From the configuration only (never the memory in use), so a rerun chunks the same."""
        executor = self._executor_used
        handle = self._handles[node_id]
        pooled = isinstance(handle, ReplicaPool) and handle.size > 1
        processes = 0
        if executor is not None and executor.engine_processes:
            processes = sum(
                h.size if isinstance(h, ReplicaPool) else 1 for h in self._handles.values()
            )
        chunked = [n for n in self._selected() if reads_policies(self.config, self.config.node(n))]
        return Footprint(
            replicas=handle.size if isinstance(handle, ReplicaPool) else 1,
            chunks_in_flight=handle.max_in_flight
            if isinstance(handle, ReplicaPool) and pooled
            else 1,
            worker_processes=processes,
            replica_output_copies=executor.replica_output_copies if executor is not None else 0,
            concurrent_nodes=max(1, min(self.options.max_parallel, len(chunked))),
        )

    # -- scheduling -------------------------------------------------------------------------

    def _schedule(self, summary: RunSummary, outputs: OutputPlan) -> None:
        def interrupted() -> None:
            # KeyboardInterrupt reaches this (the main) thread only: without the flag the
            # node threads would run to their end while the pool waits for them, and
            # without killing the workers a node thread waits for its chunk to finish.
            self._cancel.set()
            _log.warning("run_interrupted")
            for handle in self._handles.values():
                cancel = getattr(handle, "cancel", None)
                if callable(cancel):
                    cancel()

        run_when_ready(
            self.graph.sorter(self._selected()),
            self.config.run.max_parallel,
            lambda node_id: self._run_node(node_id, summary, outputs),
            lambda node_id: summary.nodes[node_id].status in ("failed", "skipped"),
            interrupted,
        )

    def _fail(self, summary: RunSummary, node_id: str, exc: BaseException, stage: str) -> None:
        if mark_failed(summary, self.graph, node_id, exc, stage):
            self._emit("node_finished", node_id, status="failed")

    # -- one node ---------------------------------------------------------------------------

    def _run_node(self, node_id: str, summary: RunSummary, outputs: OutputPlan) -> None:
        node = self.config.node(node_id)
        report = summary.nodes[node_id]
        runner = self._runners[node_id]
        inputs = node_inputs(self.config, self._datasets, node_id)
        self._node_inputs[node_id] = inputs
        dataset = node.outputs[0] if node.outputs else None
        sink = outputs.stream_sink(node_id, dataset)
        if sink is not None:
            # A streamed scenario file keeps the ESG's description too (the ESG gives it from
            # initialize on), for `livecalc esg check`.
            sink.metadata.update(engine_esg_metadata(self._handles[node_id]))
        restore: Callable[[], None] | None = None
        compiled_before = _compile_seconds(self._handles[node_id])
        start = time.perf_counter()
        _log.info("node_started", engine_id=node_id, engine_type=node.type)
        try:
            restore = self._bind_evaluator(node_id)
            chunk_size, strategy = node_chunk_size(
                node_id,
                node.chunk_size,
                inputs,
                self._handles[node_id].output_spec,
                sink is not None,
                self.chunking,
                self.chunk_size,
                self._footprint(node_id),
            )
            self._chunk_sizes[node_id] = chunk_size
            report.chunk_size, report.chunking = chunk_size, strategy
            chunks = _chunk_count(inputs, chunk_size)
            self._emit(
                "node_started", node_id, chunks=chunks, chunk_size=chunk_size, chunking=strategy
            )
            result = runner.run(
                inputs,
                chunk_size,
                sink=sink.write if sink is not None else None,
                on_chunk=lambda i, n, k: self._chunk_finished(node_id, i, n, k),
                stored=self._hooks.stored_chunks(node_id, chunk_size, chunks),
                on_output=lambda i, n, records, stable: self._hooks.chunk_output(
                    node_id, i, n, records, stable
                ),
            )
            if sink is not None:
                sink.commit()
        except CalcEngineError as exc:
            if sink is not None:
                sink.abort()
            report.seconds = time.perf_counter() - start
            self._fail(summary, node_id, exc, "run")
            return
        except Exception as exc:
            # An engine bug (not a CalcEngineError): fail the node, keep the orchestrator.
            if sink is not None:
                sink.abort()
            report.seconds = time.perf_counter() - start
            wrapped = ExecutionError(f"{type(exc).__name__}: {exc}", node_id)
            self._fail(summary, node_id, wrapped, "run")
            return
        finally:
            if restore is not None:
                try:
                    restore()
                except CalcEngineError as exc:
                    # The node's outcome stands; later re-runs would see the overrides.
                    report.warnings.append(f"restoring the projection's parameters: {exc}")
                    _log.warning("parameters_restore_failed", engine_id=node_id, error=str(exc))
        report.seconds = time.perf_counter() - start
        report.compile_seconds = _compile_seconds(self._handles[node_id]) - compiled_before
        record_result(
            report, result, self._handles[node_id], sink.records if sink is not None else 0
        )
        if dataset is not None:
            try:
                publish(node, dataset, result, report, outputs, self._datasets, self._keeper)
            except CalcEngineError as exc:
                # The output file could not be written (disk full...): this node fails, its
                # dependants are skipped, the rest of the run and its summary go on.
                self._fail(summary, node_id, exc, "write")
                return
        report.status = "succeeded"
        _log.info(
            "node_finished",
            engine_id=node_id,
            seconds=report.seconds,
            compile_seconds=report.compile_seconds,
            rows=report.rows_processed,
            records=report.records,
            chunks=report.chunks,
        )
        self._emit("node_finished", node_id, status="succeeded")

    def _chunk_finished(self, node_id: str, chunk: int, chunks: int, policies: int) -> None:
        self._emit("chunk_finished", node_id, chunk=chunk, chunks=chunks, policies=policies)
        if self._cancel.is_set() and chunk + 1 < chunks:
            raise ExecutionError(f"interrupted after chunk {chunk + 1} of {chunks}", node_id)

    # -- goal-seek and selections -----------------------------------------------------------

    def _bind_evaluator(self, node_id: str) -> Callable[[], None] | None:
        """Give a solver node an evaluator re-running its upstream projection (goal-seek);
        returns what restores the projection's parameters, or None when nothing was bound."""
        handle = self._handles[node_id]
        if not handle.supports("bind_evaluator"):
            return None
        upstream = upstream_projection(self.config, self.graph, self._handles, node_id)
        if upstream is None:
            return None
        up_handle = self._handles[upstream]
        up_runner = self._runners[upstream]
        up_node = self.config.node(upstream)
        if self.selection is not None and upstream in self.selection.support:
            # A node only initialised: its inputs as they are now (a selected ESG upstream
            # of it has run: the sorter makes this node wait for it).
            self._node_inputs[upstream] = node_inputs(self.config, self._datasets, upstream)
        up_inputs = self._node_inputs[upstream]
        chunk_size = self._chunk_sizes.get(upstream, up_node.chunk_size or self.chunk_size)
        return bind_evaluator(
            handle, upstream, up_handle, up_runner, up_inputs, chunk_size, up_node.config
        )

    def _check_support(self, node_id: str) -> None:
        """A support node's inputs, set once (it never runs); the outputs read from files
        must have the layout its re-runs have, or the re-runs would not compare with them."""
        if self.selection is None or node_id not in self._runners:
            return  # its initialisation failed: the nodes that re-run it failed with it
        self._node_inputs[node_id] = node_inputs(self.config, self._datasets, node_id)
        spec = self._handles[node_id].output_spec(self._node_inputs[node_id])
        if spec is not None:
            self.selection.check_layout(self.config, node_id, spec.dtype, self._datasets)


def _compile_seconds(handle: EngineHandle) -> float:
    # Handles that measure numba compile time (local and processes) have compile_seconds();
    # others (ray actors) report none.
    measure = getattr(handle, "compile_seconds", None)
    return float(measure()) if callable(measure) else 0.0


def _chunk_count(inputs: Mapping[str, np.ndarray], chunk_size: int) -> int:
    return ChunkPlan.of(inputs, chunk_size).count
