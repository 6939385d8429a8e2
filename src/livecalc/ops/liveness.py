"""Who owns a run while it runs, how others tell that it died, and what ``runs gc`` may remove.

A run holds an exclusive ``flock`` on ``RUN_ID/.owner.lock`` in its run folder (``runs/``
beside the run store; without a store, its local checkpoint folder) from before its first
record until after its last. The kernel drops the lock when the process dies, however it
dies (SIGKILL, a crash, the OOM killer), so a lock that another process can take means the
owner is gone, whatever became of its pid (a reused pid cannot fool it). The file holds the
owner's host, pid and start, for the messages; its mtime is a heartbeat, touched every
``HEARTBEAT_SECONDS``, for a run store shared between machines, where one host's ``flock``
may not see another's: a run of another host whose heartbeat is older than
``STALE_SECONDS`` counts as dead.

``RunLock.acquire`` is how a run, a resume and ``runs delete`` claim a run id: a run id
whose owner is alive is refused, naming its pid and host. ``owner_of`` and ``with_liveness``
are how ``runs list/show`` tell a ``running`` record whose owner is gone (``dead``), and
whether it can be resumed. ``collect_garbage`` is ``runs gc``: it ages a run folder by its
newest file, leaves alone what is not a run folder, and never touches a run whose owner is
alive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ops._checkpoint_stores import LocalCheckpointStore, checkpoint_store
from livecalc.ops.home import checkpoint_root
from livecalc.ports import CheckpointStore
from livecalc.ports.context import check_run_id

__all__ = [
    "HEARTBEAT_SECONDS",
    "LOCK_FILE",
    "STALE_SECONDS",
    "Collected",
    "Owner",
    "RunLock",
    "RunLockedError",
    "collect_garbage",
    "dead_runs",
    "lock_root",
    "owner_of",
    "record_attempts",
    "run_id_of",
    "with_liveness",
]

_log = get_logger()

LOCK_FILE = ".owner.lock"
"""The lock file in a run folder (hidden: checkpoint listings leave it out)."""
HEARTBEAT_SECONDS = 5.0
"""How often a running run touches its lock file."""
STALE_SECONDS = 60.0
"""A run of another host whose lock file is older than this counts as dead."""
MANIFEST = "manifest.json"
_ACQUIRE_SECONDS = 1.0
"""How long a claim waits for a lock held for an instant (``runs list`` probing it)."""


class RunLockedError(ConfigurationError):
    """The run id is owned by a live process."""


@dataclass(frozen=True)
class Owner:
    """What a run's lock file says of its owner, and whether the owner is alive."""

    alive: bool
    host: str | None = None
    pid: int | None = None
    started_at: str | None = None
    heartbeat: float | None = None
    """The lock file's mtime (seconds since the epoch): the owner's last sign of life."""
    checkpoint: str | None = None
    """Where the run keeps its checkpoint, when not in its run folder."""

    def describe(self) -> str:
        """``pid 4242 on host calc-01, last heartbeat 3 s ago``."""
        who = f"pid {self.pid if self.pid is not None else '?'} on host {self.host or '?'}"
        if self.heartbeat is None:
            return who
        return f"{who}, last heartbeat {max(0.0, time.time() - self.heartbeat):.0f} s ago"

    def to_dict(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "heartbeat_at": _iso(self.heartbeat),
        }


def run_id_of(run_id: Any, what: str = "run id") -> str:
    """``run_id`` checked by the rule run contexts use (``ports.context.check_run_id``: a
    folder name); ConfigurationError otherwise."""
    if not isinstance(run_id, str):
        raise ConfigurationError(f"{what}: expected a string, got {type(run_id).__name__}")
    try:
        return check_run_id(run_id)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def lock_root(store: Any, checkpoint: Any = None) -> Path | None:
    """The folder of run folders where a run's lock lives: ``runs/`` beside the run store;
    with no store (``store=False``), a local checkpoint folder; else None (no lock)."""
    if store is not False:
        return checkpoint_root(store if isinstance(store, str | Path) else None)
    if isinstance(checkpoint, LocalCheckpointStore):
        return checkpoint.root
    if isinstance(checkpoint, str | Path) and "://" not in str(checkpoint):
        return Path(checkpoint).expanduser()
    return None


