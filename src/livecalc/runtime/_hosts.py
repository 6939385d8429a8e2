"""Where an engine lives for the lifecycle manager: this process, or a worker process.

Both hosts offer the same few operations and report trouble with three private exceptions,
which ``EngineLifecycleManager`` turns into public errors and statistics:

- ``EngineFailed``: the engine raised (the exception, or its remote description);
- ``WorkerTimedOut``: the worker ran past the deadline and was killed;
- ``WorkerDied``: the worker process ended without answering (segfault, abort, kill);
- ``WorkerCancelled``: ``cancel()`` killed the worker (the run was interrupted).

``ProcessHost`` keeps one worker (``livecalc.runtime._worker``) and, after a timeout or a crash,
starts a fresh one on the next request and replays ``initialize`` with the same config there.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import time
import weakref
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import ConfigurationError
from livecalc.runtime import _worker, jit
from livecalc.runtime.buffers import shared_ref_of
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)

__all__ = [
    "MAIN_GUARD_MESSAGE",
    "EngineFailed",
    "InlineHost",
    "ProcessHost",
    "WorkerCancelled",
    "WorkerDied",
    "WorkerTimedOut",
]

_DISPOSE_GRACE_SECONDS = 5.0

MAIN_GUARD_MESSAGE = (
    "the worker process of engine {engine_id!r} stopped while importing your script again: "
    "worker processes (isolation='process', --executor processes) start with the 'spawn' "
    "method, which imports the main script anew, and this script starts a run when imported. "
    'Put the code that runs the pipeline under `if __name__ == "__main__":` '
    "(see docs/lifecycle.md), or use isolation='inline' / the local executor"
)


class EngineFailed(Exception):
    """The engine raised; ``failure`` describes it (and holds it when it could travel)."""

    def __init__(self, failure: _worker.RemoteFailure) -> None:
        self.failure = failure
        super().__init__(f"{failure.type_name}: {failure.message}")


class WorkerTimedOut(Exception):
    """The worker was still busy at the deadline and has been killed."""


class WorkerCancelled(Exception):
    """The worker was killed by ``cancel()``: the run is being interrupted; start nothing."""


class WorkerDied(Exception):
    """The worker process ended without answering; ``reason`` names the signal or exit code."""

    def __init__(self, pid: int | None, exitcode: int | None) -> None:
        if exitcode is not None and exitcode < 0:
            try:
                reason = f"killed by signal {signal.Signals(-exitcode).name}"
            except ValueError:
                reason = f"killed by signal {-exitcode}"
        else:
            reason = f"exited with code {exitcode}"
        self.reason = reason
        self.exitcode = exitcode
        super().__init__(f"worker process {pid} {reason}")


def _local_failure(exc: Exception) -> EngineFailed:
    import traceback

    failure = _worker.RemoteFailure(
        type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)), exc
    )
    return EngineFailed(failure)


class InlineHost:
    """The engine runs in the caller's thread; buffers are passed as they are."""

    def __init__(self, engine: ICalcEngine) -> None:
        self._engine = engine
        self.compile_seconds = 0.0
        """Seconds numba spent compiling during this engine's calls (``livecalc.runtime.jit``)."""

    @contextlib.contextmanager
    def _timing_compiles(self) -> Iterator[None]:
        start = jit.compile_seconds()
        try:
            yield
        finally:
            self.compile_seconds += jit.compile_seconds() - start

    @property
    def pid(self) -> int | None:
        """The process running the engine: this one."""
        return os.getpid()

    def prepare(self) -> None:
        """Nothing to prepare: the engine is right here."""

    def cancel(self) -> None:
        """Nothing to kill: a thread cannot be stopped (the runner stops between chunks)."""

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None
    ) -> EngineInfo:
        """Initialise the engine and return its info."""
        try:
            with self._timing_compiles():
                self._engine.initialize(config, credentials)
            return self._engine.get_info()
        except Exception as exc:
            raise _local_failure(exc) from exc

    def run_chunk(
        self, inputs: InputBuffer, output: np.ndarray | None, timeout_seconds: float
    ) -> tuple[ExecutionResult, float]:
        """Run one chunk to its end (a thread cannot be stopped); result and resident MiB."""
        try:
            with self._timing_compiles():
                result = self._engine.run_chunk(inputs, output)
        except Exception as exc:
            raise _local_failure(exc) from exc
        return result, _worker.resident_mb()

    def output_spec(
        self, inputs: Mapping[str, np.ndarray], timeout_seconds: float | None = None
    ) -> OutputSpec | None:
        """The engine's ``output_spec``."""
        return self.call("output_spec", (inputs,), {})  # type: ignore[no-any-return]

    def call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        timeout_seconds: float | None = None,
    ) -> Any:
        """Call one of the engine's methods (to its end: a thread cannot be stopped)."""
        method = getattr(self._engine, name, None)
        if not callable(method):
            raise ConfigurationError(f"{type(self._engine).__name__} has no method {name!r}")
        try:
            with self._timing_compiles():
                return method(*args, **kwargs)
        except Exception as exc:
            raise _local_failure(exc) from exc

    def dispose(self) -> None:
        """Dispose of the engine (engines never raise from dispose; we make sure)."""
        with contextlib.suppress(Exception):
            self._engine.dispose()


