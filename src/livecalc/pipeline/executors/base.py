"""The executor interface: ``Executor`` makes ``EngineHandle`` objects the runner drives."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.numba_threads import NumbaThreadsEngine

__all__ = ["EngineHandle", "Executor"]


class EngineHandle(Protocol):
    """One initialised engine as the runner sees it, wherever it runs."""

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Initialise the engine with its node's config."""

    def get_info(self) -> EngineInfo:
        """The engine's metadata."""

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Run one chunk; raise ExecutionError (or EngineTimeoutError) when it fails."""

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The output buffer the engine needs for these inputs."""

    def get_outputs(self) -> Mapping[str, Any]:
        """The engine's non-record results of its last run."""

    def supports(self, method: str) -> bool:
        """Whether the engine has the optional ``method`` (set_parameters, bind_evaluator)."""

    def call(self, method: str, *args: Any) -> Any:
        """Call an optional engine method by name."""

    def dispose(self) -> None:
        """Release the engine (and its worker, if any); never raises."""


class Executor(ABC):
    """Creates engine handles for one run and releases what they hold when closed."""

    name: str = ""
    shared_buffers: bool = False
    """Whether the runner must allocate buffers in shared memory (another process reads them)."""
    engine_processes: bool = False
    """Whether each engine (each replica) runs in a process of its own (a memory budget counts
    them)."""
    replica_output_copies: int = 0
    """Copies of a chunk's output a replica holds besides the runner's buffer (memory budget)."""
    address: str | None = None
    """The cluster the executor runs on (Ray's address; None for this machine's executors)."""

    @abstractmethod
    def create_handle(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions
    ) -> EngineHandle:
        """An uninitialised handle for ``node``'s engine."""

    def default_parallelism(self) -> int:
        """Replicas per chunked node when neither the node nor the run says: 1 here."""
        return 1

    def cpus(self) -> int:
        """CPUs the replicas share (this machine's; a cluster's for ``ray``)."""
        return os.cpu_count() or 1

    def create_replica(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions, numba_threads: int
    ) -> EngineHandle:
        """One replica of ``node``'s engine for a replica pool, its numba threads capped."""
        return self.create_handle(node, _CappedFactory(factory, numba_threads), options)

    def close(self) -> None:  # noqa: B027 - optional hook: most executors hold nothing
        """Release the executor's own resources (workers, clusters)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CappedFactory(EngineFactory):
    """Creates ``factory``'s engines wrapped so their numba kernels use ``threads`` threads."""

    def __init__(self, factory: EngineFactory, threads: int) -> None:
        self._inner = factory
        self._threads = threads

    def create_engine(self, engine_type: str) -> ICalcEngine:
        """``factory``'s engine of ``engine_type``, under the thread cap."""
        return NumbaThreadsEngine(self._inner.create_engine(engine_type), self._threads)
