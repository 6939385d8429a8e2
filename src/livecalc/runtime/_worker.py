"""The worker process that hosts one engine for process isolation, and its wire format.

The parent (``livecalc._process_host``) starts this module's ``main`` in a "spawn" process
(fork is unsafe once numba has started threads), hands it the pickled engine and then sends
requests over a pipe, one at a time:

- ``("init", config, credentials)`` -> the engine's ``EngineInfo``
- ``("run", input_spec, output_spec)`` -> ``(ExecutionResult, resident_mb)``
- ``("call", method_name, args, kwargs)`` -> whatever the method returned
- ``("dispose",)`` -> None, and the worker exits

Each reply is ``("ok", value, compile_seconds)`` or ``("err", RemoteFailure, compile_seconds)``,
``compile_seconds`` being the time numba spent compiling while serving the request
(``livecalc.runtime.jit``). Arrays never travel in a
message: a buffer in shared memory travels as a ``SharedArrayRef`` and its shape, and the
worker maps the same pages (``attach_shared``), so the engine reads its inputs and writes its
outputs straight into the caller's memory. Segments stay mapped between requests, since a
runner reuses the same buffers for every chunk and re-mapping would fault every page in again;
a segment whose owner has unlinked it is unmapped after the next request.

The worker exits by itself when its parent dies (a watchdog thread compares ``os.getppid``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.runtime import jit
from livecalc.runtime.buffers import SharedArrayRef, _Segment, attach_shared, detach, shared_ref_of

if TYPE_CHECKING:
    # The worker learns the engine's class from its pickle; importing the interface here
    # would load more than the worker needs before it can answer.
    from livecalc.runtime.engine import ICalcEngine

__all__ = [
    "MAIN_REIMPORT_EXIT_CODE",
    "ArraySpec",
    "RemoteFailure",
    "encode_arrays",
    "main",
    "refuse_start_while_bootstrapping",
    "resident_mb",
]

_WATCHDOG_PERIOD_SECONDS = 0.25
_ORPHAN_EXIT_CODE = 75
MAIN_REIMPORT_EXIT_CODE = 76
"""Exit code of a spawned worker that found itself starting a worker while re-importing the
caller's main script (a script without ``if __name__ == "__main__":``)."""


def refuse_start_while_bootstrapping() -> None:
    """In a spawned worker still importing the caller's script, end it with a known exit code.

    A "spawn" worker imports the caller's main script again before it runs anything. A
    script that starts a run at top level (no ``if __name__ == "__main__":`` guard) so tries to
    start a worker from inside a worker that is still booting, which multiprocessing refuses
    with a RuntimeError and a generic exit code 1. Exiting with MAIN_REIMPORT_EXIT_CODE
    instead lets the parent say what is wrong and how to fix it. os._exit, not SystemExit:
    the check may run in a thread (a replica pool starts its workers from threads), where
    SystemExit would end only that thread and leave the re-imported script running on; what
    the script opened on its way here (shared memory named with this pid) is swept by the
    next run (livecalc.runtime.leftovers).
    """
    import multiprocessing.process

    if getattr(multiprocessing.process.current_process(), "_inheriting", False):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(MAIN_REIMPORT_EXIT_CODE)


@dataclass(frozen=True)
class ArraySpec:
    """An ndarray in shared memory, as sent to the worker: where it lives and its shape."""

    ref: SharedArrayRef
    shape: tuple[int, ...]


@dataclass(frozen=True)
class RemoteFailure:
    """An exception raised in the worker, as the parent receives it.

    ``exception`` is the original exception when it survives pickling, else None.
    """

    type_name: str
    message: str
    stack_trace: str
    exception: BaseException | None


