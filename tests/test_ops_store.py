"""The run store: every run recorded in DuckDB, with provenance; concurrent writers; bad stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import capture_logs
from livecalc.ops.provenance import PROVENANCE_KEY, file_sha256
from livecalc.ops.store import SCHEMA_VERSION, RunStore

PLUGIN = "livecalc.testing:register_testing_engines"


def _config(tmp_path: Path, **extra: Any) -> Path:
    if not (tmp_path / "policies.parquet").exists():
        write_policies(tmp_path / "policies.parquet", generate_policies(120, seed=3))
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
        ],
        "output": {"path": "out/a_out.parquet", "summary_path": "out/summary.json"},
        "run": {"chunk_size": 50},
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _livecalc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("livecalc")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


class TestRecord:
    def test_cli_run_is_recorded_with_provenance(self, tmp_path: Path, livecalc_home: Path) -> None:
        """A CLI run's record holds status, versions, config hash, inputs, nodes and outputs."""
        config = _config(tmp_path)

        result = _cli("run", str(config), "--no-progress")
        record = RunStore().get(RunStore().run_ids()[0])

        assert 0 == result.exit_code, result.output
        assert "succeeded" == record["status"]
        assert "cli" == record["source"]
        prov = record["provenance"]
        assert livecalc.__version__ == prov["versions"]["livecalc"]
        assert {"python", "numpy", "numba"} <= set(prov["versions"])
        assert 64 == len(prov["config_hash"])
        policies = tmp_path / "policies.parquet"
        assert [(str(policies), file_sha256(policies), policies.stat().st_size)] == [
            (i["path"], i["sha256"], i["size_bytes"]) for i in prov["inputs"]
        ]
        assert ["a"] == [n["node_id"] for n in record["nodes"]]
        assert 3 == record["nodes"][0]["chunks"]
        out = tmp_path / "out" / "a_out.parquet"
        assert [("a_out", str(out), file_sha256(out))] == [
            (o["name"], o["path"], o["sha256"]) for o in record["outputs"]
        ]
        assert (livecalc_home / "runs.duckdb").is_file()

    def test_provenance_in_summary_and_parquet_metadata(self, tmp_path: Path) -> None:
        """summary.json and the Parquet key-value metadata carry the same provenance."""
        config = _config(tmp_path)

        result = livecalc.run(config)
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        meta = pq.read_schema(tmp_path / "out" / "a_out.parquet").metadata

        assert result.success
        in_file = json.loads(meta[PROVENANCE_KEY.encode()])
        assert summary["provenance"]["config_hash"] == in_file["config_hash"]
        assert summary["provenance"]["inputs"] == in_file["inputs"]
        assert summary["outputs"][0]["sha256"] == file_sha256(tmp_path / "out" / "a_out.parquet")

    def test_set_overrides_are_in_the_config_as_run(self, tmp_path: Path) -> None:
        """The stored config is the one that ran, after --set, and its hash changes with it."""
        config = _config(tmp_path)

        _cli("run", str(config), "--no-progress")
        _cli("run", str(config), "--no-progress", "--set", "a.marker=7")
        newer, older = (RunStore().get(i) for i in RunStore().run_ids())

        assert 7 == newer["provenance"]["config"]["engines"][0]["config"]["marker"]
        assert ["a.marker=7"] == newer["provenance"]["overrides"]
        assert newer["provenance"]["config_hash"] != older["provenance"]["config_hash"]

    def test_no_store_records_nothing(self, tmp_path: Path, livecalc_home: Path) -> None:
        """--no-store and store=False leave no store behind."""
        config = _config(tmp_path)

        cli = _cli("run", str(config), "--no-progress", "--no-store")
        api = livecalc.run(config, store=False)

        assert 0 == cli.exit_code
        assert api.success
        assert not (livecalc_home / "runs.duckdb").exists()

    def test_store_folder_overrides_the_home(self, tmp_path: Path, livecalc_home: Path) -> None:
        """--store DIR and store=DIR record there, not in LIVECALC_HOME."""
        config = _config(tmp_path)

        _cli("run", str(config), "--no-progress", "--store", str(tmp_path / "s"))
        livecalc.run(config, store=tmp_path / "s")

        assert 2 == len(RunStore(tmp_path / "s").run_ids())
        assert not (livecalc_home / "runs.duckdb").exists()

    def test_failed_run_is_recorded_with_its_error(self, tmp_path: Path) -> None:
        """A run whose node fails is recorded as failed, with the node's error."""
        config = _config(tmp_path)
        raw = json.loads(config.read_text())
        raw["engines"][0] = {
            "id": "a", "type": "test_fail_n", "config": {"n": 5}, "inputs": ["policies"],
            "outputs": ["a_out"],
        }  # fmt: skip
        config.write_text(json.dumps(raw))

        result = _cli("run", str(config), "--no-progress")
        record = RunStore().get(RunStore().run_ids()[0])

        assert 1 == result.exit_code
        assert "failed" == record["status"]
        assert "planned failure" in record["nodes"][0]["error"]


