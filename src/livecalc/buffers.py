"""Typed, 16-byte-aligned record buffers that engines exchange without copies.

The four record layouts of DESIGN.md section 2 (POLICY, SCENARIO, RESULT, RESULT_DETAIL) are
numpy structured dtypes with every offset spelled out, plus three LiveCalc extensions:
POLICY_EXT (in-force duration and policy count beside each POLICY record), SCENARIO_TOTAL
(per-scenario portfolio totals) and the ``ALL_SCENARIOS`` marker for per-policy means.

``BufferManager`` owns buffers. A private buffer is a slice of an over-allocated numpy block
moved to a 16-byte boundary; a shared one (``shared=True``) lives in a POSIX shared-memory
segment that another process attaches to by name (``attach_shared``) with no copy. Segments are
unlinked by ``free``/``free_all``/the context manager, and, when the owning process dies
without cleaning up, by Python's resource tracker, which outlives it.
"""

from __future__ import annotations

import contextlib
import enum
import mmap
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from types import TracebackType
from typing import Any

import numpy as np

from livecalc.errors import ConfigurationError

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

ALIGNMENT = 16
"""Every buffer starts on a multiple of this many bytes (SIMD loads, C ABI engines)."""


def _dtype(fields: list[tuple[str, str, int]], itemsize: int) -> np.dtype[Any]:
    return np.dtype(
        {
            "names": [f[0] for f in fields],
            "formats": [f[1] for f in fields],
            "offsets": [f[2] for f in fields],
            "itemsize": itemsize,
        }
    )


POLICY_DTYPE = _dtype(
    [
        ("policy_id", "<u8", 0),
        ("age", "u1", 8),
        ("gender", "u1", 9),
        ("underwriting_class", "u1", 10),
        ("product_type", "u1", 11),
        ("term", "<u4", 12),
        ("sum_assured", "<f8", 16),
        ("premium", "<f8", 24),
    ],
    32,
)
"""POLICY (the seed's INPUT buffer), 32 bytes."""

SCENARIO_DTYPE = _dtype([("scenario_id", "<u4", 0), ("year", "<u4", 4), ("rate", "<f8", 8)], 16)
"""SCENARIO, 16 bytes, sorted by scenario then year (1-indexed)."""

RESULT_DTYPE = _dtype(
    [
        ("scenario_id", "<u4", 0),
        ("policy_id", "<u4", 4),
        ("npv", "<f8", 8),
        ("reserved", "<u8", 16),
    ],
    24,
)
"""RESULT, 24 bytes (the seed's layout)."""

_COMPONENTS = [
    ("npv", "<f8", 16),
    ("premium_income", "<f8", 24),
    ("death_benefits", "<f8", 32),
    ("surrender_benefits", "<f8", 40),
    ("expenses", "<f8", 48),
    ("maturity_benefits", "<f8", 56),
]

RESULT_DETAIL_DTYPE = _dtype(
    [("scenario_id", "<u4", 0), ("reserved", "<u4", 4), ("policy_id", "<u8", 8), *_COMPONENTS], 64
)
"""RESULT_DETAIL, 64 bytes: npv and its present-value components (all positive but npv)."""

SCENARIO_TOTAL_DTYPE = _dtype(
    [("scenario_id", "<u4", 0), ("reserved", "<u4", 4), ("policy_count", "<f8", 8), *_COMPONENTS],
    64,
)
"""Per-scenario portfolio totals, 64 bytes; the float fields sit where RESULT_DETAIL has them.

``policy_count`` is the number of policies summed (model-point counts included); totals of
several policy chunks merge by adding every float field per scenario.
"""

POLICY_EXT_DTYPE = _dtype(
    [
        ("policy_id", "<u8", 0),
        ("duration_months", "<i4", 8),
        ("reserved", "<u4", 12),
        ("policy_count", "<f8", 16),
    ],
    24,
)
"""Side record for a POLICY record at the same index: months in force at the valuation date
(0 = new business; ``-m``: issued ``m`` months after it, future new business) and the number of
identical policies the record stands for (model points)."""