def resident_mb() -> float:
    """Resident set size of this process in MiB (``/proc``; peak RSS where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _encode_one(array: Any, what: str) -> Any:
    if not isinstance(array, np.ndarray):
        return array  # None, or a value the engine interprets itself
    if array.nbytes == 0:
        return array  # nothing to share; pickling an empty array copies nothing
    ref = shared_ref_of(array)
    if ref is None:
        layout = "" if array.flags.c_contiguous else " (it is a non-contiguous view)"
        raise ConfigurationError(
            f"{what} is not in shared memory{layout}: with isolation='process' the engine "
            "reads and writes the caller's memory directly, so allocate the buffer with "
            "BufferManager.allocate_buffer(..., shared=True) (or allocate(..., shared=True)) "
            "and pass it or a contiguous slice of it; LiveCalc makes no hidden copies"
        )
    return ArraySpec(ref, tuple(array.shape))


def encode_arrays(value: Any, what: str) -> Any:
    """``value`` (None, an ndarray or a mapping of them) with every array as an ArraySpec.

    Raises:
        ConfigurationError: an array is not in shared memory (``what`` names it).
    """
    if isinstance(value, Mapping):
        return {name: _encode_one(arr, f"{what}[{name!r}]") for name, arr in value.items()}
    return _encode_one(value, what)


class _Attachments:
    """The shared segments this worker has mapped, kept between requests."""

    def __init__(self) -> None:
        self._segments: dict[str, _Segment] = {}
        self._used: set[str] = set()

    def array(self, spec: ArraySpec) -> np.ndarray[Any, Any]:
        name = spec.ref.shm_name
        segment = self._segments.get(name)
        if segment is None:
            _, segment = attach_shared(SharedArrayRef(name, "u1", 0))
            self._segments[name] = segment
        self._used.add(name)
        return np.ndarray(spec.shape, spec.ref.dtype, buffer=segment.buf, offset=spec.ref.offset)

    def decode(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {name: self.decode(arr) for name, arr in value.items()}
        return self.array(value) if isinstance(value, ArraySpec) else value

    def prune(self) -> None:
        """Unmap segments the last request did not use and whose owner has unlinked them."""
        for name in list(self._segments):
            if name not in self._used and not os.path.exists(f"/dev/shm/{name}"):
                detach(self._segments.pop(name))
        self._used.clear()


def _failure(exc: BaseException) -> RemoteFailure:
    original: BaseException | None = exc
    try:
        # Only send the exception itself if the parent will be able to rebuild it.
        pickle.loads(pickle.dumps(exc))
    except Exception:
        original = None
    return RemoteFailure(
        type(exc).__name__,
        str(exc),
        "".join(traceback.format_exception(exc)),
        original,
    )


def _watch_parent(parent_pid: int) -> None:
    # A daemon thread gets the GIL from a pure-Python loop and runs beside a nogil kernel; an
    # engine holding the GIL in native code is only stopped by the parent's own kill.
    while True:
        if os.getppid() != parent_pid:
            os._exit(_ORPHAN_EXIT_CODE)
        threading.Event().wait(_WATCHDOG_PERIOD_SECONDS)


def _exit_now() -> None:
    """End the worker at once, its work done: the parent waits for the exit.

    A normal interpreter exit tears down numba's LLVM and threading layer and every module,
    which takes seconds on a busy machine, once per worker, while the run waits. Nothing
    is left to save: the engine is disposed, its outputs are in the caller's shared memory.
    """
    import logging

    with contextlib.suppress(Exception):
        logging.shutdown()  # flushes the run log's file handler, as a normal exit would
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _serve(conn: Connection, engine: ICalcEngine) -> None:
    attachments = _Attachments()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        kind = request[0]
        compile_start = jit.compile_seconds()
        try:
            if kind == "init":
                engine.initialize(request[1], request[2])
                value: Any = engine.get_info()
            elif kind == "run":
                inputs = attachments.decode(request[1])
                output = attachments.decode(request[2])
                result = engine.run_chunk(inputs, output)
                del inputs, output  # drop views before any segment is unmapped
                value = (result, resident_mb())
            elif kind == "call":
                method = getattr(engine, request[1], None)
                if not callable(method):
                    raise ConfigurationError(
                        f"{type(engine).__name__} has no method {request[1]!r}"
                    )
                args = [attachments.decode(arg) for arg in request[2]]
                value = method(*args, **attachments.decode(request[3]))
            elif kind == "dispose":
                engine.dispose()
                conn.send(("ok", None, 0.0))
                _exit_now()
            else:
                raise ValueError(f"unknown request {kind!r}")
            status = "ok"
        except Exception as exc:
            status, value = "err", _failure(exc)
        finally:
            attachments.prune()
        compiled = jit.compile_seconds() - compile_start
        try:
            conn.send((status, value, compiled))
        except Exception as exc:
            # The value did not pickle (pickling happens before any byte is written).
            conn.send(("err", _failure(exc), compiled))


def main(conn: Connection, engine_blob: bytes, parent_pid: int) -> None:
    """Entry point of the worker process: host one engine until told to dispose it."""
    # Ctrl-C reaches the whole process group: the parent decides, and kills us if need be.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        engine = pickle.loads(engine_blob)
    except Exception as exc:
        # Answer the first request with the reason, so the parent reports it.
        try:
            conn.recv()
            conn.send(("err", _failure(exc), 0.0))
        except (EOFError, OSError):
            pass
        return
    _serve(conn, engine)
