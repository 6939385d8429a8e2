"""How long numba spent compiling, per thread: the compile time a run reports apart from run time.

Numba compiles a kernel the first time it is called with new argument types, unless its disk
cache (``cache=True``, files ``*.nbi``/``*.nbc`` in the kernels' ``__pycache__``) already holds
the machine code. Each real compilation is a ``numba:compile`` event; a load from the cache is
not one. ``compile_seconds()`` adds up the wall time of the outermost events of the calling
thread (a kernel compiles the jitted functions it calls inside its own event, so only the
outermost one counts), which is what a chunk lost to compiling.

What is not counted: the time to load a kernel from the cache (small, and part of run time),
the wait for numba's compiler lock while another thread compiles, and compilations that happen
before numba is first imported in the process: the listener is installed by the first
``compile_seconds()`` call after numba is loaded, which the lifecycle hosts make before every
engine call (engines import their kernels when their module is imported, before any call).

numba is never imported here: a process that runs no numba engine pays nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

__all__ = ["compile_seconds", "watching"]

_lock = threading.Lock()
_installed = False
_local = threading.local()


def _state() -> Any:
    if not hasattr(_local, "depth"):
        _local.depth = 0
        _local.started = 0.0
        _local.seconds = 0.0
    return _local


def _on_start(event: Any) -> None:
    state = _state()
    if state.depth == 0:
        state.started = time.perf_counter()
    state.depth += 1


def _on_end(event: Any) -> None:
    state = _state()
    if state.depth > 0:
        state.depth -= 1
        if state.depth == 0:
            state.seconds += time.perf_counter() - state.started


def watching() -> bool:
    """Whether compile events are being counted (numba is loaded and the listener installed)."""
    global _installed
    if _installed:
        return True
    if "numba" not in sys.modules:
        return False
    with _lock:
        if not _installed:
            from numba.core import event

            # Defined here: subclassing numba's Listener at import time would load numba.
            class CompileListener(event.Listener):
                def on_start(self, ev: Any) -> None:
                    _on_start(ev)

                def on_end(self, ev: Any) -> None:
                    _on_end(ev)

            event.register("numba:compile", CompileListener())  # type: ignore[no-untyped-call]
            _installed = True
    return True


def compile_seconds() -> float:
    """Seconds numba has spent compiling in this thread since the listener was installed."""
    watching()
    return float(_state().seconds)