class RunLock:
    """A run id claimed by this process: the exclusive lock on its lock file, and the
    heartbeat thread touching it. ``release`` (or the end of a ``with``) gives it back."""

    def __init__(self, path: Path, fd: int, previous: Owner | None) -> None:
        self.path = path
        self._fd: int | None = fd
        self.previous = previous
        """The owner the lock file named before (a dead run's host, pid and heartbeat)."""
        _HEARTBEAT.add(fd)

    @classmethod
    def acquire(
        cls, root: Path, run_id: str, *, checkpoint: str | None = None, action: str = "run"
    ) -> RunLock:
        """Claim ``run_id`` under ``root`` for this process.

        Raises:
            RunLockedError: a live process owns it (its pid and host named).
        """
        import fcntl

        folder = root / run_id_of(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        deadline = time.monotonic() + _ACQUIRE_SECONDS
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                raise _locked(run_id, _read_owner(path, alive=True), action) from None
            # The file may have been removed (and made again) by an owner that finished
            # while this one waited: a lock on a removed file guards nothing.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_owner(path, alive=False, fd=fd)
        if (
            previous is not None
            and previous.host not in (None, socket.gethostname())
            and previous.heartbeat is not None
            and time.time() - previous.heartbeat < STALE_SECONDS
        ):
            # Another machine's run may hold a lock this machine's flock cannot see.
            os.close(fd)
            raise _locked(run_id, previous, action)
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": _iso(time.time()),
            "checkpoint": checkpoint,
        }
        data = json.dumps(info).encode()
        # Written over the old owner, then cut to length (not truncated to zero first: ext4
        # flushes a file truncated to zero and rewritten when it is closed, 5 ms a run).
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        return cls(path, fd, previous)

    def release(self) -> None:
        """Give the run id back: the lock file goes, and the run folder when it is empty."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HEARTBEAT.discard(fd)
        try:
            # Removed while still locked: a claim waiting on it sees another file and retries.
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only when empty: nothing else of the run's there
        finally:
            os.close(fd)  # releases the lock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _Heartbeats:
    """One thread per process touching the lock files of the runs it owns (a thread per
    run would cost each run a thread start)."""

    def __init__(self) -> None:
        self._fds: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, fd: int) -> None:
        with self._lock:
            self._fds.add(fd)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._beat, name="livecalc-heartbeat")
                self._thread.daemon = True
                self._thread.start()

    def discard(self, fd: int) -> None:
        # Under the lock: a file descriptor is not touched once its lock is given back (the
        # number may be reused for another file as soon as it is closed).
        with self._lock:
            self._fds.discard(fd)

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._lock:
                for fd in self._fds:
                    with contextlib.suppress(OSError):
                        os.utime(fd)


_HEARTBEAT = _Heartbeats()


def _locked(run_id: str, owner: Owner | None, action: str) -> RunLockedError:
    who = owner.describe() if owner is not None else "another process"
    advice = {
        "run": "give this run another id, or wait for that one to end",
        "resume": "resume it once it has ended (or stop that process)",
        "delete": "delete it once it has ended (or stop that process)",
    }.get(action, f"{action} once it has ended")
    return RunLockedError(f"run {run_id!r} is running ({who}); {advice}")


def _read_owner(path: Path, alive: bool, fd: int | None = None) -> Owner | None:
    try:
        if fd is not None:
            text = os.pread(fd, 4096, 0)
            mtime = os.fstat(fd).st_mtime
        else:
            text = path.read_bytes()[:4096]
            mtime = path.stat().st_mtime
    except OSError:
        return None
    try:
        info = json.loads(text) if text else {}
    except ValueError:
        info = {}  # cut short by a kill while written: the owner is unknown, not the lock
    if not isinstance(info, dict):
        info = {}
    pid = info.get("pid")
    return Owner(
        alive=alive,
        host=info.get("host") if isinstance(info.get("host"), str) else None,
        pid=pid if isinstance(pid, int) else None,
        started_at=info.get("started_at") if isinstance(info.get("started_at"), str) else None,
        heartbeat=mtime,
        checkpoint=info.get("checkpoint") if isinstance(info.get("checkpoint"), str) else None,
    )


def owner_of(root: Path, run_id: str) -> Owner | None:
    """The owner of ``run_id`` as its lock file tells (None: no lock file, so no live owner).

    A lock another process can take means the owner died on this host; on another host, a
    heartbeat older than ``STALE_SECONDS`` does.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock (Windows): no run holds a lock
        return None
    path = root / run_id / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            # Shared and released at once: an owner's claim waits out this instant.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            held = False
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            held = True
        owner = _read_owner(path, alive=held, fd=fd)
    finally:
        os.close(fd)
    if owner is None or held:
        return owner
    other_host = owner.host not in (None, socket.gethostname())
    fresh = owner.heartbeat is not None and time.time() - owner.heartbeat < STALE_SECONDS
    return dataclasses.replace(owner, alive=other_host and fresh)


def _resumability(root: Path, run_id: str, owner: Owner | None) -> tuple[bool, str]:
    """Whether a dead run can be resumed, and what ``runs show`` says of it."""
    location = owner.checkpoint if owner is not None and owner.checkpoint else None
    store: CheckpointStore = (
        checkpoint_store(location) if location is not None else LocalCheckpointStore(root)
    )
    try:
        manifest = json.loads(store.get(f"{run_id}/{MANIFEST}"))
    except (OSError, ValueError, ConfigurationError):
        return False, "it kept no checkpoint, so it cannot be resumed: run it again"
    if not isinstance(manifest, dict):
        return False, "its checkpoint manifest cannot be read: run it again"
    if manifest.get("complete"):
        if isinstance(manifest.get("record"), dict):
            return True, "it had finished: `livecalc resume` completes its record"
        return False, "its checkpoint is complete: nothing to resume"
    return True, f"`livecalc resume {run_id}` finishes it from its checkpoint"