class TestReading:
    def test_python_list_is_a_dataframe_and_get_a_record(self, tmp_path: Path) -> None:
        """livecalc.runs.list() is a pandas DataFrame; get() takes a unique id prefix."""
        config = _config(tmp_path)
        run_id = livecalc.run(config).run_id

        frame = livecalc.runs.list()
        record = livecalc.runs.get(run_id[:6])

        assert [run_id] == list(frame["run_id"])
        assert "api" == frame["source"][0]
        assert run_id == record["run_id"]

    def test_cli_list_show_json_and_delete(self, tmp_path: Path) -> None:
        """runs list/show --json give the records; runs delete removes one."""
        config = _config(tmp_path)
        first = livecalc.run(config).run_id
        second = livecalc.run(config).run_id

        listed = json.loads(_cli("runs", "list", "--json").output)
        shown = json.loads(_cli("runs", "show", first, "--json").output)
        deleted = _cli("runs", "delete", first)
        after = json.loads(_cli("runs", "list", "--json").output)

        assert {first, second} == {r["run_id"] for r in listed}
        assert first == shown["run_id"]
        assert 0 == deleted.exit_code
        assert [second] == [r["run_id"] for r in after]

    def test_unknown_run_is_a_clear_error(self) -> None:
        """runs show of an unknown id exits 2 with one line naming it."""
        result = _cli("runs", "show", "nosuchrun")

        assert 2 == result.exit_code
        assert "'nosuchrun' matches no run" in result.output

    def test_status_filter(self, tmp_path: Path) -> None:
        """runs list --status keeps only runs with that status."""
        config = _config(tmp_path)
        livecalc.run(config)

        ok = json.loads(_cli("runs", "list", "--json", "--status", "succeeded").output)
        failed = json.loads(_cli("runs", "list", "--json", "--status", "failed").output)

        assert (1, 0) == (len(ok), len(failed))

    def test_import_livecalc_does_not_load_duckdb(self) -> None:
        """import livecalc stays light: duckdb loads only when the store is used."""
        code = "import sys, livecalc; print('duckdb' in sys.modules)"

        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

        assert "False" == out.stdout.strip()


class TestSchema:
    def test_old_store_is_migrated_keeping_its_runs(self, tmp_path: Path) -> None:
        """A schema-1 store is migrated to the current schema; its runs are still listed."""
        old = RunStore(tmp_path, schema_version=1)
        assert 1 == old.schema_version()
        con = duckdb.connect(str(old.file))
        con.execute("INSERT INTO runs (run_id, status) VALUES ('oldrun', 'succeeded')")
        con.close()

        store = RunStore(tmp_path)

        assert SCHEMA_VERSION == store.schema_version()
        assert ["oldrun"] == list(store.list()["run_id"])
        assert "succeeded" == store.get("oldrun")["status"]

    def test_newer_schema_is_refused_and_outputs_kept(self, tmp_path: Path) -> None:
        """A store from a newer LiveCalc: exit 2 naming the file; the run's outputs exist."""
        config = _config(tmp_path)
        store = RunStore(tmp_path / "s")
        store.schema_version()
        con = duckdb.connect(str(store.file))
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        con.close()

        result = _cli("run", str(config), "--no-progress", "--store", str(tmp_path / "s"))

        assert 2 == result.exit_code
        assert str(store.file) in result.output
        assert "schema version 99" in result.output
        assert (tmp_path / "out" / "a_out.parquet").is_file()
        assert "Traceback" not in result.output

    def test_corrupt_store_is_refused_and_outputs_kept(self, tmp_path: Path) -> None:
        """A file that is not DuckDB: exit 2 naming it, no traceback, outputs written."""
        config = _config(tmp_path)
        bad = tmp_path / "s" / "runs.duckdb"
        bad.parent.mkdir()
        bad.write_bytes(os.urandom(4096))

        result = _livecalc("run", str(config), "--no-progress", "--store", str(bad.parent))

        assert 2 == result.returncode, result.stderr
        assert str(bad) in result.stderr
        assert "Traceback" not in result.stderr
        assert pq.read_table(tmp_path / "out" / "a_out.parquet").num_rows == 120

    def test_python_api_raises_configuration_error_for_corrupt_store(self, tmp_path: Path) -> None:
        """RunStore on a corrupt file raises ConfigurationError naming it."""
        bad = tmp_path / "runs.duckdb"
        bad.write_bytes(b"not a database" * 100)

        with pytest.raises(ConfigurationError, match=r"runs\.duckdb"):
            RunStore(bad).list()


