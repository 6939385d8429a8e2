"""The run store's journal: records written durably in under a millisecond, folded later.

Opening ``runs.duckdb``, writing a record in a transaction and closing it again costs a run
tens of milliseconds, more than a small run itself computes. So once a process has opened a
store (and so knows it is readable and of a schema it writes), a run's record goes to the
store's journal instead: one JSON file per record in ``runs.duckdb.journal/``, written to a
temporary name and renamed into place, so that a record is either whole or absent, and
survives the process once ``append`` returns. The process's ``Folder`` thread flushes it to
disk (``fsync`` of the file and the folder) at once, off the run's path: an ``fsync`` takes
from a fraction of a millisecond on a quiet disk to several on a busy one, and a run should
not wait for it. A power cut in those milliseconds can lose the record; a killed process
cannot.

Records are folded into DuckDB, in the order they were written, by whoever opens the store
next (a ``runs list``, another process's run; ``RunStore`` does it under its lock), by this
process's ``Folder`` once no run has recorded anything for ``FOLD_IDLE_SECONDS``, and at
exit. A process killed before that leaves its records in the journal, where the next reader
finds them: nothing is lost. Folding is idempotent (a record replaces the run's earlier one),
so a fold interrupted between its commit and removing its entries only repeats itself.

File names sort in writing order: nanoseconds since the epoch (kept increasing within a
process), the pid and a counter, so that a run's ``running`` record always precedes its final
one.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

from livecalc.log import get_logger
from livecalc.runtime.leftovers import sweep_temp_files, temp_path

__all__ = ["FOLD_BATCH", "FOLD_IDLE_SECONDS", "Folder", "Journal", "journal_folder"]

_log = get_logger()

FOLD_IDLE_SECONDS = 2.0
"""Quiet seconds (no record written) after which a process folds its journaled records."""

FOLD_BATCH = 256
"""Records journaled by a process after which it folds them even while runs go on."""

_SUFFIX = ".journal"
_ENTRY = "record"  # the temporary files' base name: .record.livecalc-<tag>-<pid>-<hex>.tmp


def journal_folder(store_file: Path) -> Path:
    """The journal of the store ``store_file``: ``runs.duckdb.journal/`` beside it."""
    return store_file.with_name(store_file.name + _SUFFIX)


class Journal:
    """The journal folder of one store: append records, list them in order, remove them."""

    _clock_lock = threading.Lock()
    _last_ns = 0
    _count = 0
    # Entries not yet flushed, by journal folder: shared by the Journal objects of one store
    # (each run makes its own RunStore).
    _unsynced: ClassVar[dict[Path, list[Path]]] = {}

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def append(self, record: Mapping[str, Any]) -> Path:
        """Write ``record``; the entry's path (whole, or absent after a crash). ``sync``
        flushes it to disk."""
        data = json.dumps(record, default=_plain).encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(self.folder / _ENTRY)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        entry = self.folder / self._next_name()
        os.replace(tmp, entry)
        with self._clock_lock:
            self._unsynced.setdefault(self.folder, []).append(entry)
        return entry

    def sync(self) -> None:
        """Flush the entries appended since the last sync, and their names, to disk."""
        with self._clock_lock:
            entries = self._unsynced.pop(self.folder, [])
        if not entries:
            return
        for entry in entries:
            try:
                fd = os.open(entry, os.O_RDONLY)
            except FileNotFoundError:
                continue  # folded already: DuckDB's commit made it durable
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_folder(self.folder)  # the renames themselves

    @classmethod
    def _next_name(cls) -> str:
        with cls._clock_lock:
            # Increasing within the process even if the wall clock steps back.
            cls._last_ns = max(time.time_ns(), cls._last_ns + 1)
            cls._count += 1
            return f"{cls._last_ns:020d}-{os.getpid()}-{cls._count:08d}.json"

    def entries(self) -> list[Path]:
        """The journaled records, oldest first (temporary files of dead writers swept)."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return []
        if any(n.endswith(".tmp") for n in names):
            sweep_temp_files(self.folder / _ENTRY)
        return [self.folder / n for n in sorted(names) if n.endswith(".json")]

    def read(self, entry: Path) -> dict[str, Any] | None:
        """The record in ``entry``; None (the entry set aside as ``.bad``) when unreadable."""
        try:
            record = json.loads(entry.read_bytes())
            if isinstance(record, dict) and "run_id" in record:
                return record
            problem = "not a run record"
        except (OSError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            entry.rename(entry.with_suffix(".bad"))
        _log.error("store_journal_unreadable", entry=str(entry), problem=problem)
        return None

    def remove(self, entries: list[Path]) -> None:
        """Remove folded entries."""
        for entry in entries:
            entry.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on this platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain(value: Any) -> Any:
    """JSON for what a record may hold besides JSON types: numpy scalars, dates, paths."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


class Folder:
    """Flushes this process's journal entries to disk as they come, and folds them in a
    background thread when runs pause, and at exit (waiting for at most ``exit_seconds``).

    ``schedule(key, fold, sync)`` says that store ``key`` has a new entry; ``sync()`` flushes
    its journal, ``fold(timeout)`` folds it (neither raises: failures are logged). The thread
    starts on first use; a forked child starts its own.
    """

    def __init__(
        self,
        idle_seconds: float = FOLD_IDLE_SECONDS,
        batch: int = FOLD_BATCH,
        exit_seconds: float = 5.0,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.batch = batch
        self.exit_seconds = exit_seconds
        self._cond = threading.Condition()
        self._due: dict[str, Callable[[float | None], None]] = {}
        self._to_sync: dict[str, Callable[[], None]] = {}
        self._written = 0
        self._last = 0.0
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def schedule(
        self, key: str, fold: Callable[[float | None], None], sync: Callable[[], None]
    ) -> None:
        """Store ``key`` has a new entry; ``sync`` flushes its journal, ``fold`` folds it."""
        with self._cond:
            if self._pid != os.getpid():  # forked: the parent's thread is not here
                self._pid, self._thread, self._due, self._written = os.getpid(), None, {}, 0
                self._to_sync = {}
            self._due[key] = fold
            self._to_sync[key] = sync
            self._written += 1
            self._last = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="livecalc-store-fold", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _take(self) -> dict[str, Callable[[float | None], None]]:
        due, self._due, self._written = self._due, {}, 0
        return due

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
                syncs, self._to_sync = list(self._to_sync.values()), {}
            for sync in syncs:
                sync()
            with self._cond:
                quiet = time.monotonic() - self._last
                if quiet < self.idle_seconds and self._written < self.batch:
                    if not self._to_sync:  # a record written meanwhile: sync it first
                        self._cond.wait(self.idle_seconds - quiet)
                    continue
            with self._busy:  # held while folding: drain() waits for this fold to end
                with self._cond:
                    due = self._take()
                for fold in due.values():
                    fold(None)

    def drain(self) -> None:
        """Fold every store with entries now, after any fold in progress (at exit)."""
        if self._pid != os.getpid():
            return
        with self._busy:
            with self._cond:
                due = self._take()
            for fold in due.values():
                fold(self.exit_seconds)


FOLDER = Folder()
"""The process's folder (one thread for all stores)."""

atexit.register(FOLDER.drain)
