"""The executor interface: ``Executor`` makes ``EngineHandle`` objects the runner drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.runtime.engine import EngineInfo, ExecutionResult, InputBuffer, OutputSpec
from livecalc.runtime.factory import EngineFactory

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
