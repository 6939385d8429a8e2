"""Typed, 16-byte-aligned record buffers that engines exchange without copies.

The record layouts live in ``livecalc.runtime.records`` and are re-exported here.

``BufferManager`` owns buffers. A private buffer is a slice of an over-allocated numpy block
moved to a 16-byte boundary; a shared one (``shared=True``) lives in a POSIX shared-memory
segment that another process attaches to by name (``attach_shared``) with no copy. Segments are
unlinked by ``free``/``free_all``/the context manager, and, when the owning process dies
without cleaning up, by Python's resource tracker, which outlives it. When the tracker dies
too (SIGKILL of the whole process group), the next LiveCalc process of the same machine and
pid namespace to create a BufferManager removes them: segment names carry the owner's tag and
pid (``livecalc.runtime.leftovers``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from types import TracebackType
from typing import Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.runtime.leftovers import segment_name, sweep_segments
from livecalc.runtime.records import (
    ALIGNMENT,
    ALL_SCENARIOS,
    CASHFLOW_DTYPE,
    MAX_RECORDS,
    POLICY_DTYPE,
    POLICY_EXT_DTYPE,
    RESULT_DETAIL_DTYPE,
    RESULT_DETAIL_EXT_DTYPE,
    RESULT_DTYPE,
    SCENARIO_DTYPE,
    SCENARIO_TOTAL_DTYPE,
    BufferType,
)

__all__ = [
    "ALIGNMENT",
    "ALL_SCENARIOS",
    "CASHFLOW_DTYPE",
    "MAX_RECORDS",
    "POLICY_DTYPE",
    "POLICY_EXT_DTYPE",
    "RESULT_DETAIL_DTYPE",
    "RESULT_DETAIL_EXT_DTYPE",
    "RESULT_DTYPE",
    "SCENARIO_DTYPE",
    "SCENARIO_TOTAL_DTYPE",
    "BufferInfo",
    "BufferManager",
    "BufferType",
    "SharedArrayRef",
    "attach_shared",
    "detach",
    "shared_ref_of",
]


@dataclass(frozen=True)
class SharedArrayRef:
    """What another process needs to attach to a shared buffer: picklable, a few bytes."""

    shm_name: str
    dtype_descr: Any
    record_count: int
    offset: int = 0

    @property
    def dtype(self) -> np.dtype[Any]:
        """The record dtype, rebuilt from its description."""
        dtype: np.dtype[Any] = np.dtype(self.dtype_descr)
        return dtype


@dataclass
class BufferInfo:
    """One allocated buffer: its records as an ndarray view and where it lives."""

    name: str
    type: BufferType | None
    data: np.ndarray[Any, Any]
    record_count: int
    total_size: int
    address: int
    shared: bool = False
    shm_name: str | None = None
    _owner: Any = field(default=None, repr=False)

    @property
    def ref(self) -> SharedArrayRef:
        """The handle another process attaches with; only for shared buffers."""
        if self.shm_name is None:
            raise ConfigurationError(
                f"buffer {self.name!r} is private to this process: allocate it with shared=True"
            )
        return SharedArrayRef(self.shm_name, _descr(self.data.dtype), self.record_count)


def _descr(dtype: np.dtype[Any]) -> Any:
    """A picklable description of a dtype that keeps explicit offsets and itemsize."""
    if dtype.fields is None:
        return dtype.str
    names = list(dtype.names or ())
    return {
        "names": names,
        "formats": [dtype.fields[n][0].str for n in names],
        "offsets": [dtype.fields[n][1] for n in names],
        "itemsize": dtype.itemsize,
    }


class _Segment(shared_memory.SharedMemory):
    """A SharedMemory whose ``close`` tolerates ndarray views still alive.

    The mapping then stays until the last view is garbage; the owner has unlinked the name, so
    the kernel frees the memory with that view.
    """

    def close(self) -> None:
        with contextlib.suppress(BufferError):
            super().close()

    @classmethod
    def _attach_untracked(cls, name: str) -> _Segment:
        """Map an existing segment without registering it with the resource tracker.

        Python 3.11 registers attached segments too (no ``track=`` before 3.13). Undoing that
        with ``unregister`` is wrong when this process shares its tracker with the owner (every
        process started by multiprocessing does): the tracker keeps one entry per name, so the
        attacher would erase the owner's registration, and the segment would then leak when
        the owner is killed. So an attacher never talks to the tracker at all.
        """
        if os.name != "posix":
            return cls(name=name, create=False)  # no resource tracker for shared memory there
        from multiprocessing.shared_memory import _posixshmem  # type: ignore[attr-defined]

        self = cls.__new__(cls)
        # The attributes SharedMemory.__init__ sets on POSIX, which close() and unlink() use.
        fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
        try:
            size = os.fstat(fd).st_size
            mapping = mmap.mmap(fd, size)
        except OSError:
            os.close(fd)
            raise
        vars(self).update(
            _name="/" + name, _fd=fd, _size=size, _mmap=mapping, _buf=memoryview(mapping)
        )
        return self


# Shared segments this process created or attached, by name, so that an ndarray that lives in
# one can be handed to a worker by reference (shared_ref_of) rather than by copy.
_LIVE_SEGMENTS: dict[str, _Segment] = {}
_LIVE_LOCK = threading.Lock()


def _aligned_empty(nbytes: int) -> np.ndarray[Any, Any]:
    # numpy usually hands out 16- or 64-byte aligned blocks, but does not promise it: ask for
    # ALIGNMENT spare bytes and start the view on the first aligned address.
    raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start : start + nbytes]


_swept = False


def _sweep_once() -> None:
    # The first BufferManager of a process clears the segments SIGKILLed runs left behind
    # (livecalc.runtime.leftovers): one listing of /dev/shm per process.
    global _swept
    if not _swept:
        _swept = True
        removed = sweep_segments()
        if removed:
            from livecalc.log import get_logger

            get_logger().info("stale_segments_removed", count=len(removed), names=removed[:10])


def _new_segment(nbytes: int) -> _Segment:
    name = segment_name()
    # size 0 is refused by the OS; an empty buffer still gets a page.
    shm = _Segment(name=name, create=True, size=max(nbytes, 1))
    with _LIVE_LOCK:
        _LIVE_SEGMENTS[shm.name] = shm
    return shm


def _release_segment(shm: _Segment, unlink: bool) -> None:
    with _LIVE_LOCK:
        _LIVE_SEGMENTS.pop(shm.name, None)
    shm.close()
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()


def attach_shared(ref: SharedArrayRef) -> tuple[np.ndarray[Any, Any], _Segment]:
    """Map another process's shared buffer into this one, with no copy.

    Returns the records as an ndarray and the segment handle; call ``detach(handle)`` when
    done. The attaching process never unlinks the segment: its owner does.
    """
    try:
        shm = _Segment._attach_untracked(ref.shm_name)
    except FileNotFoundError:
        raise ConfigurationError(
            f"shared buffer {ref.shm_name!r} does not exist (its owner freed it or died)"
        ) from None
    with _LIVE_LOCK:
        _LIVE_SEGMENTS.setdefault(shm.name, shm)
    data = np.ndarray((ref.record_count,), dtype=ref.dtype, buffer=shm.buf, offset=ref.offset)
    return data, shm


def detach(handle: _Segment) -> None:
    """Unmap a segment attached with ``attach_shared`` (the owner still holds it)."""
    _release_segment(handle, unlink=False)


def shared_ref_of(array: np.ndarray[Any, Any]) -> SharedArrayRef | None:
    """The shared segment an ndarray lies in (contiguous views included), or None."""
    if not array.flags.c_contiguous:
        return None
    start = array.ctypes.data
    end = start + array.nbytes
    with _LIVE_LOCK:
        segments = list(_LIVE_SEGMENTS.values())
    for shm in segments:
        buf = shm.buf
        if buf is None:
            continue  # closed meanwhile
        try:
            base = np.frombuffer(buf, dtype=np.uint8).ctypes.data
        except (TypeError, ValueError):
            continue  # released meanwhile
        if base <= start and end <= base + shm.size:
            return SharedArrayRef(shm.name, _descr(array.dtype), len(array), start - base)
    return None


def _limit_type(dtype: np.dtype[Any]) -> BufferType | None:
    """The buffer type whose record maximum applies to records of ``dtype`` (None: no limit).

    Extensions count as the records they accompany: POLICY_EXT as policies, SCENARIO_TOTAL
    (one per scenario) as scenarios.
    """
    for buffer_type in BufferType:
        if dtype == buffer_type.dtype:
            return buffer_type
    if dtype == POLICY_EXT_DTYPE:
        return BufferType.INPUT
    if dtype == SCENARIO_TOTAL_DTYPE:
        return BufferType.SCENARIO
    return None


class BufferManager:
    """Allocates, finds and frees named, aligned record buffers; a context manager.

    Example:
        >>> with BufferManager() as mgr:
        ...     pol = mgr.allocate_buffer(BufferType.INPUT, "policies", 10_000)
        ...     pol.address % 16
        0
    """

    def __init__(self) -> None:
        _sweep_once()
        self._buffers: dict[str, BufferInfo] = {}
        self._lock = threading.Lock()

    def allocate_buffer(
        self, type: BufferType, name: str, records: int, shared: bool = False
    ) -> BufferInfo:
        """A new buffer of ``records`` records of ``type``'s dtype, 16-byte aligned.

        Raises:
            ConfigurationError: the name is taken, or ``records`` is negative or above the
                type's maximum.
        """
        return self.allocate(name, type.dtype, records, shared=shared, type=type)

    def allocate(
        self,
        name: str,
        dtype: np.dtype[Any] | type,
        records: int,
        shared: bool = False,
        type: BufferType | None = None,
    ) -> BufferInfo:
        """A new aligned buffer of any record dtype (extensions such as SCENARIO_TOTAL).

        The record maximum of ``type`` applies, or that of the buffer type whose records
        these are (``_limit_type``): the same limit as ``allocate_buffer``.

        Raises:
            ConfigurationError: the name is taken, or ``records`` is negative or above the
                maximum.
        """
        dtype = np.dtype(dtype)
        if records < 0:
            raise ConfigurationError(f"buffer {name!r}: record count must be >= 0, got {records}")
        limit = type if type is not None else _limit_type(dtype)
        if limit is not None and records > limit.max_records:
            raise ConfigurationError(
                f"buffer {name!r}: {records:,} {limit.name} records exceed the maximum of "
                f"{limit.max_records:,}; split the work into chunks (a smaller chunk_size, or "
                "scenario totals instead of one record per policy and scenario)"
            )
        nbytes = records * dtype.itemsize
        with self._lock:
            if name in self._buffers:
                raise ConfigurationError(
                    f"buffer {name!r} already exists: free it first or choose another name"
                )
            if shared:
                shm = _new_segment(nbytes)
                data: np.ndarray[Any, Any] = np.ndarray((records,), dtype=dtype, buffer=shm.buf)
                owner: Any = shm
            else:
                data = _aligned_empty(nbytes).view(dtype)
                owner = None
            info = BufferInfo(
                name=name,
                type=type,
                data=data,
                record_count=records,
                total_size=nbytes,
                address=data.ctypes.data,
                shared=shared,
                shm_name=shm.name if shared else None,
                _owner=owner,
            )
            self._buffers[name] = info
        return info

    def get_buffer(self, name: str) -> BufferInfo:
        """The buffer called ``name``; a KeyError-free ConfigurationError lists the known ones."""
        try:
            return self._buffers[name]
        except KeyError:
            known = ", ".join(sorted(self._buffers)) or "none"
            raise ConfigurationError(f"no buffer named {name!r} (allocated: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._buffers

    def __iter__(self) -> Iterator[BufferInfo]:
        return iter(list(self._buffers.values()))

    def free(self, name: str) -> None:
        """Release one buffer; a shared one's segment is unlinked."""
        with self._lock:
            info = self._buffers.pop(name, None)
        if info is None:
            raise ConfigurationError(f"no buffer named {name!r} to free")
        self._release(info)

    def free_all(self) -> None:
        """Release every buffer this manager holds."""
        with self._lock:
            infos = list(self._buffers.values())
            self._buffers.clear()
        for info in infos:
            self._release(info)

    @staticmethod
    def _release(info: BufferInfo) -> None:
        if info._owner is not None:
            # Drop our own view first so the mapping can close.
            info.data = np.empty(0, dtype=info.data.dtype)
            _release_segment(info._owner, unlink=True)
            info._owner = None

    def get_total_allocated(self) -> int:
        """Bytes held by all live buffers."""
        return sum(b.total_size for b in self._buffers.values())

    def get_buffer_stats(self) -> dict[str, int]:
        """Size in bytes of each live buffer, by name."""
        return {name: b.total_size for name, b in self._buffers.items()}

    def __enter__(self) -> BufferManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.free_all()

    def __del__(self) -> None:
        # Never raise from a finaliser (at interpreter exit modules may already be gone).
        with contextlib.suppress(Exception):
            self.free_all()
