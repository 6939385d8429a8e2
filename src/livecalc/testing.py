"""Small fake engines for tests, users' and ours: echo, no-op, sleep, spin, crash, fail-n,
alignment probe.

Every fake is a module-level ``ICalcEngine`` subclass, so it pickles into a worker process
(process isolation). Each reads one record array (or the first array of a mapping of named
inputs), and those that write anything copy their input records to ``output_buffer[:n]``,
so ``output_spec`` asks for an output buffer of the input's dtype and length (the alignment
probe writes one RESULT record per input record instead).

``register_testing_engines(factory)`` registers them under "test_echo", "test_noop",
"test_sleep", "test_spin", "test_numba_spin", "test_crash", "test_fail_n", "test_slow_chunk"
and "test_align".

The ports' test doubles (``livecalc.ports.doubles``) are here too: ``MemoryCheckpointStore``,
``RecordingProgress``, ``FakeClock``, ``RecordingRateLimiter`` and ``RecordingRunContext``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import ConfigurationError, ExecutionError
from livecalc.ports.doubles import (
    FakeClock,
    MemoryCheckpointStore,
    RecordingProgress,
    RecordingRateLimiter,
    RecordingRunContext,
)
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)
from livecalc.runtime.factory import EngineFactory
from livecalc.runtime.records import ALIGNMENT, RESULT_DTYPE

__all__ = [
    "TESTING_ENGINE_TYPES",
    "AlignmentProbeEngine",
    "CrashEngine",
    "EchoEngine",
    "FailNTimesEngine",
    "FakeClock",
    "MemoryCheckpointStore",
    "NoOpEngine",
    "NumbaSpinEngine",
    "RecordingProgress",
    "RecordingRateLimiter",
    "RecordingRunContext",
    "SleepEngine",
    "SlowChunkEngine",
    "SpinEngine",
    "register_testing_engines",
]


def _first_array(input_buffer: InputBuffer) -> np.ndarray | None:
    if isinstance(input_buffer, Mapping):
        return next(iter(input_buffer.values()), None)
    return input_buffer


def _number(config: Mapping[str, Any], key: str, default: float, minimum: float = 0) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigurationError(f"config.{key}: must be a number >= {minimum}, got {value!r}")
    return float(value)


class _FakeEngine(ICalcEngine):
    """Shared plumbing: config kept, initialised flag, info, echo-shaped output spec."""

    engine_type = "test"

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.credentials: AMCredentials | None = None
        self.calls = 0
        self._initialized = False

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Keep the config; subclasses validate their keys."""
        self.config = dict(config)
        self.credentials = credentials
        self._initialized = True

    def get_info(self) -> EngineInfo:
        """The fake's name and type."""
        return EngineInfo(name=type(self).__name__, version="1.0", engine_type=self.engine_type)

    def dispose(self) -> None:
        """Forget the config."""
        self._initialized = False

    @property
    def is_initialized(self) -> bool:
        """Whether initialised and not disposed."""
        return self._initialized

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """An output of the input's dtype and length (None without inputs)."""
        first = _first_array(inputs)
        return None if first is None else OutputSpec(first.dtype, len(first))

    def get_outputs(self) -> Mapping[str, Any]:
        """How many chunks this engine has run, and the config it was initialised with."""
        return {"calls": self.calls, "config": dict(self.config)}

    def _echo(self, input_buffer: InputBuffer, output_buffer: np.ndarray | None) -> ExecutionResult:
        if not self._initialized:
            raise ExecutionError(f"{type(self).__name__}: run_chunk before initialize")
        self.calls += 1
        records = _first_array(input_buffer)
        if records is None or output_buffer is None:
            return ExecutionResult(rows_processed=0)
        n = len(records)
        if output_buffer.dtype != records.dtype or len(output_buffer) < n:
            raise ConfigurationError(
                f"{type(self).__name__}: output_buffer ({len(output_buffer)} records of "
                f"{output_buffer.dtype}) cannot hold the input ({n} records of {records.dtype}); "
                "allocate it from output_spec"
            )
        output_buffer[:n] = records
        return ExecutionResult(rows_processed=n, bytes_written=n * records.dtype.itemsize)


