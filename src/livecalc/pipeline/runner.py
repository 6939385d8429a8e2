"""The DAG runner: initialise every engine, run nodes in dependency order, merge, write, report.

A run goes:

1. data sources are read into buffers (shared memory when the executor needs it);
2. every node's engine is created and initialised once; engine config errors from all nodes
   are collected and raised as one ConfigurationError, prefixed with each node's JSON path,
   before anything runs;
3. nodes run as soon as their inputs are ready, independent ones at the same time on threads
   (numba kernels release the GIL); a chunked node streams its records to the Parquet writer
   when no other node reads them;
4. a solver that binds an evaluator gets one that re-runs its upstream projection with
   parameter overrides, on the same initialised engine and reused buffers; the projection's
   original parameters are restored afterwards;
5. a failing node fails alone: its downstream nodes are skipped, outputs already finished are
   kept and written, and the summary says what ran, what failed and why.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import graphlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import (
    CalcEngineError,
    ConfigurationError,
    ExecutionError,
)
from livecalc.io.generate import ESG_METADATA_KEY
from livecalc.io.parquet import PolicyData
from livecalc.log import get_logger, run_context
from livecalc.pipeline._data_checks import check_source_data, handles_checker
from livecalc.pipeline._node import ChunkPlan, NodeOutput, NodeRunner
from livecalc.pipeline._outputs import OutputPlan, load_source, policy_ext_name
from livecalc.pipeline._pooled_node import node_runner
from livecalc.pipeline._sizes import buffer_problems, esg_horizon_years, esg_scenario_count
from livecalc.pipeline._summary import NodeReport, RunSummary, write_json_atomic
from livecalc.pipeline.chunking import (
    output_records_of,
    strategy_of,
    working_bytes_per_policy,
)
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.executors import EngineHandle, Executor, create_executor
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.hooks import RunHooks
from livecalc.pipeline.loading import format_problems
from livecalc.pipeline.pool import create_node_handle, reads_policies
from livecalc.pipeline.selection import DatasetKeeper, Selection
from livecalc.ports import ChunkRequest, ChunkStrategy, ProgressReporter
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

    def _emit(self, event: str, node_id: str, **info: Any) -> None:
        if self._progress is not None:
            self._progress(event, node_id, **info)

    def run(self) -> RunSummary:
        """Run the whole pipeline.

        Raises:
            ConfigurationError: bad input data or engine config; nothing ran, nothing written.
        """
        executor = (
            create_executor(self._executor, self.options.ray.address)
            if isinstance(self._executor, str)
            else self._executor
        )
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
                self._check_buffer_sizes(with_engines=False)
                extra_metadata = dict(self._hooks.run_started(run_id, self.config))
                self._load_sources(buffers, executor.shared_buffers)
                self._load_files(buffers, executor.shared_buffers)
                outputs = OutputPlan.of(self.graph)
                outputs.metadata.update(extra_metadata)
                outputs.metadata[RUN_ID_KEY] = run_id
                self._initialize_all(executor, buffers, summary)
                self._check_buffer_sizes(with_engines=True)
                ready = {n: self._handles[n] for n in self._runners}
                check_source_data(
                    self.config, self._datasets, handles_checker(ready), self._esg_horizons()
                )
                for node_id in self.selection.support if self.selection else ():
                    self._check_support(node_id)
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

    def _load_sources(self, buffers: BufferManager, shared: bool) -> None:
        sources = self.config.data_sources
        names = self.selection.sources(self.config) if self.selection else list(sources)
        for name in names:
            loaded = load_source(name, sources[name], self.config)
            parts = {name: loaded} if isinstance(loaded, np.ndarray) else {name: loaded.records}
            if isinstance(loaded, PolicyData) and loaded.ext is not None:
                parts[policy_ext_name(name)] = loaded.ext
            for key, records in parts.items():
                self._datasets[key] = _placed(buffers, shared, f"source.{key}", records)
            _log.info("source_loaded", source=name, records=len(parts[name]))

    def _load_files(self, buffers: BufferManager, shared: bool) -> None:
        """The datasets a node selection reads from files (``datasets``), checked."""
        for name, value in self.selection.read(self.config, self.factory) if self.selection else ():
            if isinstance(value, np.ndarray):
                value = _placed(buffers, shared, f"dataset.{name}", value)
            self._datasets[name] = value

    def _initialize_all(
        self, executor: Executor, buffers: BufferManager, summary: RunSummary
    ) -> None:
        problems: list[str] = []
        # Every handle first: an executor with worker processes starts them as it creates
        # the handles, so they boot side by side while the first ones initialise.
        for node_id in self._initialised():
            prefix = f"engines[{self.config.node_index(node_id)}]"
            try:
                node = self.config.node(node_id)
                self._handles[node_id] = create_node_handle(
                    executor,
                    node,
                    self.factory,
                    self.options,
                    chunked=reads_policies(self.config, node),
                )
            except ConfigurationError as exc:
                problems.append(f"{prefix}.{_config_path(str(exc))}")
            except CalcEngineError as exc:
                self._fail(summary, node_id, exc, "initialize")
        for node_id in self._initialised():
            node = self.config.node(node_id)
            # A support node (initialised, not run) has no report: a stand-in takes its timing.
            report = summary.nodes.get(node_id) or NodeReport(node_id, node.type)
            prefix = f"engines[{self.config.node_index(node_id)}]"
            handle = self._handles.get(node_id)
            if handle is None or report.status == "failed":
                continue
            start = time.perf_counter()
            try:
                handle.initialize(
                    self.config.engine_config(node_id, self.factory), self.credentials
                )
            except ConfigurationError as exc:
                problems.append(f"{prefix}.{_config_path(str(exc))}")
                continue
            except CalcEngineError as exc:
                self._fail(summary, node_id, exc, "initialize")
                continue
            report.init_seconds = time.perf_counter() - start
            self._runners[node_id] = node_runner(
                node_id, handle, buffers, executor.shared_buffers, self._cancel
            )
            _log.info("engine_initialized", engine_id=node_id, engine_type=node.type)
        if problems:
            raise ConfigurationError(
                problems[0]
                if len(problems) == 1
                else f"{len(problems)} engine config problems:\n"
                + "\n".join(f"  {p}" for p in problems)
            )

    def _check_buffer_sizes(self, with_engines: bool) -> None:
        # Before any node runs: an output past the record limit would take gigabytes or end
        # in a MemoryError (NodeRunner checks again, exactly, for any engine).
        produced = {}
        for node_id, handle in self._handles.items() if with_engines else ():
            node = self.config.node(node_id)
            if node.outputs and self.factory.canonical_type(node.type) == "esg":
                try:
                    count = esg_scenario_count(handle.get_outputs())
                except CalcEngineError:
                    continue
                if count is not None:
                    produced[node.outputs[0]] = count
        problems = buffer_problems(self.config, self.factory, produced, self.chunk_size)
        if problems:
            raise ConfigurationError(format_problems(problems))

    def _esg_horizons(self) -> dict[str, int]:
        """Scenario years of each dataset an initialised ESG will write (for the data check)."""
        horizons = {}
        for node_id, handle in self._handles.items():
            node = self.config.node(node_id)
            if node.outputs and self.factory.canonical_type(node.type) == "esg":
                try:
                    years = esg_horizon_years(handle.get_outputs())
                except CalcEngineError:
                    continue
                if years is not None:
                    horizons[node.outputs[0]] = years
        if self.selection is not None:
            horizons.update(self.selection.horizons(self._datasets))  # scenarios from files
        return horizons

    # -- scheduling -------------------------------------------------------------------------

    def _schedule(self, summary: RunSummary, outputs: OutputPlan) -> None:
        sorter = self.graph.sorter(self._selected())
        max_workers = max(1, self.config.run.max_parallel)
        with cf.ThreadPoolExecutor(max_workers, thread_name_prefix="livecalc-node") as pool:
            try:
                self._schedule_ready(sorter, pool, summary, outputs)
            except BaseException:
                # KeyboardInterrupt reaches this (the main) thread only: without the flag the
                # node threads would run to their end while the pool waits for them, and
                # without killing the workers a node thread waits for its chunk to finish.
                self._cancel.set()
                _log.warning("run_interrupted")
                for handle in self._handles.values():
                    cancel = getattr(handle, "cancel", None)
                    if callable(cancel):
                        cancel()
                raise

    def _schedule_ready(
        self,
        sorter: graphlib.TopologicalSorter[str],
        pool: cf.ThreadPoolExecutor,
        summary: RunSummary,
        outputs: OutputPlan,
    ) -> None:
        running: dict[cf.Future[None], str] = {}
        while sorter.is_active():
            for node_id in sorter.get_ready():
                report = summary.nodes[node_id]
                if report.status in ("failed", "skipped"):
                    sorter.done(node_id)
                    continue
                # Each node runs in a copy of this context, so it logs with the run_id.
                ctx = contextvars.copy_context()
                fut = pool.submit(ctx.run, self._run_node, node_id, summary, outputs)
                running[fut] = node_id
            if not running:
                continue
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                node_id = running.pop(fut)
                fut.result()  # _run_node records failures itself; anything else is a bug
                sorter.done(node_id)

    def _fail(self, summary: RunSummary, node_id: str, exc: BaseException, stage: str) -> None:
        _log.error("node_failed", engine_id=node_id, stage=stage, error=str(exc))
        if node_id not in summary.nodes:
            # A support node: the selected nodes that would re-run it fail in its place.
            for down in sorted(set(summary.nodes) & self.graph.descendants(node_id)):
                report = summary.nodes[down]
                report.status, report.error_type = "failed", type(exc).__name__
                report.error = f"{stage} of node {node_id!r} (which this node re-runs): {exc}"
            return
        report = summary.nodes[node_id]
        report.status = "failed"
        report.error = f"{stage}: {exc}" if stage != "run" else str(exc)
        report.error_type = type(exc).__name__
        for down in sorted(set(summary.nodes) & self.graph.descendants(node_id)):
            skipped = summary.nodes[down]
            if skipped.status == "not_run":
                skipped.status = "skipped"
                skipped.error = f"not run: upstream node {node_id!r} failed"
                _log.warning("node_skipped", engine_id=down, failed_upstream=node_id)
        self._emit("node_finished", node_id, status="failed")

    def _inputs_of(self, node_id: str) -> dict[str, np.ndarray]:
        node = self.config.node(node_id)
        # Non-record inputs (another engine's get_outputs) only order the run; engines read
        # records, found by dtype. A policy source's in-force extension travels with it.
        inputs = {}
        for name in node.inputs:
            value = self._datasets.get(name)
            if isinstance(value, np.ndarray):
                inputs[name] = value
                ext = self._datasets.get(policy_ext_name(name))
                if name in self.config.data_sources and isinstance(ext, np.ndarray):
                    inputs[policy_ext_name(name)] = ext
        return inputs

    def _run_node(self, node_id: str, summary: RunSummary, outputs: OutputPlan) -> None:
        node = self.config.node(node_id)
        report = summary.nodes[node_id]
        runner = self._runners[node_id]
        inputs = self._inputs_of(node_id)
        self._node_inputs[node_id] = inputs
        dataset = node.outputs[0] if node.outputs else None
        sink = outputs.stream_sink(node_id, dataset)
        if sink is not None:
            # A streamed scenario file keeps the ESG's description too (the ESG gives it from
            # initialize on), for `livecalc esg check`.
            sink.metadata.update(self._esg_metadata(node_id))
        restore: Callable[[], None] | None = None
        compiled_before = _compile_seconds(self._handles[node_id])
        start = time.perf_counter()
        _log.info("node_started", engine_id=node_id, engine_type=node.type)
        try:
            restore = self._bind_evaluator(node_id)
            chunk_size, strategy = self._chunk_size_for(node_id, inputs, sink is not None)
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
        self._record(node_id, report, result, sink.records if sink is not None else 0)
        if dataset is not None:
            try:
                self._publish(node_id, dataset, result, report, outputs)
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

    def _chunk_size_for(
        self, node_id: str, inputs: Mapping[str, np.ndarray], streamed: bool
    ) -> tuple[int, str]:
        """Policies per chunk for this node, and what chose it: the node's own
        ``chunk_size`` (``node``), else the run's strategy (its name)."""
        own = self.config.node(node_id).chunk_size
        if own is not None:
            return own, "node"
        plan = ChunkPlan.of(inputs, self.chunk_size)
        if not plan.chunked:
            return self.chunk_size, self.chunking.name
        request = ChunkRequest(
            node_id=node_id,
            n_policies=plan.n_policies,
            output_records=output_records_of(
                self._handles[node_id].output_spec, inputs, plan.chunked
            ),
            streamed=streamed,
            working_bytes=working_bytes_per_policy(inputs),
            default_size=self.chunk_size,
        )
        size = self.chunking.chunk_size(request)
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ConfigurationError(
                f"chunk strategy {self.chunking.name!r} chose {size!r} policies per chunk of "
                f"{node_id!r}; a ChunkStrategy must return an integer >= 1"
            )
        _log.info(
            "chunk_size_chosen",
            engine_id=node_id,
            strategy=self.chunking.name,
            chunk_size=int(size),
            policies=plan.n_policies,
        )
        return int(size), self.chunking.name

    def _chunk_finished(self, node_id: str, chunk: int, chunks: int, policies: int) -> None:
        self._emit("chunk_finished", node_id, chunk=chunk, chunks=chunks, policies=policies)
        if self._cancel.is_set() and chunk + 1 < chunks:
            raise ExecutionError(f"interrupted after chunk {chunk + 1} of {chunks}", node_id)

    def _esg_metadata(self, node_id: str) -> dict[str, str]:
        try:
            esg = self._handles[node_id].get_outputs().get("esg_metadata")
        except CalcEngineError:
            return {}
        return {ESG_METADATA_KEY: json.dumps(esg)} if isinstance(esg, Mapping) else {}

    def _record(self, node_id: str, report: NodeReport, result: NodeOutput, streamed: int) -> None:
        report.engine_seconds = result.engine_seconds
        report.compute_seconds = result.compute_seconds
        report.rows_processed = result.rows_processed
        report.chunks = result.chunks
        report.reused_chunks = result.reused_chunks
        report.records = streamed if result.records is None else len(result.records)
        report.warnings = [*report.warnings, *result.warnings]
        try:
            report.outputs = dict(self._handles[node_id].get_outputs())
        except CalcEngineError as exc:
            report.warnings.append(f"get_outputs failed: {exc}")

    def _publish(
        self,
        node_id: str,
        dataset: str,
        result: NodeOutput,
        report: NodeReport,
        outputs: OutputPlan,
    ) -> None:
        node = self.config.node(node_id)
        if result.records is not None:
            self._datasets[dataset] = result.records
            esg = report.outputs.get("esg_metadata")
            # A scenario file keeps the ESG's description, for `livecalc esg check`.
            meta = {ESG_METADATA_KEY: json.dumps(esg)} if isinstance(esg, Mapping) else {}
            outputs.write_whole(dataset, result.records, meta)
            if len(node.outputs) > 1:
                self._datasets[node.outputs[1]] = report.outputs
        elif outputs.is_streamed(dataset):
            self._datasets[dataset] = outputs.written[dataset]
        else:
            # No record output: the engine's get_outputs() is its dataset (a solver's solution).
            self._datasets[dataset] = report.outputs
        if self._keeper is not None:
            esg = report.outputs.get("esg_metadata")
            meta = {ESG_METADATA_KEY: json.dumps(esg)} if isinstance(esg, Mapping) else {}
            for name in node.outputs:
                # A dataset already written to its output file is kept as that file.
                value = outputs.written.get(name, self._datasets.get(name))
                self._keeper.keep(name, value, {**outputs.metadata, **meta})

    # -- goal-seek ----------------------------------------------------------------------------

    def _bind_evaluator(self, node_id: str) -> Callable[[], None] | None:
        handle = self._handles[node_id]
        if not handle.supports("bind_evaluator"):
            return None
        upstream = self._upstream_projection(node_id)
        if upstream is None:
            return None
        up_handle = self._handles[upstream]
        up_runner = self._runners[upstream]
        up_node = self.config.node(upstream)
        if self.selection is not None and upstream in self.selection.support:
            # A node only initialised: its inputs as they are now (a selected ESG upstream
            # of it has run: the sorter makes this node wait for it).
            self._node_inputs[upstream] = self._inputs_of(upstream)
        up_inputs = self._node_inputs[upstream]
        chunk_size = self._chunk_sizes.get(upstream, up_node.chunk_size or self.chunk_size)
        original = (
            dict(up_handle.call("get_parameters")) if up_handle.supports("get_parameters") else {}
        )
        touched: set[str] = set()

        def evaluate(overrides: Mapping[str, float]) -> np.ndarray:
            """Re-run the upstream projection with ``overrides``; its merged output records."""
            touched.update(overrides)
            up_handle.call("set_parameters", dict(overrides))
            out = up_runner.run(up_inputs, chunk_size, role="eval")
            _log.debug("evaluation_finished", engine_id=upstream, overrides=dict(overrides))
            if out.records is None:
                raise ExecutionError("the upstream engine wrote no records", upstream)
            return out.records

        handle.call("bind_evaluator", evaluate)

        def restore() -> None:
            if touched:
                # Without get_parameters, the node's own config holds the originals (an
                # absent multiplier is the neutral 1.0).
                up_handle.call(
                    "set_parameters",
                    {k: original.get(k, up_node.config.get(k, 1.0)) for k in sorted(touched)},
                )

        return restore

    def _upstream_projection(self, node_id: str) -> str | None:
        node = self.config.node(node_id)
        for name in node.inputs:
            producer = self.graph.producers.get(name)
            handle = self._handles.get(producer) if producer is not None else None
            if handle is not None and handle.supports("set_parameters"):
                return producer
        return None

    def _check_support(self, node_id: str) -> None:
        """A support node's inputs, set once (it never runs); the outputs read from files
        must have the layout its re-runs have, or the re-runs would not compare with them."""
        if self.selection is None or node_id not in self._runners:
            return  # its initialisation failed: the nodes that re-run it failed with it
        self._node_inputs[node_id] = self._inputs_of(node_id)
        spec = self._handles[node_id].output_spec(self._node_inputs[node_id])
        if spec is not None:
            self.selection.check_layout(self.config, node_id, spec.dtype, self._datasets)


def _placed(buffers: BufferManager, shared: bool, name: str, records: np.ndarray) -> np.ndarray:
    if not shared:
        return records
    # Worker processes attach to shared segments by name: copy once into one.
    info = buffers.allocate(name, records.dtype, len(records), True)
    info.data[:] = records
    return info.data


def _compile_seconds(handle: EngineHandle) -> float:
    # Handles that measure numba compile time (local and processes) have compile_seconds();
    # others (ray actors) report none.
    measure = getattr(handle, "compile_seconds", None)
    return float(measure()) if callable(measure) else 0.0


def _chunk_count(inputs: Mapping[str, np.ndarray], chunk_size: int) -> int:
    return ChunkPlan.of(inputs, chunk_size).count


def _config_path(message: str) -> str:
    # Engines name the key as "config.key: ..."; anything else gets "config: " in front.
    return message if message.startswith("config") else f"config: {message}"
