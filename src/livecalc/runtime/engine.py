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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from livecalc.errors import ConfigurationError, ExecutionError

if TYPE_CHECKING:
    # Annotations only: a worker process hosting a plug-in engine need not load httpx and JWT.
    from livecalc.assumptions.credentials import AMCredentials

__all__ = [
    "DataProblem",
    "EngineInfo",
    "ExecutionResult",
    "ICalcEngine",
    "InputBuffer",
    "OutputSpec",
    "SupportsDataCheck",
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
    def from_legacy(
        cls, value: Any, elapsed_ms: float, output_buffer: np.ndarray | None = None
    ) -> ExecutionResult:
        """Convert what a seed-style ``runChunk`` returned (a dict, or None) to a result.

        The records written are ``bytes_written`` (bytes) or ``records_written`` (records).
        When the engine was given an output buffer and says neither, the count cannot be
        known: rather than report success with its records dropped, this raises.

        Raises:
            ExecutionError: ``value`` is of another type, or the record count is missing.
        """
        if isinstance(value, ExecutionResult):
            return value
        if value is not None and not isinstance(value, Mapping):
            raise ExecutionError(
                f"runChunk returned {type(value).__name__}; expected an ExecutionResult or a dict"
            )
        raw: Mapping[str, Any] = value if value is not None else {}
        success = bool(raw.get("success", True))
        bytes_written = int(raw.get("bytes_written", 0))
        if "bytes_written" not in raw and "records_written" in raw:
            itemsize = output_buffer.dtype.itemsize if isinstance(output_buffer, np.ndarray) else 0
            bytes_written = int(raw["records_written"]) * itemsize
        elif "bytes_written" not in raw and success and _holds_records(output_buffer):
            assert isinstance(output_buffer, np.ndarray)
            returned = "None" if value is None else f"a dict with keys {sorted(map(str, raw))}"
            raise ExecutionError(
                f"runChunk returned {returned}, without 'bytes_written', after being given "
                f"an output buffer of {len(output_buffer)} records: the records it wrote "
                "cannot be counted. Return {'bytes_written': n * output_buffer.dtype.itemsize} "
                "(or {'records_written': n}) for the n records written to output_buffer[:n], "
                "0 when it wrote none"
            )
        return cls(
            success=success,
            execution_time_ms=float(raw.get("execution_time_ms", elapsed_ms)),
            rows_processed=int(raw.get("rows_processed", 0)),
            bytes_written=bytes_written,
            warnings=[str(w) for w in raw.get("warnings", [])],
            error_message=str(raw.get("error_message", raw.get("error", ""))),
        )


def _holds_records(buffer: Any) -> bool:
    return isinstance(buffer, np.ndarray) and buffer.dtype.itemsize > 0 and len(buffer) > 0


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

    config_file_keys: ClassVar[tuple[str, ...] | None] = None
    """The config keys whose values are file paths, as dotted paths: ``"yield_curve"``,
    ``"curve.file"``, ``"constraints.*.value"`` (``*``: any list item or object key). The
    pipeline makes exactly these relative paths absolute against the config file's folder.
    None (not declared): keys named ``file``, ``path``, ``library`` or ending in ``_table``,
    ``_file`` or ``_path`` are taken as paths, at any depth."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy = cls.__dict__.get("runChunk")
        if legacy is not None and "run_chunk" not in cls.__dict__:

            def run_chunk(
                self: ICalcEngine, input_buffer: InputBuffer, output_buffer: np.ndarray | None
            ) -> ExecutionResult:
                start = time.perf_counter()
                value = legacy(self, input_buffer, output_buffer)
                elapsed_ms = (time.perf_counter() - start) * 1e3
                return ExecutionResult.from_legacy(value, elapsed_ms, output_buffer)

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


@dataclass(frozen=True)
class DataProblem:
    """A bad value in an engine's input data: the input, its column (record field), the
    0-based row (record index, which is the file's data row), what is wrong and the fix."""

    input: str
    column: str
    row: int
    problem: str
    fix: str


@runtime_checkable
class SupportsDataCheck(Protocol):
    """An engine that checks whole input data sets before a run (``livecalc validate`` and
    the start of ``run``), so bad data is refused by file, column and row before any chunk."""

    def check_data(self, inputs: Mapping[str, np.ndarray | None]) -> list[DataProblem]:
        """The problems of these inputs (named record arrays, found by dtype) for this config;
        an input that another engine produces is None (it is not known before the run)."""
        ...


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
        elapsed_ms = (time.perf_counter() - start) * 1e3
        return ExecutionResult.from_legacy(value, elapsed_ms, output_buffer)

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