RESULT_DETAIL_EXT_DTYPE = _dtype(
    [
        ("scenario_id", "<u4", 0),
        ("reserved", "<u4", 4),
        ("policy_id", "<u8", 8),
        *_COMPONENTS,
        ("commissions", "<f8", 64),
        ("premium_annuity", "<f8", 72),
        ("premium", "<f8", 80),
        ("reserved2", "<u8", 88),
    ],
    96,
)
"""RESULT_DETAIL extended, 96 bytes: the RESULT_DETAIL fields at the same offsets, except that
``expenses`` leaves out commissions, which get their own field; then the premium annuity (the
present value of the lives in force at each premium date) and the premium per payment used.
``npv = premium_income - death_benefits - surrender_benefits - expenses - maturity_benefits -
commissions``; ``premium_income = premium x premium_multiplier x premium_annuity``."""

CASHFLOW_DTYPE = _dtype(
    [
        ("scenario_id", "<u4", 0),
        ("period", "<u4", 4),
        ("time_years", "<f8", 8),
        ("premiums", "<f8", 16),
        ("death_claims", "<f8", 24),
        ("surrenders", "<f8", 32),
        ("maturities", "<f8", 40),
        ("expenses", "<f8", 48),
        ("commissions", "<f8", 56),
        ("net_cash_flow", "<f8", 64),
        ("policies_in_force", "<f8", 72),
        ("deaths", "<f8", 80),
        ("lapses", "<f8", 88),
        ("discount_factor", "<f8", 96),
        ("pv_net_cash_flow", "<f8", 104),
    ],
    112,
)
"""Portfolio cash flows of one projection period (month or year), 112 bytes: totals over the
policies of a chunk; chunks merge by adding every float field but ``time_years`` and
``discount_factor`` per (scenario_id, period)."""

ALL_SCENARIOS = 0xFFFFFFFF
"""``scenario_id`` of a RESULT_DETAIL record that holds a policy's mean over all scenarios."""


class BufferType(enum.Enum):
    """The kinds of buffer of DESIGN.md, each with its record dtype."""

    INPUT = "input"
    SCENARIO = "scenario"
    RESULT = "result"
    RESULT_DETAIL = "result_detail"

    @property
    def dtype(self) -> np.dtype[Any]:
        """The record dtype of this buffer type."""
        return _TYPE_DTYPES[self]

    @property
    def max_records(self) -> int:
        """The most records one buffer of this type may hold; larger work is chunked."""
        return MAX_RECORDS[self]


_TYPE_DTYPES = {
    BufferType.INPUT: POLICY_DTYPE,
    BufferType.SCENARIO: SCENARIO_DTYPE,
    BufferType.RESULT: RESULT_DTYPE,
    BufferType.RESULT_DETAIL: RESULT_DETAIL_DTYPE,
}

MAX_RECORDS = {
    BufferType.INPUT: 10_000_000,
    BufferType.SCENARIO: 100_000_000,
    BufferType.RESULT: 100_000_000,
    BufferType.RESULT_DETAIL: 100_000_000,
}


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


def _new_segment(nbytes: int) -> _Segment:
    name = f"livecalc_{os.getpid()}_{secrets.token_hex(6)}"
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


class BufferManager:
    """Allocates, finds and frees named, aligned record buffers; a context manager.

    Example:
        >>> with BufferManager() as mgr:
        ...     pol = mgr.allocate_buffer(BufferType.INPUT, "policies", 10_000)
        ...     pol.address % 16
        0
    """

    def __init__(self) -> None:
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
        if records > type.max_records:
            raise ConfigurationError(
                f"buffer {name!r}: {records:,} {type.name} records exceed the maximum of "
                f"{type.max_records:,}; split the work into chunks"
            )
        return self.allocate(name, type.dtype, records, shared=shared, type=type)

    def allocate(
        self,
        name: str,
        dtype: np.dtype[Any] | type,
        records: int,
        shared: bool = False,
        type: BufferType | None = None,
    ) -> BufferInfo:
        """A new aligned buffer of any record dtype (extensions such as SCENARIO_TOTAL)."""
        dtype = np.dtype(dtype)
        if records < 0:
            raise ConfigurationError(f"buffer {name!r}: record count must be >= 0, got {records}")
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
