"""EngineLifecycleManager: one engine's states, timeouts, retries, statistics and events.

```
UNINITIALIZED ──initialize──► INITIALIZING ──ok──► READY ◄──ok── RUNNING
      ▲                            │                 │ run_chunk   ▲  │
      └────────── failed ──────────┘                 └─────────────┘  │ failed / timeout
                                                                ERROR ◄┘
                          (run_chunk again: ERROR ──► RUNNING)
   dispose() from any state, or max_consecutive_errors reached ──► DISPOSED ──initialize──► ...
```

Failures raise, the Python way, rather than returning ``success=False``: ``run_chunk`` raises
``ExecutionError`` (the engine's exception chained, or the ``error_message`` of a result with
``success=False``), ``EngineTimeoutError`` when the chunk ran past ``timeout_seconds``, and
``ExecutionError`` naming the signal when a worker process dies. A ``ConfigurationError`` raised
by the engine (bad input) passes through unchanged. After a failure the state is ERROR and the
next ``run_chunk`` is allowed, until ``max_consecutive_errors`` failed executions in a row
dispose of the engine; later calls raise until it is initialised again.

``isolation="inline"`` runs the engine in the caller's thread: no overhead, but a thread cannot
be stopped, so a chunk that overruns is reported as a timeout only once it has finished (its
output is then not to be trusted: the call raises). ``isolation="process"`` runs it in a worker
process attached to the caller's shared-memory buffers: a timeout kills the worker within
moments of the deadline, a crash becomes an error, and the next call starts a fresh worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
from pydantic import ValidationError

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import (
    CalcEngineError,
    ConfigurationError,
    EngineTimeoutError,
    ExecutionError,
    InitializationError,
)
from livecalc.log import get_logger
from livecalc.runtime._hosts import (
    EngineFailed,
    InlineHost,
    ProcessHost,
    WorkerCancelled,
    WorkerDied,
    WorkerTimedOut,
)
from livecalc.runtime._lifecycle_state import (
    TRANSITIONS,
    EngineState,
    LifecycleConfig,
    LifecycleStats,
    RunCounters,
)
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    InputBuffer,
    OutputSpec,
    as_engine,
)

__all__ = [
    "TRANSITIONS",
    "EngineLifecycleManager",
    "EngineState",
    "LifecycleConfig",
    "LifecycleStats",
]


@dataclass
class _Failure:
    error: CalcEngineError
    retryable: bool
    stack_trace: str = ""
    timed_out: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _nbytes(buffer: Any) -> int:
    if isinstance(buffer, Mapping):
        return sum(_nbytes(b) for b in buffer.values())
    return int(buffer.nbytes) if isinstance(buffer, np.ndarray) else 0


_SECRET_KEY_PARTS = ("token", "password", "secret", "api_key")


def _config_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    # Engine configs hold no credentials by contract; a key that looks like one is hidden
    # anyway, since a log line is the worst place for a leaked secret.
    return {
        f"config.{key}": "***" if any(p in str(key).lower() for p in _SECRET_KEY_PARTS) else value
        for key, value in config.items()
    }


def _reraise_engine_error(failed: EngineFailed) -> None:
    # The engine's own ConfigurationError / InitializationError already say what to fix.
    exc = failed.failure.exception
    if isinstance(exc, ConfigurationError | InitializationError):
        if exc.__traceback__ is None and failed.failure.stack_trace:
            exc.add_note(f"raised in the worker process:\n{failed.failure.stack_trace}")
        raise exc


def _credentials_from_dict(raw: Mapping[str, Any]) -> AMCredentials:
    # The seed's dict form. pydantic's message would quote the values, the token among them.
    try:
        return AMCredentials(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(
            f"credentials: {problems} (expected am_url, am_token and optional cache_dir)"
        ) from None


class EngineLifecycleManager:
    """Runs one engine through its life: initialise, run chunks, dispose; a context manager.

    Example:
        >>> from livecalc.testing import EchoEngine
        >>> with EngineLifecycleManager(EchoEngine(), engine_id="echo") as manager:
        ...     manager.initialize({})
        ...     manager.state.name
        'READY'
    """

    def __init__(
        self,
        engine: Any,
        config: LifecycleConfig | None = None,
        engine_id: str | None = None,
    ) -> None:
        """Args:
        engine: an ICalcEngine, or a seed-style engine (wrapped with ``as_engine``).
        config: timeouts, retries and isolation; the defaults of ``LifecycleConfig``.
        engine_id: the name in logs and errors (the DAG node id); the class name otherwise.
        """
        engine = as_engine(engine)
        self.config = config if config is not None else LifecycleConfig()
        self.engine_id = engine_id or type(engine).__name__
        self._host: InlineHost | ProcessHost = (
            ProcessHost(engine, self.engine_id)
            if self.config.isolation == "process"
            else InlineHost(engine)
        )
        self._state = EngineState.UNINITIALIZED
        self._info: EngineInfo | None = None
        self._counters = RunCounters()
        self._consecutive_errors = 0
        self._lock = threading.RLock()

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> EngineState:
        """The current state."""
        return self._state

    @property
    def info(self) -> EngineInfo | None:
        """The engine's info, once initialised."""
        return self._info

    @property
    def compile_seconds(self) -> float:
        """Seconds numba spent compiling kernels for this engine, wherever it runs.

        Measured from numba's compile events (``livecalc.runtime.jit``); a kernel loaded from
        numba's disk cache costs no compile time.
        """
        return self._host.compile_seconds

    @property
    def worker_pid(self) -> int | None:
        """The pid of the process running the engine (this one when inline), None if none."""
        return self._host.pid

    def _log(self) -> Any:
        engine_type = self._info.engine_type if self._info else None
        return get_logger(engine_id=self.engine_id, engine_type=engine_type)

    def _transition(self, new: EngineState, error: type[CalcEngineError] = ExecutionError) -> None:
        old = self._state
        if new not in TRANSITIONS[old]:
            raise error(
                f"engine {self.engine_id!r}: cannot go from {old.name} to {new.name}"
                + (
                    " (initialize it first)"
                    if old in (EngineState.UNINITIALIZED, EngineState.DISPOSED)
                    else ""
                )
            )
        self._state = new
        self._log().debug("state_transition", old_state=old.name, new_state=new.name)

    def _require_initialized(self, what: str) -> None:
        if self._state not in (EngineState.READY, EngineState.ERROR):
            raise ExecutionError(
                f"engine {self.engine_id!r} is {self._state.name}: initialize it before "
                f"calling {what}"
            )

    # -- life ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the engine at once, from any thread (the run is being interrupted).

        With process isolation the worker is killed (SIGKILL): a chunk or call waiting on it
        raises ``ExecutionError("interrupted: ...")`` at once, is not retried, and no new
        worker starts until ``initialize``. Inline, nothing can stop the running thread: its
        chunk runs to its end. Takes no lock, since the thread being stopped holds it.
        """
        self._host.cancel()

    def start(self) -> None:
        """Start the engine's worker process now, without waiting for it (process isolation).

        A worker takes a second or more to boot (a fresh interpreter importing the engine and
        its libraries). ``initialize`` starts it when it is not running; starting the workers
        of several engines first lets them boot side by side. Inline, this does nothing.
        """
        with self._lock:
            if self._state in (EngineState.UNINITIALIZED, EngineState.DISPOSED):
                self._host.prepare()

    def initialize(
        self,
        config: Mapping[str, Any],
        credentials: AMCredentials | Mapping[str, Any] | None = None,
    ) -> None:
        """Initialise the engine with its config (plain JSON values) and AM credentials.

        Raises:
            ConfigurationError: the engine refused its config.
            InitializationError: anything else went wrong (an illegal state included).
        """
        if isinstance(credentials, Mapping):
            credentials = _credentials_from_dict(credentials)
        with self._lock:
            self._transition(EngineState.INITIALIZING, InitializationError)
            try:
                info = self._host.initialize(config, credentials)
            except EngineFailed as failed:
                self._transition(EngineState.UNINITIALIZED)
                if isinstance(failed.failure.exception, ConfigurationError):
                    # A user error: the caller gets the exception, one clean message, and no
                    # ERROR line with a stack trace beside it (the trace is kept for --debug).
                    self._log().debug(
                        "engine_config_refused",
                        error_message=str(failed),
                        stack_trace=failed.failure.stack_trace,
                    )
                else:
                    self._log_error(str(failed), failed.failure.stack_trace)
                _reraise_engine_error(failed)
                raise InitializationError(
                    f"engine {self.engine_id!r} failed to initialize: {failed}"
                ) from failed.failure.exception
            except WorkerCancelled as cancelled:
                self._transition(EngineState.UNINITIALIZED)
                raise InitializationError(
                    f"engine {self.engine_id!r}: interrupted while initialising ({cancelled})"
                ) from None
            except WorkerDied as died:
                self._transition(EngineState.UNINITIALIZED)
                self._log_error(str(died), "")
                raise InitializationError(
                    f"engine {self.engine_id!r}: its worker process {died.reason} while "
                    "initialising"
                ) from None
            except BaseException:
                self._transition(EngineState.UNINITIALIZED)
                raise
            self._info = info
            self._consecutive_errors = 0
            self._transition(EngineState.READY)
            self._log().info(
                "engine_init",
                engine_name=info.name,
                engine_version=info.version,
                supports_am=info.supports_assumptions_manager,
                isolation=self.config.isolation,
                **_config_fields(config),
                **(
                    {"am_url": credentials.am_url, "cache_dir": credentials.cache_dir}
                    if credentials is not None
                    else {}
                ),
            )

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Run one chunk; returns the engine's result, raises on any failure.

        With ``auto_retry_on_error`` a failed execution (exception, ``success=False`` or a
        crashed worker) runs once more; a timeout or a ConfigurationError does not.

        Raises:
            EngineTimeoutError: the chunk ran past ``timeout_seconds``.
            ExecutionError: the engine failed or its worker died; the state is then ERROR, or
                DISPOSED once ``max_consecutive_errors`` is reached. Also for an illegal state.
            ConfigurationError: the engine refused its input, or (process isolation) a buffer
                is not in shared memory.
        """
        with self._lock:
            attempts = 2 if self.config.auto_retry_on_error else 1
            for attempt in range(1, attempts + 1):
                outcome = self._execute(input_buffer, output_buffer)
                if isinstance(outcome, ExecutionResult):
                    return outcome
                if attempt < attempts and outcome.retryable and self._state is EngineState.ERROR:
                    self._log().warning(
                        "warning", message="retrying the chunk once", error=str(outcome.error)
                    )
                    continue
                raise outcome.error
            raise AssertionError("unreachable")  # the loop returns or raises

    def _execute(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult | _Failure:
        self._transition(EngineState.RUNNING)
        timeout = self.config.timeout_seconds
        self._log().info(
            "execution_start",
            input_size_bytes=_nbytes(input_buffer),
            output_size_bytes=_nbytes(output_buffer),
        )
        start = time.perf_counter()
        try:
            # A fresh worker after a timeout or crash starts here, outside the chunk's budget.
            self._host.prepare()
            start = time.perf_counter()
            result, memory_mb = self._host.run_chunk(input_buffer, output_buffer, timeout)
        except ConfigurationError as exc:
            # Buffers refused (not in shared memory): the same input would be refused again.
            return self._fail(_Failure(exc, retryable=False), start)
        except EngineFailed as failed:
            cause = failed.failure.exception
            if isinstance(cause, ConfigurationError):
                return self._fail(_Failure(cause, False, failed.failure.stack_trace), start)
            failure = ExecutionError(f"engine failed: {failed}", self.engine_id)
            failure.__cause__ = cause
            return self._fail(_Failure(failure, True, failed.failure.stack_trace), start)
        except WorkerCancelled as cancelled:
            error: ExecutionError = ExecutionError(f"interrupted: {cancelled}", self.engine_id)
            return self._fail(_Failure(error, False), start)
        except WorkerTimedOut:
            error = EngineTimeoutError(
                f"chunk ran past timeout_seconds={timeout:g}; its worker process was killed",
                self.engine_id,
                timeout,
            )
            return self._fail(_Failure(error, False, timed_out=True), start)
        except WorkerDied as died:
            error = ExecutionError(
                f"the engine's worker process {died.reason} (a crash in the engine); any later "
                "call starts a fresh worker",
                self.engine_id,
            )
            return self._fail(_Failure(error, True, extra={"exitcode": died.exitcode}), start)
        except BaseException:
            self._transition(EngineState.ERROR)  # interrupted (Ctrl-C): not left RUNNING
            raise
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if not result.success:
            error = ExecutionError(
                f"engine reported failure: {result.error_message or 'no error message'}",
                self.engine_id,
            )
            return self._fail(_Failure(error, True), start)
        if self.config.isolation == "inline" and elapsed_ms > timeout * 1e3:
            error = EngineTimeoutError(
                f"chunk took {elapsed_ms / 1e3:.3f} s, past timeout_seconds={timeout:g} "
                "(inline isolation cannot stop a chunk, so it is failed once it returns; "
                "use isolation='process' to stop it at the deadline)",
                self.engine_id,
                timeout,
            )
            return self._fail(_Failure(error, False, timed_out=True), start)
        if not result.execution_time_ms:
            result.execution_time_ms = elapsed_ms
        self._counters.successful_runs += 1
        self._counters.total_execution_time_ms += elapsed_ms
        self._consecutive_errors = 0
        self._transition(EngineState.READY)
        for message in result.warnings:
            self._log().warning("warning", message=message)
        self._log().info(
            "execution_complete",
            success=True,
            execution_time_ms=elapsed_ms,
            rows_processed=result.rows_processed,
            bytes_written=result.bytes_written,
            throughput_rows_per_sec=result.rows_processed / (elapsed_ms / 1e3)
            if elapsed_ms > 0
            else 0.0,
            memory_used_mb=round(memory_mb, 1),
        )
        return result

    def _fail(self, failure: _Failure, start: float) -> _Failure:
        elapsed_ms = (time.perf_counter() - start) * 1e3
        self._counters.failed_runs += 1
        self._counters.timeout_count += failure.timed_out
        self._counters.total_execution_time_ms += elapsed_ms
        self._consecutive_errors += 1
        self._transition(EngineState.ERROR)
        self._log_error(str(failure.error), failure.stack_trace, **failure.extra)
        self._log().error(
            "execution_complete",
            success=False,
            execution_time_ms=elapsed_ms,
            error=str(failure.error),
            timed_out=failure.timed_out,
        )
        limit = self.config.max_consecutive_errors
        if self._consecutive_errors >= limit:
            self._dispose_locked()
            failure.error.add_note(
                f"engine {self.engine_id!r} was disposed after {limit} consecutive failed "
                "executions; initialize it again to reuse it"
            )
        return failure

    def _log_error(self, message: str, stack_trace: str, **extra: Any) -> None:
        self._log().error("error", error_message=message, stack_trace=stack_trace, **extra)

    # -- forwarding ----------------------------------------------------------------------

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """The output buffer the engine needs for these inputs (computed where it lives)."""
        return self.call("output_spec", inputs)  # type: ignore[no-any-return]

    def get_outputs(self) -> Mapping[str, Any]:
        """The engine's non-record results of its last chunk (statistics, solutions)."""
        return self.call("get_outputs")  # type: ignore[no-any-return]

    def call(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method of the engine wherever it lives (e.g. the projection's set_parameters).

        With process isolation, arrays in shared memory go by reference and everything else,
        the return value included, is pickled; the call is stopped (its worker killed) at
        ``timeout_seconds``. Parameters set with ``set_parameters`` are applied again to the
        fresh worker that replaces one lost to a timeout or crash; other calls that change
        the engine are not replayed.

        Raises:
            ExecutionError: the engine is not initialised, the method failed or the worker died.
            ConfigurationError: what the engine's method raised as such, or no such method.
        """
        with self._lock:
            self._require_initialized(f"{method_name}()")
            timeout = self.config.timeout_seconds
            try:
                if method_name == "output_spec" and len(args) == 1 and not kwargs:
                    return self._host.output_spec(args[0], timeout)
                return self._host.call(method_name, args, kwargs, timeout)
            except EngineFailed as failed:
                self._log_error(str(failed), failed.failure.stack_trace, method=method_name)
                exc = failed.failure.exception
                if isinstance(exc, ConfigurationError):
                    raise exc from None
                raise ExecutionError(f"{method_name}() failed: {failed}", self.engine_id) from exc
            except WorkerCancelled as cancelled:
                raise ExecutionError(
                    f"{method_name}() interrupted: {cancelled}", self.engine_id
                ) from None
            except WorkerTimedOut as timed_out:
                self._log_error(str(timed_out), "", method=method_name)
                raise EngineTimeoutError(
                    f"{method_name}() ran past timeout_seconds={timeout:g}; its worker process "
                    "was killed",
                    self.engine_id,
                    timeout,
                ) from None
            except WorkerDied as died:
                self._log_error(str(died), "", method=method_name)
                raise ExecutionError(
                    f"{method_name}(): the engine's worker process stopped: {died}",
                    self.engine_id,
                ) from None

    # -- statistics and disposal ---------------------------------------------------------

    def get_stats(self) -> LifecycleStats:
        """A snapshot of the execution statistics."""
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the statistics (the consecutive-error count is not a statistic: it stays)."""
        self._counters = RunCounters()

    def dispose(self) -> None:
        """Dispose of the engine and stop its worker; calling it again does nothing."""
        with self._lock:
            if self._state is not EngineState.DISPOSED:
                self._dispose_locked()

    def _dispose_locked(self) -> None:
        self._host.dispose()
        self._transition(EngineState.DISPOSED)

    def __enter__(self) -> EngineLifecycleManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.dispose()

    def __repr__(self) -> str:
        return (
            f"EngineLifecycleManager(engine_id={self.engine_id!r}, state={self._state.name}, "
            f"isolation={self.config.isolation!r})"
        )
