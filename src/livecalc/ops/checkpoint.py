"""Chunk checkpoints: each finished chunk's output kept, so a killed run can be resumed.

Layout, under a ``CheckpointStore`` (by default the folder ``$LIVECALC_HOME/runs``)::

    RUN_ID/manifest.json             what the run is, and which chunks are done
    RUN_ID/NODE_ID/chunk-000003.rec  one chunk's output records: a 32-byte header, then
                                     the records' bytes exactly as they are in memory

A part is written straight from the run's array (no encoding, no copy into a blob), under a
temporary name, flushed to the disk (fsync), then renamed. The manifest is written after the
parts it lists, and atomically too, so a chunk is either listed and complete or not there: a
process killed at any instant leaves a manifest that tells the truth. Each part's header holds
its chunk index and a CRC-32 of the header, the part's node and chunk and every record byte:
a listed part that comes back short, damaged (a power loss that left zeros, a flipped byte),
or under another chunk's name (two parts swapped) is computed again, not trusted.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ops._checkpoint_stores import (
    ArrowFsCheckpointStore,
    LocalCheckpointStore,
    checkpoint_store,
    put_buffers,
)
from livecalc.ports import CheckpointStore

__all__ = [
    "ArrowFsCheckpointStore",
    "CheckpointStore",
    "LocalCheckpointStore",
    "RunCheckpoint",
    "StoredChunks",
    "checkpoint_store",
    "part_buffers",
    "read_part",
]

_log = get_logger()

FORMAT = 3
"""Version of the manifest and part layout; a checkpoint of another version is refused."""
MANIFEST = "manifest.json"
PART_SUFFIX = ".rec"
PART_MAGIC = b"LCPART\x00\x03"
_HEADER = struct.Struct("<8sQIIQ")
"""Magic, record count, record size in bytes, chunk index, checksum: 32 bytes, little-endian.
The checksum is the CRC-32 of the header's first 24 bytes, the node id, then the records."""
QUEUED_PARTS = 2
"""Chunk parts waiting for the writer thread before the run waits for it."""
MANIFEST_EVERY_SECONDS = 0.25
"""While parts keep coming (the run computes faster than parts are written), the manifest is
still rewritten at least this often, so that a run killed mid-burst resumes from the parts
already written instead of none."""
ASSUMED_WRITE_BYTES_PER_SECOND = 1e9
"""Write speed assumed before the run has written a part (then: the speed measured)."""


def _checksum(head: bytes, node_id: str, body: Any) -> int:
    # zlib.crc32 releases the GIL on large buffers: the run goes on while the writer sums.
    return zlib.crc32(body, zlib.crc32(node_id.encode(), zlib.crc32(head)))


def part_buffers(records: np.ndarray, *, node_id: str, chunk: int) -> list[Any]:
    """A part as buffers to write one after the other: its header (with the chunk index and
    the checksum), then the records' bytes (padding included, which a bit-identical resume
    needs), a view of ``records``."""
    data = np.ascontiguousarray(records)
    body = data.view(np.uint8).reshape(-1)
    head = _HEADER.pack(PART_MAGIC, len(data), data.dtype.itemsize, chunk, 0)[:24]
    header = head + struct.pack("<Q", _checksum(head, node_id, body))
    return [header, body]


def read_part(data: bytes, dtype: np.dtype[Any], *, node_id: str, chunk: int) -> np.ndarray:
    """The records of part ``chunk`` of ``node_id`` (a read-only view of ``data``).

    Raises:
        ValueError: not a part of this format, another record size, cut short, another
            chunk's part, or records that do not match the checksum (damaged).
    """
    if len(data) < _HEADER.size:
        raise ValueError(f"{len(data)} bytes, shorter than a part's header")
    magic, count, itemsize, index, checksum = _HEADER.unpack_from(data)
    if magic != PART_MAGIC:
        raise ValueError("not a LiveCalc checkpoint part of this version")
    if itemsize != dtype.itemsize:
        raise ValueError(f"records of {itemsize} bytes, expected {dtype.itemsize}")
    if len(data) != _HEADER.size + count * itemsize:
        raise ValueError(
            f"{len(data) - _HEADER.size} bytes of records, expected {count} x {itemsize}"
        )
    if index != chunk:
        raise ValueError(f"the part of chunk {index}, expected chunk {chunk}")
    body = memoryview(data)[_HEADER.size :]
    if _checksum(bytes(data[:24]), node_id, body) != checksum:
        raise ValueError("checksum mismatch: the part is damaged or of another node")
    return np.frombuffer(data, dtype=dtype, count=count, offset=_HEADER.size)