def _exit_code(proc: BaseProcess) -> int | None:
    # Another thread's is_alive() (the pid property) may reap the worker first: its exit
    # code is then recorded on the shared process object a moment later.
    for _ in range(100):
        if proc.exitcode is not None or proc.is_alive():
            break
        time.sleep(0.01)
    return proc.exitcode


def _stop(holder: dict[str, Any]) -> None:
    # Also the finaliser: must work at interpreter exit, with no reference to the host.
    proc: BaseProcess | None = holder.pop("proc", None)
    conn: Connection | None = holder.pop("conn", None)
    if proc is not None and proc.is_alive():
        proc.kill()
    if proc is not None:
        proc.join()
        _exit_code(proc)  # reaped by another thread meanwhile: wait for its bookkeeping
        with contextlib.suppress(ValueError):
            proc.close()
    if conn is not None:
        conn.close()


def _lenient(value: Any) -> Any:
    # call() arguments: arrays in shared memory go by reference, anything else is pickled.
    if isinstance(value, np.ndarray):
        ref = shared_ref_of(value)
        return value if ref is None else _worker.ArraySpec(ref, tuple(value.shape))
    if isinstance(value, Mapping) and all(isinstance(v, np.ndarray) for v in value.values()):
        return {k: _lenient(v) for k, v in value.items()}
    return value


