"""The run store: every run's record in one embedded DuckDB file, ``runs.duckdb``.

A record is a plain JSON-ready dict (the shape ``RunStore.get`` returns; docs/operations.md
lists it). It is spread over a few tables so that the store answers questions directly in
SQL (``SELECT * FROM run_metrics WHERE name = 'cte_99_5'``).

DuckDB lets one process write a file at a time and refuses to open it while another holds
it. Every operation that opens the file does its work in one transaction and closes it
again, holding an exclusive ``flock`` on ``runs.duckdb.lock`` from before the open until after
the close. DuckDB's own lock is not enough: with processes opening and closing the file in
quick succession, a committed record was now and then missing afterwards (about 1 in 500
records with three writing processes, DuckDB 2.0.1; none in the same trials with this lock). A
lock
held by another process (ours, or DuckDB's when another program has the file open) is waited
for with exponential backoff and jitter for up to ``lock_timeout_seconds``, so runs that
finish together are all recorded.

Opening the file costs a run more than many runs compute, so a process opens a store once:
its first record is written directly (an unreadable store is reported then), and later ones,
while no other process has written the file, go to the store's journal (``_journal.py``:
written in under a millisecond, flushed to disk by a background thread), which every opening
of the store folds in first, under the same lock, before anything else is read or written.

The schema is versioned (``meta.schema_version``); opening an older store applies the
migrations in order, in one transaction. A store from a newer LiveCalc, or a file that is not
a DuckDB database, is a ConfigurationError naming the file.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import random
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ops._journal import FOLDER, Journal, journal_folder
from livecalc.ops.home import store_file
from livecalc.ops.liveness import (
    RunLockedError,
    dead_runs,
    owner_of,
    run_id_of,
    with_liveness,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = ["SCHEMA_VERSION", "RunStore", "StoreLockedError", "utc_now"]

_log = get_logger()

SCHEMA_VERSION = 2
"""The schema this LiveCalc writes; older stores are migrated when opened."""

_V1 = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,
    seconds DOUBLE,
    source VARCHAR,
    executor VARCHAR,
    host VARCHAR,
    pid INTEGER,
    livecalc_version VARCHAR,
    python_version VARCHAR,
    numpy_version VARCHAR,
    numba_version VARCHAR,
    config_path VARCHAR,
    config_hash VARCHAR,
    config_json VARCHAR,
    error VARCHAR
);
CREATE TABLE run_inputs (run_id VARCHAR, path VARCHAR, sha256 VARCHAR, size_bytes BIGINT);
CREATE TABLE run_assumptions (run_id VARCHAR, reference VARCHAR, name VARCHAR, version VARCHAR);
CREATE TABLE run_nodes (
    run_id VARCHAR, position INTEGER, node_id VARCHAR, engine_type VARCHAR, status VARCHAR,
    seconds DOUBLE, chunks INTEGER, rows BIGINT, records BIGINT, error VARCHAR,
    outputs_json VARCHAR
);
CREATE TABLE run_metrics (run_id VARCHAR, node_id VARCHAR, name VARCHAR, value DOUBLE);
CREATE TABLE run_checks (
    run_id VARCHAR, name VARCHAR, kind VARCHAR, severity VARCHAR, passed BOOLEAN,
    value VARCHAR, threshold VARCHAR, message VARCHAR, description VARCHAR
);
CREATE TABLE run_outputs (
    run_id VARCHAR, name VARCHAR, path VARCHAR, sha256 VARCHAR, size_bytes BIGINT
);
"""