def _byte_copy(records: np.ndarray) -> np.ndarray:
    data = np.ascontiguousarray(records)
    return data.view(np.uint8).reshape(-1).copy().view(data.dtype)


def _dtype_json(dtype: np.dtype[Any]) -> dict[str, Any]:
    fields: dict[str, Any] = dict(dtype.fields or {})
    names = list(dtype.names or ())
    return {
        "names": names,
        "formats": [fields[n][0].str for n in names],
        "offsets": [int(fields[n][1]) for n in names],
        "itemsize": dtype.itemsize,
    }


class StoredChunks(Mapping[int, np.ndarray]):
    """The kept chunks of one node, read from the store one at a time, when the runner asks
    whether it has a chunk (so that a resumed run holds one part in memory, not the node's
    whole output). A chunk is in it when its part is listed and reads back whole: a part
    that does not (a power loss before the disk had it) is left out, and that chunk is
    computed again. Iteration and ``len`` give the chunks listed."""

    def __init__(
        self, checkpoint: RunCheckpoint, node_id: str, chunks: Iterable[int], dtype: np.dtype[Any]
    ) -> None:
        self._checkpoint = checkpoint
        self._node_id = node_id
        self._listed = sorted({int(i) for i in chunks})
        self._dtype = dtype
        self._lock = threading.Lock()
        self._good: set[int] = set()
        self._bad: set[int] = set()
        self._read: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._listed)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._listed))

    def __contains__(self, chunk: object) -> bool:
        with self._lock:
            if chunk not in self._listed or chunk in self._bad:
                return False
            if chunk in self._good:
                return True
            assert isinstance(chunk, int)
            key = self._checkpoint._part(self._node_id, chunk)
            try:
                self._read[chunk] = read_part(
                    self._checkpoint.store.get(key), self._dtype, node_id=self._node_id, chunk=chunk
                )
            except (OSError, ValueError) as exc:
                _log.warning("checkpoint_part_unreadable", part=key, error=str(exc))
                self._bad.add(chunk)
                return False
            self._good.add(chunk)
            return True

    def __getitem__(self, chunk: int) -> np.ndarray:
        """The chunk's records (read-only); read again if asked for twice."""
        if chunk not in self:
            raise KeyError(chunk)
        with self._lock:
            records = self._read.pop(chunk, None)
        if records is None:
            key = self._checkpoint._part(self._node_id, chunk)
            records = read_part(
                self._checkpoint.store.get(key), self._dtype, node_id=self._node_id, chunk=chunk
            )
        return records

    def discard(self, chunk: int) -> None:
        """Compute ``chunk`` again even though it was kept."""
        with self._lock:
            if chunk in self._listed:
                self._listed.remove(chunk)
            self._read.pop(chunk, None)


