"""Executors: where engines run, behind one small interface.

An ``Executor`` turns a config node into an ``EngineHandle``: something with the engine
contract's methods (``initialize``, ``run_chunk``, ``output_spec``, ``get_outputs``,
``call(method, ...)`` for optional methods such as ``set_parameters``, ``dispose``). The
runner drives handles the same way whatever the executor:

- ``local``: engines in this process (``EngineLifecycleManager``, isolation ``"inline"``);
- ``processes``: each engine in a worker process attached to shared-memory buffers
  (isolation ``"process"``); a crash or a timeout fails that node, never the orchestrator;
- ``ray``: engines as Ray actors, chunks as actor calls, arrays through the object store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from livecalc.config import EngineNode, RunOptions
from livecalc.credentials import AMCredentials
from livecalc.engine import EngineInfo, ExecutionResult, InputBuffer, OutputSpec
from livecalc.errors import ConfigurationError
from livecalc.factory import EngineFactory

__all__ = ["EXECUTORS", "EngineHandle", "Executor", "create_executor"]


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

    @abstractmethod
    def create_handle(
        self, node: EngineNode, factory: EngineFactory, options: RunOptions
    ) -> EngineHandle:
        """An uninitialised handle for ``node``'s engine."""

    def close(self) -> None:  # noqa: B027 - optional hook: most executors hold nothing
        """Release the executor's own resources (workers, clusters)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS = ("local", "processes", "ray")


def create_executor(name: str) -> Executor:
    """The executor called ``name`` (local, processes or ray)."""
    if name == "local":
        from livecalc.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "processes":
        from livecalc.executors.processes import ProcessExecutor

        return ProcessExecutor()
    if name == "ray":
        from livecalc.executors.ray import RayExecutor

        return RayExecutor()
    raise ConfigurationError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
