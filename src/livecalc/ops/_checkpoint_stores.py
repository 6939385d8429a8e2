"""Where checkpoints live: a local folder, or any ``pyarrow.fs`` filesystem.

Both implement ``livecalc.ports.CheckpointStore`` (``put``, ``get``, ``list``, ``delete``)
and one more method, ``put_buffers``: a blob written from several buffers (a part's header
and its records, straight from the run's array) without joining them into one ``bytes``
first. ``put_buffers`` falls back to ``put`` for any other store.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from livecalc.errors import ConfigurationError
from livecalc.ports import CheckpointStore

__all__ = ["ArrowFsCheckpointStore", "LocalCheckpointStore", "checkpoint_store", "put_buffers"]


class LocalCheckpointStore:
    """Checkpoints in a local folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"LocalCheckpointStore({str(self.root)!r})"

    def put(self, key: str, data: bytes) -> None:
        self.put_buffers(key, [data])

    def put_buffers(self, key: str, buffers: Sequence[Any]) -> None:
        """Write the buffers one after the other under a temporary name, flush them to the
        disk (fsync), then rename and flush the folder: a reader sees the old blob or the
        whole new one, never part of it, and once this returns a power loss cannot take it
        (a manifest written after its parts never lists a part the disk lacks)."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as f:
                for buffer in buffers:
                    f.write(buffer)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)

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
        path = self.root / prefix
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename just made) to the disk, where the OS allows."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder: the file itself is synced
        pass
    finally:
        os.close(fd)


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
        self.put_buffers(key, [data])

    def put_buffers(self, key: str, buffers: Sequence[Any]) -> None:
        """One stream under a temporary name, then a move (on object storage, the upload
        completes as one object: readers never see part of it)."""
        path = self._path(key)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.{secrets.token_hex(4)}.tmp"
        with self.fs.open_output_stream(tmp) as f:
            for buffer in buffers:
                f.write(buffer)
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


def put_buffers(store: CheckpointStore, key: str, buffers: Sequence[Any]) -> None:
    """``store.put_buffers`` where the store has it; else ``put`` of the joined bytes."""
    put = getattr(store, "put_buffers", None)
    if callable(put):
        put(key, buffers)
    else:
        store.put(key, b"".join(buffers))