class ProcessHost:
    """The engine runs in a spawned worker process attached to the caller's shared buffers."""

    def __init__(self, engine: ICalcEngine, engine_id: str) -> None:
        _worker.refuse_start_while_bootstrapping()
        try:
            self._blob = pickle.dumps(engine)
        except Exception as exc:
            raise ConfigurationError(
                f"engine {engine_id!r} ({type(engine).__name__}) cannot be pickled for "
                f"isolation='process' ({exc}): define its class at module level and keep "
                "no open files, locks or lambdas in it before initialize, or use "
                "isolation='inline'"
            ) from exc
        self._engine_id = engine_id
        self._context = multiprocessing.get_context("spawn")
        self._live: dict[str, Any] = {}
        self._init_args: tuple[Mapping[str, Any], AMCredentials | None] | None = None
        # Parameters set through set_parameters since initialize, merged: a fresh worker gets
        # them again after initialize (a solver's overrides survive a crash or timeout).
        self._parameters: dict[str, Any] = {}
        self._finalizer = weakref.finalize(self, _stop, self._live)
        self.compile_seconds = 0.0
        """Seconds numba spent compiling in the worker(s) while serving this engine."""
        self._cancelled = False

    def cancel(self) -> None:
        """Kill the worker now, from any thread; no new worker starts until ``initialize``.

        The thread waiting on the worker wakes at once and raises WorkerCancelled.
        """
        self._cancelled = True
        proc: BaseProcess | None = self._live.get("proc")
        if proc is not None:
            with contextlib.suppress(Exception):  # already gone, or being closed
                proc.kill()

    @property
    def pid(self) -> int | None:
        """The worker's pid, or None while no worker is running."""
        proc = self._live.get("proc")
        return proc.pid if proc is not None and proc.is_alive() else None

    def _start(self) -> None:
        parent_conn, child_conn = self._context.Pipe()
        proc = self._context.Process(
            target=_worker.main,
            args=(child_conn, self._blob, os.getpid()),
            name=f"livecalc-{self._engine_id}",
            daemon=True,  # multiprocessing ends it at exit should nobody dispose of it
        )
        proc.start()
        child_conn.close()
        self._live.update(proc=proc, conn=parent_conn)

    def _ensure_worker(self) -> None:
        if self._cancelled:
            raise WorkerCancelled(f"engine {self._engine_id!r}: the run was interrupted")
        proc = self._live.get("proc")
        if proc is not None and proc.is_alive():
            return
        _stop(self._live)
        self._start()
        if self._init_args is not None:
            # A fresh worker after a timeout or crash: the same config as the first one.
            self._exchange(("init", *self._init_args), None)
            if self._parameters:
                self._exchange(("call", "set_parameters", (dict(self._parameters),), {}), None)

    def prepare(self) -> None:
        """Make sure a worker is running and initialised (replacing a dead one)."""
        self._ensure_worker()

    def _exchange(self, request: tuple[Any, ...], timeout_seconds: float | None) -> Any:
        proc: BaseProcess = self._live["proc"]
        conn: Connection = self._live["conn"]
        pid = proc.pid
        with contextlib.suppress(OSError):  # a dead worker's sentinel is ready below
            conn.send(request)
        reply: tuple[str, Any, float] | None = None
        try:
            ready = wait([conn, proc.sentinel], timeout_seconds)
            if conn in ready:
                with contextlib.suppress(EOFError, OSError):  # it died while answering
                    reply = conn.recv()
        except BaseException:
            # Interrupted (Ctrl-C): the pending answer would be read as the next request's.
            _stop(self._live)
            raise
        if not ready:
            _stop(self._live)  # SIGKILL and reap: nothing keeps burning CPU
            raise WorkerTimedOut(f"worker process {pid} killed at the deadline")
        if reply is not None:
            status, value, compiled = reply
            self.compile_seconds += compiled
            if status == "err":
                raise EngineFailed(value)
            return value
        proc.join(1.0)
        exitcode = _exit_code(proc)
        _stop(self._live)
        if self._cancelled:
            raise WorkerCancelled(f"worker process {pid} killed: the run was interrupted")
        if exitcode == _worker.MAIN_REIMPORT_EXIT_CODE:
            raise ConfigurationError(MAIN_GUARD_MESSAGE.format(engine_id=self._engine_id))
        raise WorkerDied(pid, exitcode)

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None
    ) -> EngineInfo:
        """Start a worker if needed, initialise the engine there, return its info."""
        self._cancelled = False
        self._init_args = None
        self._parameters = {}
        self._ensure_worker()
        info: EngineInfo = self._exchange(("init", dict(config), credentials), None)
        self._init_args = (dict(config), credentials)
        return info

    def run_chunk(
        self, inputs: InputBuffer, output: np.ndarray | None, timeout_seconds: float
    ) -> tuple[ExecutionResult, float]:
        """Run one chunk in the worker, killing it at the deadline; result and its RSS MiB."""
        request = (
            "run",
            _worker.encode_arrays(inputs, "input_buffer"),
            _worker.encode_arrays(output, "output_buffer"),
        )
        self._ensure_worker()
        value: tuple[ExecutionResult, float] = self._exchange(request, timeout_seconds)
        return value

    def output_spec(
        self, inputs: Mapping[str, np.ndarray], timeout_seconds: float | None = None
    ) -> OutputSpec | None:
        """The engine's ``output_spec``, computed in the worker on the shared inputs."""
        encoded = _worker.encode_arrays(inputs, "output_spec input")
        self._ensure_worker()
        request: tuple[Any, ...] = ("call", "output_spec", (encoded,), {})
        spec: OutputSpec | None = self._exchange(request, timeout_seconds)
        return spec

    def call(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        timeout_seconds: float | None = None,
    ) -> Any:
        """Call one of the engine's methods in the worker; the value comes back pickled."""
        request = (
            "call",
            name,
            tuple(_lenient(a) for a in args),
            {k: _lenient(v) for k, v in kwargs.items()},
        )
        self._ensure_worker()
        value = self._exchange(request, timeout_seconds)
        if name == "set_parameters" and len(args) == 1 and isinstance(args[0], Mapping):
            self._parameters.update(args[0])
        return value

    def dispose(self) -> None:
        """Dispose of the engine in the worker and let the worker exit (killed if it hangs)."""
        self._init_args = None
        proc: BaseProcess | None = self._live.get("proc")
        if proc is not None and proc.is_alive():
            # dispose never raises; the worker is stopped below either way.
            with contextlib.suppress(EngineFailed, WorkerTimedOut, WorkerDied):
                self._exchange(("dispose",), _DISPOSE_GRACE_SECONDS)
            still_ours = self._live.get("proc") is proc
            if still_ours:
                proc.join(_DISPOSE_GRACE_SECONDS)  # let it exit on its own before _stop
        _stop(self._live)
