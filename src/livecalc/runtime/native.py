"""NativeEngine: an engine implemented in a shared library behind LiveCalc's C ABI.

The ABI is ``livecalc/include/livecalc_engine.h`` (``lc_create``, ``lc_initialize``,
``lc_get_info``, ``lc_output_records``, ``lc_run_chunk``, ``lc_dispose``). Buffers are passed
as raw pointers into the caller's numpy records: no copy on the way in or out. ctypes
releases the GIL for each call, so a native engine runs beside Python threads, and under
process isolation (``LifecycleConfig(isolation="process")``) a crash in the library kills only
its worker.

Config keys: ``library`` (path of the .so, required), ``output_type`` (``input``,
``scenario``, ``result`` or ``result_detail``: the dtype of the output records); every other
key goes to ``lc_initialize`` as JSON.
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.assumptions.credentials import AMCredentials
from livecalc.errors import ConfigurationError, ExecutionError, InitializationError
from livecalc.runtime.buffers import BufferType
from livecalc.runtime.engine import (
    EngineInfo,
    ExecutionResult,
    ICalcEngine,
    InputBuffer,
    OutputSpec,
)

__all__ = ["HEADER_PATH", "NativeEngine"]

HEADER_PATH = Path(__file__).parents[1] / "include" / "livecalc_engine.h"
"""The C header native engines compile against."""

_ERROR_LEN = 512


class _Info(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("version", ctypes.c_char_p),
        ("engine_type", ctypes.c_char_p),
        ("supports_assumptions_manager", ctypes.c_int32),
        ("max_buffer_size", ctypes.c_uint64),
    ]


class _Result(ctypes.Structure):
    _fields_ = [
        ("success", ctypes.c_int32),
        ("execution_time_ms", ctypes.c_double),
        ("rows_processed", ctypes.c_uint64),
        ("bytes_written", ctypes.c_uint64),
        ("error_message", ctypes.c_char * _ERROR_LEN),
    ]


def _bind(lib: ctypes.CDLL) -> None:
    """Declare the ABI's signatures so ctypes converts arguments exactly."""
    vp, u64, i32 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int32
    lib.lc_create.restype = vp
    lib.lc_create.argtypes = []
    lib.lc_initialize.restype = i32
    lib.lc_initialize.argtypes = [
        vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
        ctypes.c_char_p, ctypes.c_size_t,
    ]  # fmt: skip
    lib.lc_get_info.restype = None
    lib.lc_get_info.argtypes = [vp, ctypes.POINTER(_Info)]
    lib.lc_output_records.restype = u64
    lib.lc_output_records.argtypes = [vp, u64]
    lib.lc_run_chunk.restype = i32
    lib.lc_run_chunk.argtypes = [vp, vp, u64, vp, u64, ctypes.POINTER(_Result)]
    lib.lc_dispose.restype = None
    lib.lc_dispose.argtypes = [vp]


