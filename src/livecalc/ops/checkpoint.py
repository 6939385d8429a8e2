"""Chunk checkpoints: each finished chunk's output kept, so a killed run can be resumed.

Layout, under a ``CheckpointStore`` (by default the folder ``$LIVECALC_HOME/runs``)::

    RUN_ID/manifest.json                 what the run is, and which chunks are done
    RUN_ID/NODE_ID/chunk-000003.parquet  one chunk's output records, every field

The manifest is written after the part it lists, and atomically (a temporary name, then a
rename; one PUT on object storage), so a chunk is either listed and complete or not there:
a process killed at any instant leaves a manifest that tells the truth.
"""

from __future__ import annotations

import io
import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ports import CheckpointStore

__all__ = [
    "ArrowFsCheckpointStore",
    "CheckpointStore",
    "LocalCheckpointStore",
    "RunCheckpoint",
    "checkpoint_store",
    "collect_garbage",
]

_log = get_logger()

MANIFEST = "manifest.json"
QUEUED_PARTS = 2
"""Chunk parts waiting for the writer thread before the run waits for it."""
PART_COLUMN = "record"


class LocalCheckpointStore:
    """Checkpoints in a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalCheckpointStore({str(self.root)!r})"

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, prefix: str) -> None:
        import shutil

        path = self.root / prefix
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class ArrowFsCheckpointStore:
    """Checkpoints on any ``pyarrow.fs`` filesystem, from a URI (``s3://bucket/prefix``,
    ``gs://...``, ``file:///...``), so a cluster run can checkpoint to object storage."""

    def __init__(self, uri: str) -> None:
        import pyarrow.fs as pafs

        try:
            self.fs, self.base = pafs.FileSystem.from_uri(uri)
        except (ValueError, OSError) as exc:
            raise ConfigurationError(f"checkpoint location {uri!r}: {exc}") from None
        self.uri = uri

    def __repr__(self) -> str:
        return f"ArrowFsCheckpointStore({self.uri!r})"

    def _path(self, key: str) -> str:
        return f"{self.base.rstrip('/')}/{key}" if key else self.base

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            f.write(data)
        self.fs.move(tmp, path)

    def get(self, key: str) -> bytes:
        with self.fs.open_input_stream(self._path(key)) as f:
            data: bytes = f.read()
        return data

    def list(self, prefix: str = "") -> list[str]:
        import pyarrow.fs as pafs

        path = self._path(prefix)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [prefix]
        if info.type != pafs.FileType.Directory:
            return []
        selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
        base = self.base.rstrip("/") + "/"
        return sorted(
            i.path[len(base) :]
            for i in self.fs.get_file_info(selector)
            if i.type == pafs.FileType.File and not i.path.endswith(".tmp")
        )

    def delete(self, prefix: str) -> None:
        import pyarrow.fs as pafs

        path = self._path(prefix)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)


def checkpoint_store(location: str | Path) -> CheckpointStore:
    """A local folder, or a ``pyarrow.fs`` URI (anything with ``://``)."""
    text = str(location)
    return ArrowFsCheckpointStore(text) if "://" in text else LocalCheckpointStore(text)


def _dtype_json(dtype: np.dtype[Any]) -> dict[str, Any]:
    fields: dict[str, Any] = dict(dtype.fields or {})
    names = list(dtype.names or ())
    return {
        "names": names,
        "formats": [fields[n][0].str for n in names],
        "offsets": [int(fields[n][1]) for n in names],
        "itemsize": dtype.itemsize,
    }


