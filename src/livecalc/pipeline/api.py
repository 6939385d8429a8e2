"""The Python API for notebooks and scripts: ``livecalc.run(config)`` -> ``RunResult``.

Example:
    >>> import livecalc
    >>> result = livecalc.run("examples/dag_config_full_pipeline.json")  # doctest: +SKIP
    >>> result.success, result.statistics["solver"]["metrics"]["mean"]  # doctest: +SKIP
    >>> result.to_pandas("results").describe()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from livecalc.assumptions.credentials import AMCredentials, CredentialManager
from livecalc.errors import CalcEngineError, ConfigurationError, ExecutionError
from livecalc.log import get_logger
from livecalc.pipeline._config_files import given_path
from livecalc.pipeline._data_checks import check_source_data, engines_checker, load_datasets
from livecalc.pipeline._no_effect import no_effect_warnings
from livecalc.pipeline._sizes import buffer_problems, esg_horizon_years, esg_scenario_count
from livecalc.pipeline._summary import NodeReport, RunSummary
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.executors import Executor
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.hooks import RunHooks
from livecalc.pipeline.loading import load_config
from livecalc.pipeline.runner import Runner
from livecalc.pipeline.selection import select
from livecalc.ports import ChunkStrategy, ProgressReporter
from livecalc.ports.context import check_run_id
from livecalc.runtime.engine import ICalcEngine
from livecalc.runtime.factory import EngineFactory

__all__ = ["RunResult", "check_engines", "no_effect_warnings", "records_to_arrow", "run"]


def records_to_arrow(records: np.ndarray) -> pa.Table:
    """A record array as an Arrow table: one column per field, ``reserved*`` padding left out."""
    names = [n for n in records.dtype.names or () if not n.startswith("reserved")]
    return pa.table({n: pa.array(np.ascontiguousarray(records[n])) for n in names})


@dataclass
class RunResult:
    """What a run produced: per-node status, statistics, timings and the record tables."""

    summary: RunSummary
    config: PipelineConfig

    @property
    def success(self) -> bool:
        """Whether every node succeeded."""
        return self.summary.success

    @property
    def run_id(self) -> str:
        """The id every log line of this run carries."""
        return self.summary.run_id

    @property
    def nodes(self) -> dict[str, NodeReport]:
        """Per-node reports (status, error, timings, rows), in run order."""
        return self.summary.nodes

    @property
    def status(self) -> dict[str, str]:
        """Each node's status: succeeded, failed, skipped or not_run."""
        return {k: r.status for k, r in self.summary.nodes.items()}

    @property
    def statistics(self) -> dict[str, dict[str, Any]]:
        """Each node's non-record results (``get_outputs()``: the solver's statistics...)."""
        return {k: r.outputs for k, r in self.summary.nodes.items() if r.outputs}

    @property
    def timings(self) -> dict[str, float]:
        """Wall seconds per node, and ``"total"`` for the whole run."""
        return {**{k: r.seconds for k, r in self.summary.nodes.items()}, "total": self.seconds}

    @property
    def seconds(self) -> float:
        """Wall seconds of the whole run."""
        return self.summary.seconds

    @property
    def written(self) -> dict[str, Path]:
        """The files written, by output name (plus ``"summary"`` when configured)."""
        return dict(self.summary.written)

    @property
    def table_names(self) -> list[str]:
        """Record outputs available as tables (in memory or written)."""
        names = [k for k, v in self.summary.datasets.items() if isinstance(v, np.ndarray)]
        names += [k for k in self.summary.written if k != "summary" and k not in names]
        return names

    def records(self, name: str) -> np.ndarray:
        """The records of output ``name`` kept in memory (streamed outputs: use ``table``)."""
        value = self.summary.datasets.get(name)
        if not isinstance(value, np.ndarray):
            kept = [k for k, v in self.summary.datasets.items() if isinstance(v, np.ndarray)]
            raise ConfigurationError(
                f"{name!r} is not a record output kept in memory; available: "
                f"{', '.join(kept) or 'none'} (outputs streamed to Parquet: use table(name))"
            )
        return value

    def table(self, name: str) -> pa.Table:
        """Output ``name`` as an Arrow table, from memory or from its Parquet file."""
        value = self.summary.datasets.get(name)
        if isinstance(value, np.ndarray):
            return records_to_arrow(value)
        path = self.summary.written.get(name)
        if path is not None and name != "summary":
            return pq.read_table(path)
        raise ConfigurationError(
            f"no table {name!r}; available: {', '.join(self.table_names) or 'none'}"
        )

    def to_pandas(self, name: str) -> Any:
        """Output ``name`` as a pandas DataFrame."""
        return self.table(name).to_pandas()

    def _repr_html_(self) -> str:
        """The summary as an HTML table, for notebooks."""
        return self.summary.to_html()

    def raise_for_status(self) -> None:
        """Raise ExecutionError naming every failed node when the run did not succeed."""
        if not self.success:
            raise ExecutionError("run failed:\n" + self.summary.describe())


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
    hooks: RunHooks | None = None,
    run_id: str | None = None,
    nodes: Sequence[str] | None = None,
    datasets: Mapping[str, str | Path] | None = None,
    keep_datasets: str | Path | bool | None = None,
    chunking: ChunkStrategy | None = None,
) -> RunResult:
    """Validate and run a pipeline; a failing node does not raise (see ``RunResult.success``).

    Args:
        config_or_path: a config file, its parsed JSON, or a validated ``PipelineConfig``.
        overrides: ``engine.key=value`` strings, as the CLI's ``--set``.
        executor: ``local``, ``processes`` or ``ray`` (default: the config's ``run.executor``).
        chunk_size: policies per chunk (default: the config's ``run.chunk_size``).
        credentials: AM credentials (default: from ``CredentialManager``: environment or file).
        factory: the engine types (default: built-ins and installed plug-ins).
        progress: a ``livecalc.ports.ProgressReporter``, called as ``progress(event,
            node_id, **info)`` while the run goes (``livecalc.ports.progress.LogProgress``
            logs each event).
        base_dir: folder for a dict config's relative paths (default: the current folder).
        parallelism: engine replicas per chunked node (default: the node's or the config's
            ``parallelism``, else CPUs for ``processes``, cluster CPUs for ``ray``, 1 for
            ``local``).
        address: the Ray cluster the ``ray`` executor joins (default: ``run.ray.address``, else
            ``RAY_ADDRESS``, else a Ray started for the run).
        hooks: followers of the run (``livecalc.ops``: the run store, checkpoints).
        run_id: the run's id (default: a new one; a resumed run keeps its own).
        nodes: run only these node ids (default: all); the summary reports only them.
        datasets: ``{name: path}`` of each dataset the selected nodes read that a node not
            selected produces: Parquet records, or JSON statistics (docs/operations.md).
        keep_datasets: a folder where every dataset the run produces is also written
            (``NAME.parquet`` or ``NAME.json``); ``livecalc.run`` also takes True (the run's
            folder).
        chunking: a ``livecalc.ports.ChunkStrategy`` choosing each chunked node's chunk size
            (default: ``chunk_size`` when given, else the config's ``run.chunking``, else fixed
            chunks of ``run.chunk_size``); a node's own ``chunk_size`` still wins.

    Raises:
        ConfigurationError: the config, an engine's config or an input file is wrong; nothing
            ran and no output file was written.
    """
    factory = factory if factory is not None else EngineFactory()
    config = load_config(config_or_path, overrides, factory=factory, base_dir=base_dir)
    for warning in no_effect_warnings(config, factory):
        get_logger().warning("warning", message=warning, reason="no_effect")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigurationError(f"chunk_size: must be >= 1, got {chunk_size}")
    if chunking is not None and not isinstance(chunking, ChunkStrategy):
        raise ConfigurationError(
            f"chunking: {chunking!r} is not a ChunkStrategy (it needs a 'name' and a "
            "chunk_size(request) method; see livecalc.pipeline.chunking.FixedChunks)"
        )
    if parallelism is not None and parallelism < 1:
        raise ConfigurationError(f"parallelism: must be >= 1, got {parallelism}")
    if run_id is not None:
        try:
            check_run_id(run_id)  # the rule of every run id: it may name a folder
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    if keep_datasets is True:
        # True needs the run folder under $LIVECALC_HOME, which livecalc.run (ops) knows.
        raise ConfigurationError(
            "keep_datasets: give a folder here (livecalc.run takes True for the run's folder)"
        )
    selection = select(config, EngineGraph(config), factory, nodes, datasets)
    if credentials is None:
        credentials = _default_credentials(config)
    if credentials is not None and config.run.am_rate_limit is not None:
        # Carried with the credentials, so engines in worker processes pace alike.
        credentials = credentials.model_copy(update={"rate_limit": config.run.am_rate_limit})
    runner = Runner(
        config,
        factory=factory,
        credentials=credentials,
        executor=executor,
        chunk_size=chunk_size,
        progress=progress,
        parallelism=parallelism,
        address=address,
        hooks=hooks,
        run_id=run_id,
        selection=selection,
        keep_datasets=(
            given_path(keep_datasets, "keep_datasets")
            if isinstance(keep_datasets, str | Path)
            else None
        ),
        chunking=chunking,
    )
    return RunResult(runner.run(), config)