class RunCheckpoint:
    """One run's checkpoint: its manifest, and its chunk parts."""

    def __init__(self, store: CheckpointStore, run_id: str, meta: Mapping[str, Any]) -> None:
        self.store = store
        self.run_id = run_id
        self._lock = threading.Lock()
        self._chunk_sizes: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, int, int, np.ndarray] | None] = queue.Queue(
            QUEUED_PARTS
        )
        self._writer: threading.Thread | None = None
        self._cleaner: threading.Thread | None = None
        self._cancelled = threading.Event()
        self.skipped = 0
        """Chunks not checkpointed: writing them would cost more than the policy allows."""
        self.written = 0
        """Parts written by this process."""
        self.written_bytes = 0
        self.write_seconds = 0.0
        """Seconds spent keeping parts: copies, writes and manifests."""
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "run_id": run_id,
            "created_at": time.time(),
            "updated_at": time.time(),
            "complete": False,
            "meta": dict(meta),
            "nodes": {},
        }

    @classmethod
    def load(cls, store: CheckpointStore, run_id: str) -> RunCheckpoint:
        """The checkpoint of ``run_id``.

        Raises:
            ConfigurationError: there is none, its manifest cannot be read, or it was
                written by a LiveCalc with another checkpoint format.
        """
        try:
            manifest = json.loads(store.get(f"{run_id}/{MANIFEST}"))
        except FileNotFoundError:
            raise ConfigurationError(
                f"run {run_id!r} has no checkpoint in {store!r}; only a run that did not "
                "finish and kept chunk checkpoints can be resumed (run.checkpoint true, the "
                "default; chunks too fast to be worth keeping are not kept, see "
                "run.checkpoint_chunks)"
            ) from None
        except ValueError as exc:
            raise ConfigurationError(
                f"run {run_id!r}: its checkpoint manifest cannot be read ({exc})"
            ) from None
        found = manifest.get("format", 1) if isinstance(manifest, dict) else None
        if found != FORMAT:
            raise ConfigurationError(
                f"run {run_id!r}: its checkpoint has format {found}, this LiveCalc reads format "
                f"{FORMAT} only (it was written by another version); start a new run "
                "(`livecalc runs gc` removes old checkpoints)"
            )
        _check_manifest(run_id, manifest)
        self = cls(store, run_id, manifest.get("meta", {}))
        self.manifest = manifest
        return self

    @property
    def write_bytes_per_second(self) -> float:
        """Speed of keeping parts measured in this run, or the assumed one before any."""
        with self._lock:
            if self.write_seconds <= 0 or self.written_bytes < 1 << 20:
                return ASSUMED_WRITE_BYTES_PER_SECOND
            return self.written_bytes / self.write_seconds

    def worth_writing(self, nbytes: int, chunk_seconds: float, max_overhead: float) -> bool:
        """Whether keeping ``nbytes`` costs at most ``max_overhead`` of ``chunk_seconds``,
        the time the run took to compute them, at the write speed measured so far."""
        return nbytes / self.write_bytes_per_second <= max_overhead * chunk_seconds

    def save(self) -> None:
        """Write the manifest (atomically)."""
        self.manifest["updated_at"] = time.time()
        self.store.put(f"{self.run_id}/{MANIFEST}", json.dumps(self.manifest).encode())

    def stored(self, node_id: str, chunk_size: int, chunks: int) -> StoredChunks:
        """The chunks of ``node_id`` done before (same chunk size and count); each is read
        back only when the runner reaches it."""
        self._chunk_sizes[node_id] = chunk_size
        node = self.manifest["nodes"].get(node_id)
        if node is None or node["chunk_size"] != chunk_size or node["chunks"] != chunks:
            return StoredChunks(self, node_id, [], np.dtype(np.uint8))
        _log.info("chunks_listed", engine_id=node_id, chunks=len(node["done"]), of=chunks)
        return StoredChunks(self, node_id, node["done"], np.dtype(node["dtype"]))

    def put_chunk(
        self, node_id: str, chunk: int, chunks: int, records: np.ndarray, stable: bool = False
    ) -> None:
        """Queue one chunk's records for the writer thread, which keeps the part and then
        lists it in the manifest. Blocks only while ``QUEUED_PARTS`` parts wait already."""
        done = self.manifest["nodes"].get(node_id, {}).get("done", [])
        if chunk in done:
            return  # a chunk reused from this checkpoint: already there
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_parts, name="livecalc-checkpoint", daemon=True
            )
            self._writer.start()
        start = time.perf_counter()
        # The runner reuses a streamed chunk's buffer: copy it (as bytes: a structured copy
        # may skip padding bytes); a merged slice stays put.
        kept = records if stable else _byte_copy(records)
        with self._lock:
            self.write_seconds += time.perf_counter() - start
        self._queue.put((node_id, chunk, chunks, kept))

    def _write_parts(self) -> None:
        unlisted = False  # parts written that the manifest does not list yet
        saved = time.monotonic()
        while True:
            item = self._queue.get()
            if item is None:
                if unlisted:
                    self._save_quietly()
                return
            if self._cancelled.is_set():
                continue
            node_id, chunk, chunks, records = item
            start = time.perf_counter()
            try:
                buffers = part_buffers(records, node_id=node_id, chunk=chunk)
                put_buffers(self.store, self._part(node_id, chunk), buffers)
            except Exception as exc:  # any failure here must not fail the run
                # A checkpoint that cannot be written costs resumability, not the run.
                _log.warning(
                    "checkpoint_write_failed", engine_id=node_id, chunk=chunk, error=str(exc)
                )
                continue
            with self._lock:
                node = self.manifest["nodes"].setdefault(
                    node_id,
                    {
                        "chunks": chunks,
                        "chunk_size": self._chunk_sizes.get(node_id, 0),
                        "dtype": _dtype_json(records.dtype),
                        "done": [],
                    },
                )
                if chunk not in node["done"]:
                    node["done"].append(chunk)
            unlisted = True
            # One manifest for the parts written back to back: rewritten when no part waits,
            # and at least every MANIFEST_EVERY_SECONDS while they keep coming.
            if self._queue.empty() or time.monotonic() - saved >= MANIFEST_EVERY_SECONDS:
                unlisted = not self._save_quietly()
                saved = time.monotonic()
            with self._lock:
                self.written += 1
                self.written_bytes += records.nbytes
                self.write_seconds += time.perf_counter() - start

    def _save_quietly(self) -> bool:
        try:
            with self._lock:
                self.save()
            return True
        except Exception as exc:  # as for parts: resumability lost, not the run
            _log.warning("checkpoint_write_failed", part=MANIFEST, error=str(exc))
            return False

    def close(self, drain: bool = True) -> None:
        """Stop the writer: after writing every queued part (``drain``), or dropping them."""
        if self._writer is None:
            return
        if not drain:
            self._cancelled.set()
        self._queue.put(None)
        self._writer.join()
        self._writer = None
        _log.info(
            "checkpoint_parts",
            written=self.written,
            skipped=self.skipped,
            megabytes=round(self.written_bytes / 1e6, 1),
            seconds=round(self.write_seconds, 3),
        )

    def finish(self) -> None:
        """The run is over: keep a manifest that says so, then drop the parts.

        The parts go on a thread of their own (deleting a few hundred megabytes takes tens
        of milliseconds the run need not wait for); not a daemon, so the process waits for
        it before it exits. A manifest marked complete is never resumed, whatever is left.
        """
        self.close(drain=False)
        with self._lock:
            self.manifest["complete"] = True
            self.save()
        nodes = list(self.manifest["nodes"])
        if nodes:
            self._cleaner = threading.Thread(
                target=self._drop_parts, args=(nodes,), name="livecalc-checkpoint-cleanup"
            )
            self._cleaner.start()

    def _drop_parts(self, nodes: list[str]) -> None:
        for node_id in nodes:
            try:
                self.store.delete(f"{self.run_id}/{node_id}")
            except Exception as exc:  # `runs gc` removes what is left
                _log.warning("checkpoint_cleanup_failed", engine_id=node_id, error=str(exc))

    def wait(self) -> None:
        """Wait until the parts of a finished run are deleted."""
        if self._cleaner is not None:
            self._cleaner.join()

    def _part(self, node_id: str, chunk: int) -> str:
        return f"{self.run_id}/{node_id}/chunk-{chunk:06d}{PART_SUFFIX}"