def _encode_part(records: np.ndarray) -> bytes:
    """A chunk's records as Parquet: one fixed-size binary column holding each record's bytes.

    Every byte (padding included) comes back as it went in, which a resumed run needs to be
    bit-identical, and the bytes are written as they are, without per-field conversion.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = np.ascontiguousarray(records)
    column = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(data.dtype.itemsize), len(data), [None, pa.py_buffer(data)]
    )
    table = pa.table({PART_COLUMN: column})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none", use_dictionary=False, write_statistics=False)
    return sink.getvalue()


def _read_part(data: bytes, dtype: np.dtype[Any]) -> np.ndarray:
    import pyarrow.parquet as pq

    column = pq.read_table(io.BytesIO(data)).column(PART_COLUMN).combine_chunks()
    raw = column.buffers()[1]
    out = np.frombuffer(raw, dtype=dtype, count=len(column), offset=column.offset * dtype.itemsize)
    return out.copy()


class RunCheckpoint:
    """One run's checkpoint: its manifest, and its chunk parts as Parquet."""

    def __init__(self, store: CheckpointStore, run_id: str, meta: Mapping[str, Any]) -> None:
        self.store = store
        self.run_id = run_id
        self._lock = threading.Lock()
        self._chunk_sizes: dict[str, int] = {}
        self._queue: queue.Queue[tuple[str, int, int, np.ndarray] | None] = queue.Queue(
            QUEUED_PARTS
        )
        self._writer: threading.Thread | None = None
        self._cancelled = threading.Event()
        self.skipped = 0
        """Chunks not checkpointed because they computed faster than the threshold."""
        self.manifest: dict[str, Any] = {
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
            ConfigurationError: there is none, or its manifest cannot be read.
        """
        try:
            manifest = json.loads(store.get(f"{run_id}/{MANIFEST}"))
        except FileNotFoundError:
            raise ConfigurationError(
                f"run {run_id!r} has no checkpoint in {store!r}; only runs with chunk "
                "checkpoints (run.checkpoint true, the default) that did not finish can be "
                "resumed"
            ) from None
        except ValueError as exc:
            raise ConfigurationError(
                f"run {run_id!r}: its checkpoint manifest cannot be read ({exc})"
            ) from None
        self = cls(store, run_id, manifest.get("meta", {}))
        self.manifest = manifest
        return self

    def save(self) -> None:
        """Write the manifest (atomically)."""
        self.manifest["updated_at"] = time.time()
        self.store.put(f"{self.run_id}/{MANIFEST}", json.dumps(self.manifest).encode())

    def stored(self, node_id: str, chunk_size: int, chunks: int) -> dict[int, np.ndarray]:
        """The chunks of ``node_id`` done before (same chunk size and count), read back."""
        self._chunk_sizes[node_id] = chunk_size
        node = self.manifest["nodes"].get(node_id)
        if node is None or node["chunk_size"] != chunk_size or node["chunks"] != chunks:
            return {}
        dtype = np.dtype(node["dtype"])
        out = {
            int(i): _read_part(self.store.get(self._part(node_id, i)), dtype) for i in node["done"]
        }
        _log.info("chunks_restored", engine_id=node_id, chunks=len(out), of=chunks)
        return out

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
        # The runner reuses a streamed chunk's buffer: copy it; a merged slice stays put.
        self._queue.put((node_id, chunk, chunks, records if stable else records.copy()))

    def _write_parts(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._cancelled.is_set():
                continue
            node_id, chunk, chunks, records = item
            try:
                self.store.put(self._part(node_id, chunk), _encode_part(records))
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
                    self.save()
            except Exception as exc:  # any failure here must not fail the run
                # A checkpoint that cannot be written costs resumability, not the run.
                _log.warning(
                    "checkpoint_write_failed", engine_id=node_id, chunk=chunk, error=str(exc)
                )

    def close(self, drain: bool = True) -> None:
        """Stop the writer: after writing every queued part (``drain``), or dropping them."""
        if self._writer is None:
            return
        if not drain:
            self._cancelled.set()
        self._queue.put(None)
        self._writer.join()
        self._writer = None

    def finish(self) -> None:
        """The run is over: drop the parts, keep a manifest that says so."""
        self.close(drain=False)
        with self._lock:
            self.manifest["complete"] = True
            for node_id in self.manifest["nodes"]:
                self.store.delete(f"{self.run_id}/{node_id}")
            self.save()

    def _part(self, node_id: str, chunk: int) -> str:
        return f"{self.run_id}/{node_id}/chunk-{chunk:06d}.parquet"


def collect_garbage(store: CheckpointStore, older_than_seconds: float) -> list[str]:
    """Remove the checkpoints not updated for ``older_than_seconds``; the run ids removed."""
    now = time.time()
    removed = []
    runs = sorted({key.split("/", 1)[0] for key in store.list()})
    for run_id in runs:
        try:
            manifest = json.loads(store.get(f"{run_id}/{MANIFEST}"))
            updated = float(manifest.get("updated_at", 0))
        except (FileNotFoundError, ValueError):
            updated = 0.0  # parts without a readable manifest cannot be resumed
        if now - updated >= older_than_seconds:
            store.delete(run_id)
            removed.append(run_id)
            _log.info("checkpoint_removed", run=run_id, age_seconds=now - updated)
    return removed