class EchoEngine(_FakeEngine):
    """Copies its input records to the output buffer."""

    engine_type = "test_echo"

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Copy ``input[:n]`` to ``output[:n]``."""
        return self._echo(input_buffer, output_buffer)


class NoOpEngine(_FakeEngine):
    """Touches nothing and reports the input's length: measures the cost of a hand-off."""

    engine_type = "test_noop"

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Count the input records without reading them."""
        self.calls += 1
        records = _first_array(input_buffer)
        return ExecutionResult(rows_processed=0 if records is None else len(records))


class SleepEngine(_FakeEngine):
    """Sleeps ``config["seconds"]`` (default 1), then echoes."""

    engine_type = "test_sleep"

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Read ``seconds``."""
        self.seconds = _number(config, "seconds", 1.0)
        super().initialize(config, credentials)

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Sleep, then copy input to output."""
        time.sleep(self.seconds)
        return self._echo(input_buffer, output_buffer)


class SpinEngine(_FakeEngine):
    """Never returns from ``run_chunk``: a pure-Python busy loop (only a kill stops it)."""

    engine_type = "test_spin"

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Loop forever, holding the GIL between bytecodes."""
        self.calls += 1
        n = 0
        while True:
            n += 1


@functools.cache
def _numba_spin() -> Callable[[int], float]:
    # Imported and compiled on first use, so the other fakes never pay for numba.
    import numba

    @numba.njit(nogil=True, cache=False)
    def spin(iterations: int) -> float:
        # A floating-point recurrence: without fastmath LLVM cannot fold it into a formula,
        # so the loop really runs `iterations` times.
        x = 1.0
        for _ in range(iterations):
            x = x * 1.0000001 + 1e-9
        return x

    return spin


class NumbaSpinEngine(_FakeEngine):
    """Runs a numba ``nogil`` compiled loop of ``config["iterations"]`` steps (default 10**18).

    ``initialize`` compiles the kernel, so ``run_chunk`` spends its time in compiled code.
    """

    engine_type = "test_numba_spin"

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Read ``iterations`` and compile the loop."""
        self.iterations = int(_number(config, "iterations", 10**18))
        _numba_spin()(10)
        super().initialize(config, credentials)

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Spin in compiled code with the GIL released, then echo."""
        self.value = _numba_spin()(self.iterations)
        return self._echo(input_buffer, output_buffer)


class CrashEngine(_FakeEngine):
    """Crashes its process in ``run_chunk``: ``config["kind"]`` "segfault" (default) or "abort".

    Only run it with process isolation: inline, it takes the caller's process down.
    """

    engine_type = "test_crash"

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Read ``kind``."""
        kind = config.get("kind", "segfault")
        if kind not in ("segfault", "abort"):
            raise ConfigurationError(f"config.kind: 'segfault' or 'abort', got {kind!r}")
        self.kind = kind
        super().initialize(config, credentials)

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Dereference NULL or call abort()."""
        # No core file: a test crash should not write hundreds of MB to disk.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.kind == "abort":
            os.abort()
        ctypes.string_at(0)
        raise AssertionError("unreachable: reading address 0 faults")


class FailNTimesEngine(_FakeEngine):
    """Fails its first ``config["n"]`` chunks (default 1), then echoes.

    ``config["mode"]``: "raise" (default, a RuntimeError) or "result" (``success=False``).
    """

    engine_type = "test_fail_n"

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Read ``n`` and ``mode``; the failure count starts again."""
        self.n = int(_number(config, "n", 1))
        self.mode = config.get("mode", "raise")
        if self.mode not in ("raise", "result"):
            raise ConfigurationError(f"config.mode: 'raise' or 'result', got {self.mode!r}")
        self.failures = 0
        super().initialize(config, credentials)

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Fail while fewer than ``n`` chunks have failed, else copy input to output."""
        if self.failures < self.n:
            self.failures += 1
            self.calls += 1
            message = f"planned failure {self.failures} of {self.n}"
            if self.mode == "result":
                return ExecutionResult(success=False, error_message=message)
            raise RuntimeError(message)
        return self._echo(input_buffer, output_buffer)


