"""A run's engines: one handle per node, each initialised once, and the checks that need them.

Engine config errors from every node are collected and raised as one ConfigurationError,
each prefixed with its node's JSON path (``engines[2].config.mortality_table: ...``), before
anything runs; any other failure fails its node alone. An initialised ESG says how many
scenarios and years it will write, which sizes the buffers of the nodes that read them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import get_logger
from livecalc.pipeline._node import NodeRunner
from livecalc.pipeline._pooled_node import node_runner
from livecalc.pipeline._sizes import buffer_problems, esg_horizon_years, esg_scenario_count
from livecalc.pipeline._summary import NodeReport, RunSummary
from livecalc.pipeline.config import PipelineConfig, RunOptions
from livecalc.pipeline.executors import EngineHandle, Executor
from livecalc.pipeline.loading import format_problems
from livecalc.pipeline.pool import create_node_handle, reads_policies
from livecalc.runtime.buffers import BufferManager
from livecalc.runtime.factory import EngineFactory

__all__ = ["check_buffer_sizes", "esg_horizons", "start_engines"]

_log = get_logger()

FailNode = Callable[[str, CalcEngineError, str], None]
"""Records that a node failed: (node id, error, stage)."""


def start_engines(
    config: PipelineConfig,
    node_ids: list[str],
    *,
    factory: EngineFactory,
    credentials: AMCredentials | None,
    options: RunOptions,
    executor: Executor,
    buffers: BufferManager,
    cancel: threading.Event,
    summary: RunSummary,
    handles: dict[str, EngineHandle],
    runners: dict[str, NodeRunner],
    fail: FailNode,
) -> None:
    """Create and initialise the engines of ``node_ids``, into ``handles`` and ``runners``.

    ``handles`` fills as they are created, so that the caller disposes of every one even
    when this raises. A node whose engine fails (not for its config) is given to ``fail``.

    Raises:
        ConfigurationError: the engine config problems of every node, at once.
    """
    problems: list[str] = []
    # Every handle first: an executor with worker processes starts them as it creates
    # the handles, so they boot side by side while the first ones initialise.
    for node_id in node_ids:
        prefix = f"engines[{config.node_index(node_id)}]"
        try:
            node = config.node(node_id)
            handles[node_id] = create_node_handle(
                executor, node, factory, options, chunked=reads_policies(config, node)
            )
        except ConfigurationError as exc:
            problems.append(f"{prefix}.{_config_path(str(exc))}")
        except CalcEngineError as exc:
            fail(node_id, exc, "initialize")
    for node_id in node_ids:
        node = config.node(node_id)
        # A support node (initialised, not run) has no report: a stand-in takes its timing.
        report = summary.nodes.get(node_id) or NodeReport(node_id, node.type)
        prefix = f"engines[{config.node_index(node_id)}]"
        handle = handles.get(node_id)
        if handle is None or report.status == "failed":
            continue
        start = time.perf_counter()
        try:
            handle.initialize(config.engine_config(node_id, factory), credentials)
        except ConfigurationError as exc:
            problems.append(f"{prefix}.{_config_path(str(exc))}")
            continue
        except CalcEngineError as exc:
            fail(node_id, exc, "initialize")
            continue
        report.init_seconds = time.perf_counter() - start
        runners[node_id] = node_runner(node_id, handle, buffers, executor.shared_buffers, cancel)
        _log.info("engine_initialized", engine_id=node_id, engine_type=node.type)
    if problems:
        raise ConfigurationError(
            problems[0]
            if len(problems) == 1
            else f"{len(problems)} engine config problems:\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def check_buffer_sizes(
    config: PipelineConfig,
    factory: EngineFactory,
    handles: Mapping[str, EngineHandle],
    chunk_size: int,
) -> None:
    """Refuse, before any node runs, an output past the record limit of its type (it would
    take gigabytes or end in a MemoryError; NodeRunner checks again, exactly, for any engine).

    ``handles``: the initialised engines, whose ESGs say how many scenarios they write
    (none yet: projections fed by files are sized from the file footers alone).
    """
    produced = _esg_datasets(config, factory, handles, esg_scenario_count)
    problems = buffer_problems(config, factory, produced, chunk_size)
    if problems:
        raise ConfigurationError(format_problems(problems))


def esg_horizons(
    config: PipelineConfig, factory: EngineFactory, handles: Mapping[str, EngineHandle]
) -> dict[str, int]:
    """Scenario years of each dataset an initialised ESG will write (for the data check)."""
    return _esg_datasets(config, factory, handles, esg_horizon_years)


def _esg_datasets(
    config: PipelineConfig,
    factory: EngineFactory,
    handles: Mapping[str, EngineHandle],
    measure: Callable[[Mapping[str, Any]], int | None],
) -> dict[str, int]:
    """``measure`` of each ESG's ``get_outputs()``, by the dataset it writes (when known)."""
    found = {}
    for node_id, handle in handles.items():
        node = config.node(node_id)
        if node.outputs and factory.canonical_type(node.type) == "esg":
            try:
                value = measure(handle.get_outputs())
            except CalcEngineError:
                continue
            if value is not None:
                found[node.outputs[0]] = value
    return found


def _config_path(message: str) -> str:
    # Engines name the key as "config.key: ..."; anything else gets "config: " in front.
    return message if message.startswith("config") else f"config: {message}"