_V2 = """
ALTER TABLE runs ADD COLUMN overrides_json VARCHAR;
ALTER TABLE runs ADD COLUMN summary_path VARCHAR;
ALTER TABLE runs ADD COLUMN report_path VARCHAR;
ALTER TABLE runs ADD COLUMN resumed INTEGER DEFAULT 0;
ALTER TABLE run_nodes ADD COLUMN reused_chunks INTEGER DEFAULT 0;
CREATE TABLE run_sla (
    run_id VARCHAR, target VARCHAR, limit_seconds DOUBLE, seconds DOUBLE, breached BOOLEAN
);
CREATE TABLE run_artifacts (run_id VARCHAR, kind VARCHAR, data_json VARCHAR);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
"""``MIGRATIONS[i]`` takes a store from schema version ``i`` to ``i + 1``."""

_CHILD_TABLES = (
    "run_inputs",
    "run_assumptions",
    "run_nodes",
    "run_metrics",
    "run_checks",
    "run_outputs",
    "run_sla",
    "run_artifacts",
)


_RECORD_ARTIFACTS = ("selection", "datasets", "attempts", "cluster")
"""Record keys kept as rows of ``run_artifacts`` (no schema change): ``selection`` (a run of
some nodes: the nodes, those only initialised, the dataset files read), ``datasets`` (the
files ``keep_datasets`` wrote, by name), ``attempts`` (a resumed run's attempts) and
``cluster`` (where the run ran: executor, parallelism, Ray address, each pooled node's
replicas and chunks per location, re-runs, lost replicas, warnings: ``RunSummary.cluster``)."""


_OPENED: dict[str, tuple[int, int, int, int]] = {}
"""Store files as this process left them (device, inode, size, mtime): while a file stays so
(no other process wrote it since), its records are journaled."""


_SETTLE_TRIES = 3
"""Readings of a run that looks dead while the journal has new entries: a run journals its
last record without the store's lock and then lets its own lock go, so a reading that folded
the journal just before that sees a dead run; read again, with that record folded in."""


_COLUMNS = {
    "runs": "(run_id, started_at, finished_at, status, seconds, source, executor, host, pid, "
    "livecalc_version, python_version, numpy_version, numba_version, config_path, config_hash, "
    "config_json, error, overrides_json, summary_path, report_path, resumed)",
    "run_nodes": "(run_id, position, node_id, engine_type, status, seconds, chunks, rows, "
    "records, error, outputs_json, reused_chunks)",
}
"""The columns ``_rows`` fills, where they are not all of the table's, in order."""

_ROWS_PER_INSERT = 200


class StoreLockedError(ConfigurationError):
    """Another process held the store past the lock timeout."""


def utc_now() -> datetime:
    """The current time in UTC, without tzinfo (the store's TIMESTAMP columns are UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


class RunStore:
    """The run store at ``path`` (a folder holding runs.duckdb, or the .duckdb file itself)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        lock_timeout_seconds: float = 60.0,
        schema_version: int = SCHEMA_VERSION,
    ) -> None:
        self.file = store_file(path)
        self.lock_timeout_seconds = lock_timeout_seconds
        # Tests build older stores by stopping the migrations early.
        self._target = schema_version
        self.journal = Journal(journal_folder(self.file))

    # -- connection ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self, timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """The store open under its lock, migrated, with the journal folded in."""
        self.file.parent.mkdir(parents=True, exist_ok=True)
        wait = self.lock_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._process_lock(deadline):
            with self._open(deadline) as con:
                if self._target == SCHEMA_VERSION:
                    self._fold(con)
                yield con
            _OPENED[str(self.file)] = self._identity()

    def _identity(self) -> tuple[int, int, int, int]:
        try:
            st = self.file.stat()
        except OSError:
            return (0, 0, 0, 0)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _unchanged(self) -> bool:
        """Whether this process opened the store last (so it knows it is readable, and of
        the schema it writes)."""
        return _OPENED.get(str(self.file)) == self._identity()

    def _fold(self, con: duckdb.DuckDBPyConnection) -> None:
        """Write the journal's records in one transaction, then remove them."""
        entries = self.journal.entries()
        if not entries:
            return
        records = [r for r in map(self.journal.read, entries) if r is not None]
        self._write(con, records)
        # A crash here folds the same records again next time: each replaces its run.
        self.journal.remove(entries)
        _log.debug("store_journal_folded", store=str(self.file), records=len(records))

    def fold(self) -> None:
        """Write the journal's records into the DuckDB file now, so that a reader opening
        the file itself (DuckDB's CLI, Dagster's DuckDB resource) sees every record so far."""
        with self._connect():
            pass

    def _sync_later(self) -> None:
        """Flush the journal's new entries to disk (the background folder's call)."""
        try:
            self.journal.sync()
        except OSError as exc:  # the entry is still there for this process's fold
            _log.warning("store_journal_sync_failed", store=str(self.file), error=str(exc))

    def _fold_later(self, timeout: float | None) -> None:
        """Fold the journal now (the background folder's and the exit's call); failures are
        logged, the records stay journaled for the next opening."""
        try:
            with self._connect(timeout):
                pass
        except Exception as exc:  # a background fold must not raise: the journal keeps all
            _log.warning("store_fold_failed", store=str(self.file), error=str(exc))

    @contextlib.contextmanager
    def _process_lock(self, deadline: float) -> Iterator[None]:
        """An exclusive flock on ``runs.duckdb.lock`` for the whole open-use-close."""
        try:
            import fcntl
        except ImportError:  # no flock (Windows): DuckDB's own lock only
            yield
            return
        fd = os.open(self.file.with_name(self.file.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            wait = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._locked() from None
                    time.sleep(wait * (0.5 + random.random()))
                    wait = min(wait * 2, 0.25)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _locked(self) -> StoreLockedError:
        return StoreLockedError(
            f"run store {self.file}: still locked by another process after "
            f"{self.lock_timeout_seconds:.0f} s; try again when it has finished"
        )

    @contextlib.contextmanager
    def _open(self, deadline: float) -> Iterator[duckdb.DuckDBPyConnection]:
        import duckdb

        wait = 0.01
        while True:
            try:
                con = duckdb.connect(str(self.file))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise self._unreadable(exc) from None
                if time.monotonic() >= deadline:
                    raise self._locked() from None
                # Jitter: two processes that collided must not retry in lock-step.
                time.sleep(wait * (0.5 + random.random()))
                wait = min(wait * 2, 0.5)
            except duckdb.Error as exc:
                raise self._unreadable(exc) from None
        try:
            self._migrate(con)
            yield con
        finally:
            con.close()

    def _unreadable(self, exc: Exception) -> ConfigurationError:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ConfigurationError(
            f"run store {self.file}: cannot be read as a DuckDB database ({first}); move it "
            "aside (the next run creates a new store), or choose another with --store DIR"
        )

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        import duckdb

        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row is not None else 0
        except duckdb.CatalogException:
            version = 0  # a new, empty database: no meta table yet
        except (duckdb.Error, ValueError) as exc:
            raise self._unreadable(exc) from None
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"run store {self.file}: schema version {version} was written by a newer "
                f"LiveCalc (this one reads up to {SCHEMA_VERSION}); upgrade LiveCalc, or "
                "choose another store with --store DIR"
            )
        if version >= self._target:
            return
        con.execute("BEGIN TRANSACTION")
        try:
            for step in range(version, self._target):
                con.execute(MIGRATIONS[step])
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(self._target)]
            )
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            if version == 0:  # tables of another program where LiveCalc's would go
                raise ConfigurationError(
                    f"run store {self.file}: a DuckDB database that is not a LiveCalc run "
                    f"store ({str(exc).splitlines()[0]}); choose another with --store DIR"
                ) from None
            raise self._unreadable(exc) from None
        except BaseException:
            con.execute("ROLLBACK")
            raise
        _log.info("store_migrated", store=str(self.file), from_version=version, to=self._target)

    def schema_version(self) -> int:
        """The store's schema version (the file is created and migrated when needed)."""
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return int(row[0]) if row is not None else 0

    # -- writing ------------------------------------------------------------------------------

    def record(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the run ``record["run_id"]`` with everything it holds.

        A record is written into the store directly when this process has not opened it
        yet, or another process has written it since (so an unreadable store, or one a newer
        LiveCalc migrated, is reported here); otherwise it goes to the journal, which the
        next opening of the store, in any process, folds in first.

        A string that is not valid Unicode (a lone surrogate: a path of a folder whose name
        is not UTF-8) is stored with the surrogate written ``\\udcff``: DuckDB refuses it,
        and the run's record must not be lost for a name.

        Raises:
            ConfigurationError: the store cannot be read or is locked past the timeout.
            OSError: the journal cannot be written.
        """
        record = _storable(record)
        if self._target != SCHEMA_VERSION or not self._unchanged():
            with self._connect() as con:
                self._write(con, [record])
            return
        self.journal.append(record)
        FOLDER.schedule(str(self.file), self._fold_later, self._sync_later)

    def _write(self, con: duckdb.DuckDBPyConnection, records: builtins.list[Any]) -> None:
        """Insert or replace each record's run, in order, in one transaction."""
        # Each record replaces its run's earlier one: only the last of each run is written.
        latest = {str(r["run_id"]): r for r in records}
        con.execute("BEGIN TRANSACTION")
        try:
            if len(latest) == 1:
                self._delete(con, next(iter(latest)))
            else:
                for table in ("runs", *_CHILD_TABLES):
                    con.execute(
                        f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?))", [list(latest)]
                    )
            rows: dict[str, list[list[Any]]] = {}
            for run_id, record in latest.items():
                for table, values in self._rows(run_id, record).items():
                    rows.setdefault(table, []).extend(values)
            self._insert_rows(con, rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _rows(self, run_id: str, r: Mapping[str, Any]) -> dict[str, list[list[Any]]]:
        """A record's rows, by table (the columns of ``_COLUMNS``, or all in order)."""
        prov = r.get("provenance") or {}
        ver = prov.get("versions") or {}
        return {
            "runs": [
                [
                    run_id,
                    _timestamp(r.get("started_at")),
                    _timestamp(r.get("finished_at")),
                    r.get("status"),
                    r.get("seconds"),
                    r.get("source"),
                    prov.get("executor"),
                    prov.get("host"),
                    prov.get("pid"),
                    ver.get("livecalc"),
                    ver.get("python"),
                    ver.get("numpy"),
                    ver.get("numba"),
                    prov.get("config_path"),
                    prov.get("config_hash"),
                    json.dumps(prov.get("config")),
                    r.get("error"),
                    json.dumps(prov.get("overrides", [])),
                    r.get("summary_path"),
                    r.get("report_path"),
                    int(r.get("resumed", 0)),
                ]
            ],
            "run_inputs": [
                [run_id, i["path"], i["sha256"], i["size_bytes"]] for i in prov.get("inputs", [])
            ],
            "run_assumptions": [
                [run_id, a["reference"], a.get("name"), a.get("version")]
                for a in prov.get("assumptions", [])
            ],
            "run_nodes": [
                [
                    run_id,
                    pos,
                    n["node_id"],
                    n.get("engine_type"),
                    n.get("status"),
                    n.get("seconds"),
                    n.get("chunks"),
                    n.get("rows_processed"),
                    n.get("records"),
                    n.get("error"),
                    json.dumps(n.get("outputs") or {}),
                    n.get("reused_chunks", 0),
                ]
                for pos, n in enumerate(r.get("nodes", []))
            ],
            "run_metrics": [
                [run_id, node_id, name, value]
                for node_id, metrics in (r.get("metrics") or {}).items()
                for name, value in metrics.items()
            ],
            "run_checks": [
                [
                    run_id,
                    c["name"],
                    c["kind"],
                    c["severity"],
                    c["passed"],
                    _text(c.get("value")),
                    _text(c.get("threshold")),
                    c.get("message"),
                    c.get("description"),
                ]
                for c in r.get("checks", [])
            ],
            "run_outputs": [
                [run_id, o["name"], o["path"], o.get("sha256"), o.get("size_bytes")]
                for o in r.get("outputs", [])
            ],
            "run_sla": [
                [run_id, s["target"], s["limit_seconds"], s["seconds"], s["breached"]]
                for s in r.get("sla", [])
            ],
            "run_artifacts": [
                [run_id, kind, json.dumps(data)] for kind, data in (r.get("charts") or {}).items()
            ]
            # A run of some nodes, and the datasets a run kept: beside the charts' data.
            + [[run_id, kind, json.dumps(r[kind])] for kind in _RECORD_ARTIFACTS if r.get(kind)],
        }

    def _insert_rows(self, con: duckdb.DuckDBPyConnection, rows: Mapping[str, Any]) -> None:
        """Insert rows by table, a few hundred per statement: DuckDB's executemany runs one
        statement per row, and a fold of many records would pay that per row."""
        for table, values in rows.items():
            for start in range(0, len(values), _ROWS_PER_INSERT):
                part = values[start : start + _ROWS_PER_INSERT]
                marks = "(" + ", ".join("?" * len(part[0])) + ")"
                con.execute(
                    f"INSERT INTO {table} {_COLUMNS.get(table, '')} VALUES "
                    + ", ".join([marks] * len(part)),
                    [v for row in part for v in row],
                )

    def _delete(self, con: duckdb.DuckDBPyConnection, run_id: str) -> int:
        found = con.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()
        # A run's first record (status running) has no child rows: nothing more to delete.
        tables = ("runs", *_CHILD_TABLES) if found is not None and found[0] else ()
        for table in tables:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        return int(found[0]) if found is not None else 0

    def delete(self, run_id: str) -> bool:
        """Remove a run's record; whether there was one.

        Raises:
            RunLockedError: the run is running (its pid and host named).
        """
        run_id = run_id_of(run_id)
        with self._connect() as con:
            owner = owner_of(self._runs_folder(), run_id)
            if owner is not None and owner.alive:
                raise RunLockedError(
                    f"run {run_id!r} is running ({owner.describe()}); delete it once it has "
                    "ended (or stop that process)"
                )
            con.execute("BEGIN TRANSACTION")
            found = self._delete(con, run_id)
            con.execute("COMMIT")
        return found > 0

    # -- reading ------------------------------------------------------------------------------

    def list(self, limit: int | None = None, status: str | None = None) -> pd.DataFrame:
        """Runs, newest first: id, times, status, seconds, source, host, config hash..."""
        sql = (
            "SELECT run_id, started_at, finished_at, status, seconds, source, executor, host, "
            "config_path, config_hash, livecalc_version, resumed, "
            "(SELECT count(*) FROM run_checks c WHERE c.run_id = r.run_id AND NOT c.passed) "
            "AS failed_checks, "
            "(SELECT count(*) FROM run_checks c WHERE c.run_id = r.run_id) AS checks, "
            "(SELECT count(*) FROM run_sla s WHERE s.run_id = r.run_id AND s.breached) "
            "AS sla_breaches FROM runs r"
        )
        params: list[Any] = []
        if status is not None:
            # A dead run is a running record whose owner is gone.
            sql += " WHERE status = ?"
            params.append("running" if status == "dead" else status)
        sql += " ORDER BY started_at DESC, run_id"
        if limit is not None and status not in ("running", "dead"):
            sql += f" LIMIT {int(limit)}"
        for _ in range(_SETTLE_TRIES):
            with self._connect() as con:
                frame = con.execute(sql, params).df()
                # Inside the store's lock: a run cannot write its last record into the store
                # (and let its own lock go) between this read and the look at its lock.
                frame = _with_liveness(frame, self._runs_folder())
            if "dead" not in set(frame["status"]) or not self.journal.entries():
                break
        if status in ("running", "dead"):
            frame = frame[frame["status"] == status].reset_index(drop=True)
            if limit is not None:
                frame = frame.head(int(limit))
        return frame

    def _runs_folder(self) -> Path:
        """The run folders beside the store, where runs keep their locks."""
        return self.file.parent / "runs"

    def run_ids(self) -> builtins.list[str]:
        """Every recorded run id, newest first."""
        with self._connect() as con:
            rows = con.execute("SELECT run_id FROM runs ORDER BY started_at DESC").fetchall()
        return [str(r[0]) for r in rows]

    def get(self, run_id: str, *, min_prefix: int = 1) -> dict[str, Any]:
        """The record of one run (a unique prefix of its id is enough: ``min_prefix``
        characters at least). A ``running`` record whose owner is gone comes back ``dead``,
        with ``owner``, ``resumable`` and ``liveness`` (see ``livecalc.ops.liveness``).

        Raises:
            ConfigurationError: no such run, or the prefix names several.
        """
        run_id = run_id_of(run_id, "run id (or prefix)")
        for _ in range(_SETTLE_TRIES):
            record = self._get(run_id, min_prefix)
            if record["status"] != "dead" or not self.journal.entries():
                break
        return record

    def _get(self, run_id: str, min_prefix: int) -> dict[str, Any]:
        with self._connect() as con:
            ids = [
                str(r[0])
                for r in con.execute(
                    "SELECT run_id FROM runs WHERE starts_with(run_id, ?)", [run_id]
                ).fetchall()
            ]
            if run_id in ids:
                ids = [run_id]
            elif len(run_id) < min_prefix:
                raise ConfigurationError(
                    f"run {run_id!r}: a prefix of {len(run_id)} characters is too short here; "
                    f"give at least {min_prefix} characters of the run id"
                )
            if len(ids) != 1:
                problem = "matches no run" if not ids else f"matches {len(ids)} runs"
                raise ConfigurationError(
                    f"run {run_id!r} {problem} in {self.file}; see `livecalc runs list`"
                )
            return with_liveness(self._runs_folder(), self._read(con, ids[0]))

    def _read(self, con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
        def rows(sql: str) -> list[dict[str, Any]]:
            cur = con.execute(sql, [run_id])
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        run = rows("SELECT * FROM runs WHERE run_id = ?")[0]
        nodes = rows("SELECT * FROM run_nodes WHERE run_id = ? ORDER BY position")
        metrics: dict[str, dict[str, float]] = {}
        for m in rows("SELECT * FROM run_metrics WHERE run_id = ?"):
            metrics.setdefault(m["node_id"], {})[m["name"]] = m["value"]
        charts = {
            a["kind"]: json.loads(a["data_json"])
            for a in rows("SELECT * FROM run_artifacts WHERE run_id = ?")
        }
        extra = {kind: charts.pop(kind) for kind in _RECORD_ARTIFACTS if kind in charts}
        return {
            "run_id": run_id,
            "started_at": _iso(run["started_at"]),
            "finished_at": _iso(run["finished_at"]),
            "status": run["status"],
            "seconds": run["seconds"],
            "source": run["source"],
            "error": run["error"],
            "summary_path": run["summary_path"],
            "report_path": run["report_path"],
            "resumed": run["resumed"] or 0,
            "provenance": {
                "config_path": run["config_path"],
                "overrides": json.loads(run["overrides_json"] or "[]"),
                "config_hash": run["config_hash"],
                "config": json.loads(run["config_json"] or "null"),
                "inputs": _drop_id(rows("SELECT * FROM run_inputs WHERE run_id = ?")),
                "assumptions": _drop_id(rows("SELECT * FROM run_assumptions WHERE run_id = ?")),
                "versions": {
                    k: run[f"{k}_version"]
                    for k in ("livecalc", "python", "numpy", "numba")
                    if run[f"{k}_version"] is not None
                },
                "host": run["host"],
                "pid": run["pid"],
                "executor": run["executor"],
            },
            "nodes": [
                {
                    "node_id": n["node_id"],
                    "engine_type": n["engine_type"],
                    "status": n["status"],
                    "seconds": n["seconds"],
                    "chunks": n["chunks"],
                    "reused_chunks": n["reused_chunks"] or 0,
                    "rows_processed": n["rows"],
                    "records": n["records"],
                    "error": n["error"],
                    "outputs": json.loads(n["outputs_json"] or "{}"),
                }
                for n in nodes
            ],
            "metrics": metrics,
            "checks": [
                {
                    **_drop_id([c])[0],
                    "value": _untext(c["value"]),
                    "threshold": _untext(c["threshold"]),
                }
                for c in rows("SELECT * FROM run_checks WHERE run_id = ?")
            ],
            "sla": _drop_id(rows("SELECT * FROM run_sla WHERE run_id = ?")),
            "outputs": _drop_id(rows("SELECT * FROM run_outputs WHERE run_id = ?")),
            "charts": charts,
            **extra,
        }


def _with_liveness(frame: pd.DataFrame, runs_folder: Path) -> pd.DataFrame:
    """``list``'s frame with a ``resumable`` column, and ``dead`` for a running run whose
    owner is gone."""
    running = frame.index[frame["status"] == "running"]
    dead = dead_runs(runs_folder, [str(frame.at[i, "run_id"]) for i in running])
    frame["resumable"] = None
    for i in running:
        run_id = str(frame.at[i, "run_id"])
        if run_id in dead:
            frame.at[i, "status"] = "dead"
            frame.at[i, "resumable"] = dead[run_id]
    return frame


def _drop_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "run_id"} for r in rows]


def _timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value)).replace(tzinfo=None)


def _iso(value: Any) -> str | None:
    return value.isoformat() + "Z" if isinstance(value, datetime) else None


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _untext(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _storable(value: Any) -> Any:
    """``value`` with every string (keys too) made valid UTF-8: lone surrogates escaped."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, Mapping):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