def with_liveness(root: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A ``running`` record as it really is: still ``running`` (``owner`` says who), or
    ``dead`` with ``resumable`` and a ``liveness`` sentence saying why and what to do."""
    if record.get("status") != "running":
        return record
    owner = owner_of(root, str(record["run_id"]))
    if owner is not None and owner.alive:
        return {**record, "owner": owner.to_dict()}
    prov = record.get("provenance") or {}
    if owner is None:
        owner = Owner(alive=False, host=prov.get("host"), pid=prov.get("pid"))
    resumable, how = _resumability(root, str(record["run_id"]), owner)
    return {
        **record,
        "status": "dead",
        "owner": owner.to_dict(),
        "resumable": resumable,
        "liveness": f"its process ({owner.describe()}) is gone; {how}",
    }


def dead_runs(root: Path, run_ids: list[str]) -> dict[str, bool]:
    """Of the ``running`` records ``run_ids``, those whose owner is gone: whether each can be
    resumed."""
    out = {}
    for run_id in run_ids:
        owner = owner_of(root, run_id)
        if owner is None or not owner.alive:
            out[run_id] = _resumability(root, run_id, owner)[0]
    return out


# -- runs gc ------------------------------------------------------------------------------


@dataclass
class Collected:
    """What ``collect_garbage`` did: the run folders removed, and those it left because
    their owner is alive."""

    removed: list[str]
    running: list[str]
    owners: dict[str, Owner] = dataclasses.field(default_factory=dict)
    """The owner of each run left running."""


def collect_garbage(
    store: CheckpointStore, older_than_seconds: float, locks: Path | None = None
) -> Collected:
    """Remove the run folders (checkpoints, kept datasets) not touched for
    ``older_than_seconds``.

    A local folder is aged by its newest file; another store by its manifest's
    ``updated_at``. An entry that is not a run folder (a stray file, a folder whose name is
    no run id or that holds neither a manifest nor a lock file) is left alone, and so is a
    run whose owner is alive (its lock in ``locks``, default the store's own folder).
    """
    now = time.time()
    out = Collected([], [], {})
    if isinstance(store, LocalCheckpointStore):
        locks = locks if locks is not None else store.root
        candidates = _local_run_folders(store.root)
    else:
        candidates = _manifest_ages(store)
    for run_id, newest in candidates:
        owner = owner_of(locks, run_id) if locks is not None else None
        if owner is not None and owner.alive:
            out.running.append(run_id)
            out.owners[run_id] = owner
            continue
        if now - newest < older_than_seconds:
            continue
        if isinstance(store, LocalCheckpointStore):
            shutil.rmtree(store.root / run_id, ignore_errors=True)
        else:
            store.delete(run_id)
        out.removed.append(run_id)
        _log.info("checkpoint_removed", run=run_id, age_seconds=now - newest)
    return out


def _local_run_folders(root: Path) -> Iterator[tuple[str, float]]:
    """(run id, newest mtime) of each run folder under ``root``."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return
    for entry in entries:
        try:
            check_run_id(entry.name)
        except ValueError:
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        if not ((entry / MANIFEST).is_file() or (entry / LOCK_FILE).is_file()):
            continue  # not LiveCalc's
        newest = entry.stat().st_mtime
        for folder, dirs, files in os.walk(entry):
            for name in (*files, *dirs):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
        yield entry.name, newest


def _manifest_ages(store: CheckpointStore) -> Iterator[tuple[str, float]]:
    runs = sorted({key.split("/", 1)[0] for key in store.list()})
    for run_id in runs:
        try:
            check_run_id(run_id)
            manifest = json.loads(store.get(f"{run_id}/{MANIFEST}"))
            updated = float(manifest.get("updated_at", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # no readable manifest: not a run folder this store can age
        yield run_id, updated


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat() + "Z"


def record_attempts(
    previous: Mapping[str, Any], previous_owner: Owner | None
) -> list[dict[str, Any]]:
    """The attempts of a run before this one, from its record: the first attempt's start,
    each attempt's end, seconds and status; an attempt killed ends at its last heartbeat."""
    attempts = [dict(a) for a in previous.get("attempts") or []]
    if not attempts:
        prov = previous.get("provenance") or {}
        attempts = [
            {
                "started_at": previous.get("started_at"),
                "finished_at": previous.get("finished_at"),
                "seconds": previous.get("seconds"),
                "status": previous.get("status"),
                "host": prov.get("host"),
                "pid": prov.get("pid"),
            }
        ]
    last = attempts[-1]
    if last.get("status") in ("running", "dead"):
        # Killed: it ended at its last sign of life.
        last["status"] = "killed"
        end = previous_owner.heartbeat if previous_owner is not None else None
        if end is not None:
            last["finished_at"] = _iso(end)
            start = _epoch(last.get("started_at"))
            last["seconds"] = max(0.0, end - start) if start is not None else None
    return attempts


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    from datetime import UTC, datetime

    try:
        return datetime.fromisoformat(text.rstrip("Z")).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