def check_engines(
    config_or_path: str | Path | Mapping[str, Any] | PipelineConfig,
    *,
    overrides: Sequence[str] = (),
    credentials: AMCredentials | None = None,
    factory: EngineFactory | None = None,
    base_dir: str | Path | None = None,
    data: bool = True,
) -> PipelineConfig:
    """Validate a config, then initialise (and dispose of) each engine: ``livecalc validate``.

    This runs the engines' own config checks, and resolves their assumption tables, the way
    ``run`` does before anything runs; then (unless ``data`` is False: a scheduler parsing a
    DAG file often) it reads the data sources and has the engines that check data (the
    projection) check them, as ``run`` does before its first chunk. It runs no chunk.

    Raises:
        ConfigurationError: every problem, by JSON path (``engines[1].config.x: ...``).
    """
    factory = factory if factory is not None else EngineFactory()
    config = load_config(config_or_path, overrides, factory=factory, base_dir=base_dir)
    if credentials is None:
        credentials = _default_credentials(config)
    problems = []
    ready: dict[str, ICalcEngine] = {}
    produced_scenarios: dict[str, int] = {}
    horizons: dict[str, int] = {}
    try:
        for i, node in enumerate(config.engines):
            engine = factory.create_engine(node.type)
            try:
                engine.initialize(config.engine_config(node.id, factory), credentials)
            except CalcEngineError as exc:
                text = str(exc)
                # Engines name the key as "config.key: ..." (as the runner reports it).
                problems.append(
                    f"engines[{i}].{text if text.startswith('config') else f'config: {text}'}"
                )
                continue
            except Exception as exc:  # an engine's bug: still one line, naming the engine
                problems.append(f"engines[{i}]: initialize failed: {type(exc).__name__}: {exc}")
                continue
            ready[node.id] = engine
            if node.outputs and factory.canonical_type(node.type) == "esg":
                count = esg_scenario_count(engine.get_outputs())
                if count is not None:
                    produced_scenarios[node.outputs[0]] = count
                years = esg_horizon_years(engine.get_outputs())
                if years is not None:
                    horizons[node.outputs[0]] = years
        if problems:
            raise _engine_problems(problems)
        problems = buffer_problems(config, factory, produced_scenarios)
        if problems:
            raise _engine_problems(problems)
        # The data too, as `run` checks it before its first chunk: bad rows are found here.
        if data:
            check_source_data(config, load_datasets(config), engines_checker(ready), horizons)
    finally:
        for i, node in enumerate(config.engines):
            if node.id not in ready:
                continue
            try:
                ready[node.id].dispose()
            except Exception as exc:
                problems.append(f"engines[{i}]: dispose failed: {type(exc).__name__}: {exc}")
    if problems:
        raise _engine_problems(problems)
    return config


def _engine_problems(problems: list[str]) -> ConfigurationError:
    if len(problems) == 1:
        return ConfigurationError(problems[0])
    listed = "\n".join(f"  {p}" for p in problems)
    return ConfigurationError(f"{len(problems)} engine config problems:\n{listed}")


def _default_credentials(config: PipelineConfig) -> AMCredentials | None:
    """Credentials from the environment or ~/.livecalc/credentials.json, when there are any.

    A credentials file that is refused (readable by others, malformed) stops only runs that
    need the Assumptions Manager; the others go on without credentials and a warning.
    """
    try:
        manager = CredentialManager()
    except ConfigurationError as exc:
        if config.uses_assumptions_manager():
            raise
        get_logger().warning("credentials_ignored", reason=str(exc))
        return None
    return manager.get_credentials() if manager.has_credentials() else None
