"""The ``local`` executor: engines in this process, buffers passed by reference (zero-copy)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import ExecutionError
from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.pipeline.executors.base import EngineHandle, Executor
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.lifecycle import EngineLifecycleManager, EngineState, LifecycleConfig

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "LocalExecutor",
    "ManagedHandle",
    "available_cpus",
    "lifecycle_config",
]

DEFAULT_TIMEOUT_SECONDS = 300.0
"""Per-chunk timeout when neither the node nor the run options set one (the seed's 5 min)."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def lifecycle_config(
    node: EngineNode, options: RunOptions, isolation: Literal["inline", "process"]
) -> LifecycleConfig:
    """The node's timeout, retry and error policy as a LifecycleConfig."""
    timeout = node.timeout_seconds or options.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
    return LifecycleConfig(
        timeout_seconds=timeout,
        auto_retry_on_error=node.retries > 0,
        max_consecutive_errors=node.max_consecutive_errors,
        isolation=isolation,
    )


class ManagedHandle:
    """An EngineHandle over an EngineLifecycleManager (inline or process isolation)."""

    def __init__(self, engine: ICalcEngine, manager: EngineLifecycleManager) -> None:
        self._engine = engine
        self.manager = manager
        self._last_pid: int | None = None

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Initialise the engine through its manager."""
        self.manager.initialize(config, credentials)

    def get_info(self) -> EngineInfo:
        """The engine's metadata, once initialised."""
        info = self.manager.info
        if info is None:
            raise ExecutionError("engine is not initialised", self.manager.engine_id)
        return info

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """One chunk through the manager (timeouts, retries, error policy)."""
        return self.manager.run_chunk(input_buffer, output_buffer)

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The engine's output buffer needs."""
        return self.manager.output_spec(inputs)

    def get_outputs(self) -> Mapping[str, Any]:
        """The engine's non-record results."""
        return self.manager.get_outputs()

    def compile_seconds(self) -> float:
        """Seconds numba has spent compiling for this engine so far (inline or in its worker)."""
        return self.manager.compile_seconds

    def supports(self, method: str) -> bool:
        """Whether the engine's class defines ``method`` (checked on this process's copy)."""
        return callable(getattr(self._engine, method, None))

    def call(self, method: str, *args: Any) -> Any:
        """Call an optional engine method where the engine lives."""
        return self.manager.call(method, *args)

    def cancel(self) -> None:
        """Interrupt: kill the engine's worker at once (inline engines finish their chunk)."""
        self.manager.cancel()

    def dispose(self) -> None:
        """Dispose of the engine (and stop its worker)."""
        self.manager.dispose()

    # -- for replica pools (livecalc.pipeline.pool) ------------------------------------------

    @property
    def restartable(self) -> bool:
        """Whether a lost worker is replaced by a fresh one (initialised, parameters replayed)
        on the next chunk: until the manager disposes of the engine (max_consecutive_errors)."""
        return self.manager.state is not EngineState.DISPOSED

    def replica_lost(self) -> bool:
        """Whether the engine's worker process is gone (killed, crashed or timed out)."""
        return self.manager.config.isolation == "process" and self.manager.worker_pid is None

    def location(self) -> str:
        """Where the engine runs: the worker's pid (this process's when inline); the last
        worker's once it is gone (a lost replica's record names it)."""
        pid = self.manager.worker_pid
        if pid is not None:
            self._last_pid = pid
        return f"pid:{pid if pid is not None else self._last_pid}"

    def kill(self) -> None:
        """Kill the worker process now, without waiting for its chunk (Ctrl-C): the
        manager's ``cancel``, so the waiting chunk is not retried and no new worker starts."""
        self.manager.cancel()


class LocalExecutor(Executor):
    """Engines run inline in this process; chunks get views of the same buffers."""

    name = "local"
    shared_buffers = False

    def create_handle(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions
    ) -> EngineHandle:
        """A handle running ``node``'s engine inline."""
        engine = factory.create_engine(node.type)
        manager = EngineLifecycleManager(
            engine, lifecycle_config(node, options, "inline"), engine_id=node.id
        )
        return ManagedHandle(engine, manager)
