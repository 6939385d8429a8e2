"""The engine interface every LiveCalc engine implements: built-in, third-party or legacy.

An engine is initialised once with its config, then ``run_chunk`` is called any number of
times with views into pre-allocated buffers, then ``dispose``. ``input_buffer`` is one record
array, a mapping of named record arrays (the node's inputs, e.g. ``{"policies": ...,
"scenarios": ...}``; engines recognise them by dtype) or None; ``output_buffer`` is the record
array the engine writes into from index 0, saying in ``ExecutionResult.bytes_written`` how much
it wrote.

Engines written against the original interface (the seed's ``runChunk`` returning a dict, or
``credentials`` as a dict) work unchanged: a subclass that defines only ``runChunk`` gets a
``run_chunk`` that calls it, and ``as_engine`` wraps a duck-typed legacy object.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from livecalc.errors import ConfigurationError, ExecutionError

if TYPE_CHECKING:
    # Annotations only: a worker process hosting a plug-in engine need not load httpx and JWT.
    from livecalc.assumptions.credentials import AMCredentials

__all__ = [
    "EngineInfo",
    "ExecutionResult",
    "ICalcEngine",
    "InputBuffer",
    "OutputSpec",
    "SupportsEvaluator",
    "SupportsParameters",
    "as_engine",
]

InputBuffer = np.ndarray | Mapping[str, np.ndarray] | None
"""What ``run_chunk`` reads: one record array, named record arrays, or nothing (an ESG)."""


@dataclass(frozen=True)
class EngineInfo:
    """An engine's metadata, as in the seed."""

    name: str
    version: str
    engine_type: str
    supports_assumptions_manager: bool = False
    max_buffer_size: int = 0


@dataclass
class ExecutionResult:
    """The outcome of one ``run_chunk``, as in the seed."""

    success: bool = True
    execution_time_ms: float = 0.0
    rows_processed: int = 0
    bytes_written: int = 0
    warnings: list[str] = field(default_factory=list)
    error_message: str = ""

    @classmethod
    def from_legacy(cls, value: Any, elapsed_ms: float) -> ExecutionResult:
        """Convert what a seed-style ``runChunk`` returned (a dict, or None) to a result."""
        if isinstance(value, ExecutionResult):
            return value
        if value is None:
            return cls(success=True, execution_time_ms=elapsed_ms)
        if not isinstance(value, Mapping):
            raise ExecutionError(
                f"runChunk returned {type(value).__name__}; expected an ExecutionResult or a dict"
            )
        return cls(
            success=bool(value.get("success", True)),
            execution_time_ms=float(value.get("execution_time_ms", elapsed_ms)),
            rows_processed=int(value.get("rows_processed", 0)),
            bytes_written=int(value.get("bytes_written", 0)),
            warnings=[str(w) for w in value.get("warnings", [])],
            error_message=str(value.get("error_message", value.get("error", ""))),
        )


@dataclass(frozen=True)
class OutputSpec:
    """The output buffer an engine needs for given inputs: record dtype and record count."""

    dtype: np.dtype[Any]
    records: int