_WRITER = """
import sys, time
from livecalc.ops.store import RunStore
store, tag, start = RunStore(sys.argv[1]), sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for i in range(int(sys.argv[4])):
    store.record({"run_id": f"{tag}-{i}", "status": "succeeded", "nodes": [
        {"node_id": "a", "status": "succeeded", "seconds": 0.1}]})
"""


class TestConcurrentWriters:
    def test_three_processes_writing_at_once_are_all_recorded(self, tmp_path: Path) -> None:
        """Three processes recording 40 runs each, from the same instant: all 120 are there.

        Without the store's own lock file, DuckDB alone lost about 1 record in 500 in this
        shape (a committed record missing afterwards, every process exiting 0)."""
        RunStore(tmp_path).schema_version()
        start = time.time() + 1.5
        tags = ("p1", "p2", "p3")
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(tmp_path), tag, str(start), "40"],
                stderr=subprocess.PIPE,
                text=True,
            )
            for tag in tags
        ]
        errors = [p.communicate(timeout=180)[1] for p in procs]

        assert [0, 0, 0] == [p.returncode for p in procs], errors
        ids = set(RunStore(tmp_path).run_ids())
        assert {f"{t}-{i}" for t in tags for i in range(40)} == ids

    def test_a_store_held_by_another_process_past_the_timeout_is_a_clear_error(
        self, tmp_path: Path
    ) -> None:
        """Another process holding runs.duckdb.lock: opening the store raises StoreLockedError
        naming the file and the wait, after lock_timeout_seconds, while a record of a process
        that has opened the store goes to the journal without waiting; once the other process
        lets go, the store works and holds the record."""
        import fcntl

        from livecalc.ops.store import StoreLockedError

        store = RunStore(tmp_path, lock_timeout_seconds=0.3)
        store.schema_version()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time\n"
                "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "print('held', flush=True)\n"
                "sys.stdin.read()\n",
                str(tmp_path / "runs.duckdb.lock"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and "held" == holder.stdout.readline().strip()
            with pytest.raises(StoreLockedError) as info:
                store.run_ids()
            store.record({"run_id": "r1", "status": "succeeded"})
        finally:
            holder.communicate("", timeout=30)

        assert str(tmp_path / "runs.duckdb") in str(info.value)
        assert "still locked by another process after 0 s" in str(info.value)
        store.record({"run_id": "r2", "status": "succeeded"})
        assert ["r1", "r2"] == sorted(store.run_ids())
        assert fcntl.LOCK_EX  # the lock the store takes

    def test_two_cli_runs_finishing_together_are_both_recorded(self, tmp_path: Path) -> None:
        """Two real `livecalc run` processes started together are both in the store."""
        config = _config(tmp_path)
        exe = Path(sys.executable).with_name("livecalc")
        procs = [
            subprocess.Popen(
                [str(exe), "run", str(config), "--no-progress", "--set", f"a.tag={i}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]

        assert [0, 0] == [p.returncode for p in procs], errors
        frame = RunStore().list()
        assert ["succeeded", "succeeded"] == list(frame["status"])


class TestDemoRuns:
    def test_list_shows_cli_api_and_demo_and_compare_shows_metrics(self, tmp_path: Path) -> None:
        """runs list shows CLI, API and demo runs; compare of two demo seeds shows metrics."""
        config = _config(tmp_path)
        _cli("run", str(config), "--no-progress")
        livecalc.run(config)
        for seed in (1, 2):
            out = tmp_path / f"demo{seed}"
            demo = _cli(
                "demo", "--out", str(out), "--policies", "300", "--seed", str(seed),
                "--no-progress",
            )  # fmt: skip
            assert 0 == demo.exit_code, demo.output
            assert f"report: {(out / 'report.html').resolve()}" in demo.output.replace("\n", "")
        listed = json.loads(_cli("runs", "list", "--json").output)
        demo_b, demo_a = (r["run_id"] for r in listed if r["source"] == "demo")

        compared = _cli("runs", "compare", demo_a, demo_b)
        diff = json.loads(_cli("runs", "compare", demo_a, demo_b, "--json").output)

        assert {"cli", "api", "demo"} == {r["source"] for r in listed}
        assert 0 == compared.exit_code, compared.output
        assert "solver.metrics.mean" in compared.output
        assert "engines[esg].config.seed" in compared.output
        mean = next(m for m in diff["metrics"] if m["metric"] == "solver.metrics.mean")
        assert mean["difference"] == mean["b"] - mean["a"] != 0
        assert mean["relative"] == mean["difference"] / abs(mean["a"])


_JOURNALING = """
import os, signal, sys
from livecalc.ops.store import RunStore
store = RunStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.record({"run_id": f"r{i}", "status": "succeeded", "seconds": 0.5,
                  "nodes": [{"node_id": "a", "status": "succeeded", "rows_processed": i}]})
print(len(store.journal.entries()), flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _journaling(folder: Path, records: int, end: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _JOURNALING, str(folder), str(records), end],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _stored_ids(file: Path) -> list[str]:
    """The run ids in the DuckDB file itself, journal not folded in."""
    con = duckdb.connect(str(file), read_only=True)
    try:
        return sorted(str(r[0]) for r in con.execute("SELECT run_id FROM runs").fetchall())
    finally:
        con.close()


class TestJournal:
    def test_records_of_a_killed_process_are_folded_in_by_the_next_reader(
        self, tmp_path: Path
    ) -> None:
        """A process killed (SIGKILL) after recording: the records it journaled (all but its
        first, which opened the store) are in the store at the next reading, numbers intact."""
        done = _journaling(tmp_path, 12, "kill")

        assert -9 == done.returncode, done.stderr
        assert "11" == done.stdout.strip()
        assert ["r0"] == _stored_ids(tmp_path / "runs.duckdb")
        store = RunStore(tmp_path)
        assert sorted(f"r{i}" for i in range(12)) == sorted(store.run_ids())
        record = store.get("r7")
        assert (0.5, 7) == (record["seconds"], record["nodes"][0]["rows_processed"])
        assert [] == store.journal.entries()

    def test_a_process_folds_its_journal_when_it_exits(self, tmp_path: Path) -> None:
        """A process that ends normally leaves every record in runs.duckdb itself (what the
        DuckDB CLI or Dagster's read-only resource sees) and an empty journal."""
        done = _journaling(tmp_path, 5, "exit")

        assert 0 == done.returncode, done.stderr
        assert "4" == done.stdout.strip()
        assert [f"r{i}" for i in range(5)] == _stored_ids(tmp_path / "runs.duckdb")
        assert [] == RunStore(tmp_path).journal.entries()

    def test_a_quiet_process_folds_its_journal_in_the_background(self, tmp_path: Path) -> None:
        """Once no run has recorded for FOLD_IDLE_SECONDS, the process folds its journal
        itself, without a reader."""
        from livecalc.ops._journal import FOLD_IDLE_SECONDS

        store = RunStore(tmp_path)
        store.record({"run_id": "first", "status": "succeeded"})
        store.record({"run_id": "second", "status": "succeeded"})
        journaled = len(store.journal.entries())
        deadline = time.monotonic() + FOLD_IDLE_SECONDS + 60
        while store.journal.entries() and time.monotonic() < deadline:
            time.sleep(0.1)

        assert 1 == journaled
        assert [] == store.journal.entries()
        assert ["first", "second"] == _stored_ids(store.file)

    def test_folding_the_same_entries_again_changes_nothing(self, tmp_path: Path) -> None:
        """A fold interrupted after its commit repeats itself: each record replaces its run,
        in writing order (running, then succeeded), so the store ends as before."""
        store = RunStore(tmp_path)
        store.schema_version()
        store.record({"run_id": "r", "status": "running"})
        store.record(
            {"run_id": "r", "status": "succeeded", "nodes": [{"node_id": "a", "seconds": 1.0}]}
        )
        kept = {p.name: p.read_bytes() for p in store.journal.entries()}
        first = store.get("r")
        for name, data in kept.items():
            (store.journal.folder / name).write_bytes(data)

        again = store.get("r")

        assert 2 == len(kept)
        assert "succeeded" == first["status"] == again["status"]
        assert first["nodes"] == again["nodes"]
        assert ["r"] == store.run_ids()

    def test_an_unreadable_entry_is_set_aside_and_the_rest_folded(self, tmp_path: Path) -> None:
        """A journal entry that is not a record is renamed .bad and logged; the others fold."""
        store = RunStore(tmp_path)
        store.schema_version()
        store.record({"run_id": "good", "status": "succeeded"})
        (store.journal.folder / "00000000000000000001-1-00000001.json").write_text("{trunc")

        with capture_logs() as logs:
            ids = store.run_ids()

        assert ["good"] == ids
        assert ["00000000000000000001-1-00000001.bad"] == [
            p.name for p in store.journal.folder.iterdir()
        ]
        assert ["store_journal_unreadable"] == [
            e["event"] for e in logs if e["log_level"] == "error"
        ]