class NativeEngine(ICalcEngine):
    """Runs a C ABI engine from a shared library; picklable before ``initialize``."""

    config_file_keys = ("library",)

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None
        self._handle: int | None = None
        self._output_dtype: np.dtype[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A loaded library cannot cross processes; a worker re-loads it in initialize.
        return {"_lib": None, "_handle": None, "_output_dtype": None}

    def initialize(
        self, config: Mapping[str, Any], credentials: AMCredentials | None = None
    ) -> None:
        """Load ``config["library"]`` and call its ``lc_initialize``."""
        settings = dict(config)
        library = settings.pop("library", None)
        if not isinstance(library, str) or not library:
            raise ConfigurationError("config.library: give the path of the engine's .so file")
        if not Path(library).is_file():
            raise ConfigurationError(f"config.library: {library!r} does not exist")
        output_type = str(settings.pop("output_type", "result"))
        try:
            self._output_dtype = BufferType(output_type.lower()).dtype
        except ValueError:
            known = ", ".join(t.value for t in BufferType)
            raise ConfigurationError(
                f"config.output_type: {output_type!r} is not a buffer type; use one of {known}"
            ) from None
        try:
            lib = ctypes.CDLL(str(Path(library).resolve()))
            _bind(lib)
        except (OSError, AttributeError) as exc:
            raise InitializationError(
                f"config.library: {library!r} is not a LiveCalc native engine: {exc} "
                f"(it must export the functions of {HEADER_PATH.name})"
            ) from exc
        handle = lib.lc_create()
        if not handle:
            raise InitializationError(f"{library}: lc_create returned NULL")
        err = ctypes.create_string_buffer(_ERROR_LEN)
        token = credentials.am_token.get_secret_value().encode() if credentials else None
        status = lib.lc_initialize(
            handle,
            json.dumps(settings).encode(),
            credentials.am_url.encode() if credentials else None,
            token,
            (credentials.cache_dir or "").encode() if credentials else None,
            err,
            _ERROR_LEN,
        )
        if status != 0:
            lib.lc_dispose(handle)
            message = err.value.decode(errors="replace")
            if token:
                message = message.replace(token.decode(), "***")
            raise InitializationError(f"{Path(library).name}: {message}")
        self._lib, self._handle = lib, handle

    def _require(self) -> tuple[ctypes.CDLL, int]:
        if self._lib is None or self._handle is None:
            raise ExecutionError("native engine is not initialized: call initialize first")
        return self._lib, self._handle

    def get_info(self) -> EngineInfo:
        """The library's own metadata (``lc_get_info``)."""
        lib, handle = self._require()
        info = _Info()
        lib.lc_get_info(handle, ctypes.byref(info))
        return EngineInfo(
            name=(info.name or b"native").decode(),
            version=(info.version or b"0").decode(),
            engine_type=(info.engine_type or b"native").decode(),
            supports_assumptions_manager=bool(info.supports_assumptions_manager),
            max_buffer_size=int(info.max_buffer_size),
        )

    def output_spec(self, inputs: Mapping[str, np.ndarray]) -> OutputSpec | None:
        """``output_type`` records, as many as ``lc_output_records`` asks for."""
        lib, handle = self._require()
        assert self._output_dtype is not None
        n_in = sum(len(a) for a in inputs.values())
        return OutputSpec(self._output_dtype, int(lib.lc_output_records(handle, n_in)))

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Pass raw pointers of the input and output records to ``lc_run_chunk``."""
        lib, handle = self._require()
        if isinstance(input_buffer, Mapping):
            if len(input_buffer) > 1:
                raise ExecutionError(
                    "a native engine takes one input buffer; this node has "
                    f"{len(input_buffer)} ({', '.join(input_buffer)})"
                )
            input_buffer = next(iter(input_buffer.values()), None)
        for label, arr in (("input", input_buffer), ("output", output_buffer)):
            if arr is not None and not arr.flags.c_contiguous:
                raise ExecutionError(f"native engine: the {label} buffer must be contiguous")
        if output_buffer is not None and not output_buffer.flags.writeable:
            raise ExecutionError("native engine: the output buffer is read-only")
        result = _Result()
        status = lib.lc_run_chunk(
            handle,
            None if input_buffer is None else input_buffer.ctypes.data,
            0 if input_buffer is None else input_buffer.nbytes,
            None if output_buffer is None else output_buffer.ctypes.data,
            0 if output_buffer is None else output_buffer.nbytes,
            ctypes.byref(result),
        )
        out_size = 0 if output_buffer is None else output_buffer.nbytes
        if result.bytes_written > out_size:
            raise ExecutionError(
                f"native engine reported {result.bytes_written} bytes written into a "
                f"{out_size}-byte output buffer"
            )
        return ExecutionResult(
            success=status == 0 and bool(result.success),
            execution_time_ms=float(result.execution_time_ms),
            rows_processed=int(result.rows_processed),
            bytes_written=int(result.bytes_written),
            error_message=result.error_message.decode(errors="replace"),
        )

    def dispose(self) -> None:
        """Call ``lc_dispose`` once; never raises."""
        if self._lib is not None and self._handle is not None:
            self._lib.lc_dispose(self._handle)
        self._lib, self._handle = None, None

    @property
    def is_initialized(self) -> bool:
        """Whether a library instance is live."""
        return self._handle is not None