def _check_manifest(run_id: str, manifest: dict[str, Any]) -> None:
    """Refuse a manifest whose node entries are not what this module writes (edited by
    hand, or damaged): a resume must not trip over them half-way."""
    nodes = manifest.get("nodes")
    meta = manifest.get("meta", {})
    problem = None
    if not isinstance(nodes, dict):
        problem = "'nodes' is not an object"
    elif not isinstance(meta, dict):
        problem = "'meta' is not an object"
    for node_id, node in nodes.items() if isinstance(nodes, dict) else ():
        where = f"nodes.{node_id}"
        if not isinstance(node, dict):
            problem = f"{where} is not an object"
            break
        for key in ("chunks", "chunk_size"):
            if type(node.get(key)) is not int or node[key] < 0:
                problem = f"{where}.{key} is {node.get(key)!r}, not a count"
        done = node.get("done")
        if not isinstance(done, list):
            problem = f"{where}.done is not a list"
        else:
            for i, chunk in enumerate(done):
                if type(chunk) is not int or not 0 <= chunk < 2**32:
                    problem = f"{where}.done[{i}] is {chunk!r}, not a chunk index"
                    break
        try:
            np.dtype(node.get("dtype"))
        except Exception:  # numpy raises TypeError, ValueError or KeyError on a bad spec
            problem = f"{where}.dtype is not a record type"
        if problem:
            break
    if problem:
        raise ConfigurationError(
            f"run {run_id!r}: its checkpoint manifest is damaged ({problem}); it cannot be "
            "resumed: start a new run"
        )
