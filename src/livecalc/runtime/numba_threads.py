"""An engine wrapper that caps the numba threads of its kernels (replicas x threads <= CPUs).

A replica pool runs several copies of an engine on one machine; each copy's numba kernels would
otherwise start one thread per CPU, and N replicas would run N x CPUs threads. The pool wraps
each replica's engine in ``NumbaThreadsEngine`` with ``threads = CPUs // replicas``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
    as_engine,
)

__all__ = ["NumbaThreadsEngine"]


class NumbaThreadsEngine(ICalcEngine):
    """An engine whose numba kernels use at most ``threads`` threads (replicas x threads <= CPUs).

    Set in the thread that runs each chunk (numba's thread count is per calling thread); in a
    worker process that has not loaded numba yet, ``NUMBA_NUM_THREADS`` caps its pool too.
    """

    def __init__(self, engine: Any, threads: int) -> None:
        self.engine = as_engine(engine)
        self.threads = max(1, threads)
        self._creator_pid = os.getpid()

    def _limit(self) -> None:
        numba = sys.modules.get("numba")
        if numba is not None:
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        elif os.getpid() != self._creator_pid:
            os.environ["NUMBA_NUM_THREADS"] = str(self.threads)

    def __getattr__(self, name: str) -> Any:
        # Optional methods (set_parameters, get_parameters) reach the engine; private names do
        # not, so unpickling (which looks up __setstate__ before "engine" exists) stays sane.
        if name.startswith("_") or name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Initialise the wrapped engine under the thread cap."""
        self._limit()
        self.engine.initialize(config, credentials)

    def get_info(self) -> EngineInfo:
        """The wrapped engine's info."""
        return self.engine.get_info()

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """One chunk of the wrapped engine, on at most ``threads`` numba threads."""
        self._limit()
        return self.engine.run_chunk(input_buffer, output_buffer)

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The wrapped engine's output needs."""
        return self.engine.output_spec(inputs)

    def get_outputs(self) -> Mapping[str, Any]:
        """The wrapped engine's non-record results."""
        return self.engine.get_outputs()

    def dispose(self) -> None:
        """Dispose of the wrapped engine."""
        self.engine.dispose()

    @property
    def is_initialized(self) -> bool:
        """Whether the wrapped engine is initialised."""
        return bool(self.engine.is_initialized)