class ICalcEngine(ABC):
    """The interface of every calculation engine.

    Subclasses implement ``initialize``, ``get_info``, ``run_chunk`` (or the seed's
    ``runChunk``), ``dispose`` and ``is_initialized``. Engines used in a DAG also implement
    ``output_spec`` so the runner can allocate their output buffer once.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("runChunk")
        if legacy is not None and "run_chunk" not in cls.__dict__:

            def run_chunk(
                self: ICalcEngine, input_buffer: InputBuffer, output_buffer: np.ndarray | None
            ) -> ExecutionResult:
                start = time.perf_counter()
                value = legacy(self, input_buffer, output_buffer)
                return ExecutionResult.from_legacy(value, (time.perf_counter() - start) * 1e3)

            run_chunk.__doc__ = "Seed-style ``runChunk`` adapted to return an ExecutionResult."
            cls.run_chunk = run_chunk  # type: ignore[method-assign]
            abstract = set(getattr(cls, "__abstractmethods__", ())) - {"run_chunk"}
            cls.__abstractmethods__ = frozenset(abstract)

    @abstractmethod
    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Validate ``config``, load what the engine needs; raise ConfigurationError or
        InitializationError."""

    @abstractmethod
    def get_info(self) -> EngineInfo:
        """The engine's metadata."""

    @abstractmethod
    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Compute one chunk: read ``input_buffer``, write ``output_buffer`` from index 0."""

    @abstractmethod
    def dispose(self) -> None:
        """Release resources; never raises. ``initialize`` is needed again afterwards."""

    @property
    @abstractmethod
    def is_initialized(self) -> bool:
        """Whether ``initialize`` succeeded and ``dispose`` has not been called since."""

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The output buffer ``run_chunk`` needs for these inputs, or None for no buffer.

        The default says the engine writes no record buffer (a sink, such as a solver whose
        results come from ``get_outputs``).
        """
        return None

    def get_outputs(self) -> Mapping[str, Any]:
        """Results of the last ``run_chunk`` that are not records (statistics, solutions)."""
        return {}


@runtime_checkable
class SupportsParameters(Protocol):
    """An engine whose parameters a solver may override between runs without re-initialising."""

    def set_parameters(self, params: Mapping[str, float]) -> None:
        """Apply overrides (e.g. ``premium_multiplier``); unknown names raise ConfigurationError."""


Evaluator = Callable[[Mapping[str, float]], np.ndarray]


@runtime_checkable
class SupportsEvaluator(Protocol):
    """An engine (the solver) that re-runs an upstream engine with parameter overrides."""

    def bind_evaluator(self, evaluator: Evaluator) -> None:
        """Receive the callback: overrides in, the upstream engine's fresh output records out."""


class _LegacyEngine(ICalcEngine):
    """Wraps a duck-typed seed engine (``runChunk`` returning a dict, dict credentials)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        creds = credentials.as_legacy_dict() if credentials is not None else None
        self._inner.initialize(dict(config), creds)

    def get_info(self) -> EngineInfo:
        info = self._inner.get_info()
        if isinstance(info, EngineInfo):
            return info
        if isinstance(info, Mapping):
            return EngineInfo(**info)
        return EngineInfo(
            name=info.name,
            version=info.version,
            engine_type=info.engine_type,
            supports_assumptions_manager=getattr(info, "supports_assumptions_manager", False),
            max_buffer_size=getattr(info, "max_buffer_size", 0),
        )

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        start = time.perf_counter()
        value = self._inner.runChunk(input_buffer, output_buffer)
        return ExecutionResult.from_legacy(value, (time.perf_counter() - start) * 1e3)

    def dispose(self) -> None:
        with contextlib.suppress(Exception):  # dispose never raises, as in the seed
            self._inner.dispose()

    @property
    def is_initialized(self) -> bool:
        return bool(self._inner.is_initialized)

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        spec = getattr(self._inner, "output_spec", None)
        return spec(inputs) if callable(spec) else None

    def get_outputs(self) -> Mapping[str, Any]:
        outputs = getattr(self._inner, "get_outputs", None)
        return outputs() if callable(outputs) else {}


def as_engine(obj: Any) -> ICalcEngine:
    """``obj`` as an ICalcEngine: itself, or a wrapper around a seed-style engine."""
    if isinstance(obj, ICalcEngine):
        return obj
    needed = ("initialize", "get_info", "dispose")
    if all(callable(getattr(obj, n, None)) for n in needed) and callable(
        getattr(obj, "runChunk", getattr(obj, "run_chunk", None))
    ):
        if not callable(getattr(obj, "runChunk", None)):
            raise ConfigurationError(
                f"{type(obj).__name__} has run_chunk but does not subclass ICalcEngine: "
                "subclass livecalc.ICalcEngine"
            )
        return _LegacyEngine(obj)
    raise ConfigurationError(
        f"{type(obj).__name__} is not an engine: it needs initialize, get_info, run_chunk "
        "(or runChunk), dispose and is_initialized"
    )