class SlowChunkEngine(_FakeEngine):
    """Echoes; sleeps ``config["seconds"]`` on the chunk holding ``config["policy_id"]``.

    With ``config["once_marker"]`` (a file path) it sleeps only the first time, in whichever
    process gets there first (the file is created exclusively and holds that process's pid): a
    transient stall, and a way for a test to find the process that is stalling.
    """

    engine_type = "test_slow_chunk"

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Read ``seconds``, ``policy_id`` and ``once_marker``."""
        self.seconds = _number(config, "seconds", 1.0)
        self.policy_id = int(_number(config, "policy_id", 0))
        self.once_marker = config.get("once_marker")
        super().initialize(config, credentials)

    def _stall(self, records: np.ndarray | None) -> bool:
        if records is None or records.dtype.names is None or "policy_id" not in records.dtype.names:
            return False
        if not np.any(records["policy_id"] == self.policy_id):
            return False
        if self.once_marker is None:
            return True
        try:
            fd = os.open(f"{self.once_marker}.tmp{os.getpid()}", os.O_CREAT | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            # link() is atomic and fails when the name exists: one process wins, pid inside.
            os.link(f"{self.once_marker}.tmp{os.getpid()}", str(self.once_marker))
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(f"{self.once_marker}.tmp{os.getpid()}")
        return True

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Sleep on the chosen chunk, then copy input to output."""
        if self._stall(_first_array(input_buffer)):
            time.sleep(self.seconds)
        return self._echo(input_buffer, output_buffer)


class AlignmentProbeEngine(_FakeEngine):
    """Writes one RESULT record (24 bytes) per input record, noting where each buffer starts.

    ``get_outputs()["offsets"]`` has one entry per chunk: the address modulo ALIGNMENT (16) of
    the output buffer and of every input array, ``{"output": 0, "inputs": {"policies": 0}}``;
    0 everywhere is the alignment the C header promises.
    """

    engine_type = "test_align"

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Start a fresh list of offsets."""
        self.offsets: list[dict[str, Any]] = []
        super().initialize(config, credentials)

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """One RESULT record per record of the first input."""
        first = _first_array(inputs)
        return None if first is None else OutputSpec(RESULT_DTYPE, len(first))

    def get_outputs(self) -> Mapping[str, Any]:
        """The calls, the config and the offsets of every buffer seen."""
        return {**super().get_outputs(), "offsets": list(self.offsets)}

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Note the buffers' offsets; write (scenario 0, policy_id, npv = policy_id)."""
        self.calls += 1
        if isinstance(input_buffer, Mapping):
            arrays = dict(input_buffer)
        else:
            arrays = {} if input_buffer is None else {"input": input_buffer}
        self.offsets.append(
            {
                "output": None if output_buffer is None else output_buffer.ctypes.data % ALIGNMENT,
                "inputs": {k: int(v.ctypes.data % ALIGNMENT) for k, v in arrays.items()},
            }
        )
        records = _first_array(input_buffer)
        if records is None or output_buffer is None:
            return ExecutionResult(rows_processed=0)
        n = len(records)
        if output_buffer.dtype != RESULT_DTYPE or len(output_buffer) < n:
            raise ConfigurationError(
                f"AlignmentProbeEngine: output_buffer ({len(output_buffer)} records of "
                f"{output_buffer.dtype}) cannot hold {n} RESULT records; allocate it from "
                "output_spec"
            )
        ids = records["policy_id"] if "policy_id" in (records.dtype.names or ()) else range(n)
        out = output_buffer[:n]
        out["scenario_id"] = 0
        out["policy_id"] = np.asarray(ids, dtype=np.uint64) % (1 << 32)
        out["npv"] = out["policy_id"]
        out["reserved"] = 0
        return ExecutionResult(rows_processed=n, bytes_written=n * RESULT_DTYPE.itemsize)


TESTING_ENGINE_TYPES: dict[str, type[ICalcEngine]] = {
    "test_echo": EchoEngine,
    "test_noop": NoOpEngine,
    "test_sleep": SleepEngine,
    "test_slow_chunk": SlowChunkEngine,
    "test_spin": SpinEngine,
    "test_numba_spin": NumbaSpinEngine,
    "test_crash": CrashEngine,
    "test_fail_n": FailNTimesEngine,
    "test_align": AlignmentProbeEngine,
}
"""The fakes by the type name ``register_testing_engines`` gives them."""


def register_testing_engines(factory: EngineFactory) -> None:
    """Register every fake engine with an ``EngineFactory`` under its "test_*" type name."""
    for engine_type, cls in TESTING_ENGINE_TYPES.items():
        factory.register_engine(engine_type, cls)
