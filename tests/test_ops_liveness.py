"""Liveness and locking: a killed run shows as dead, a running one cannot be resumed, deleted or
collected, run ids are folder names, and a run refused for bad input is still recorded.

Every owner here is a real process: a run or a resume of the real ``livecalc`` command, or a
Python process holding a run's lock, frozen with SIGSTOP where a test needs it alive and
SIGKILLed where it needs it dead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import livecalc
from killable_pipeline import write_killable_pipeline
from livecalc.cli.app import app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.checkpoint import LocalCheckpointStore
from livecalc.ops.liveness import (
    LOCK_FILE,
    STALE_SECONDS,
    RunLock,
    RunLockedError,
    collect_garbage,
    owner_of,
)
from livecalc.ops.session import resume
from livecalc.ops.store import RunStore

PLUGIN = "livecalc.testing:register_testing_engines"
LIVECALC = str(Path(sys.executable).with_name("livecalc"))

HOLDER = """
import sys, time
from pathlib import Path
from livecalc.ops import liveness
liveness.HEARTBEAT_SECONDS = float(sys.argv[3])
lock = liveness.RunLock.acquire(Path(sys.argv[1]), sys.argv[2])
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Any]:
    """Start a process that claims a run id and keeps it; killed at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(root: Path, run_id: str, heartbeat: float = 5.0) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root), run_id, str(heartbeat)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert "ready" == proc.stdout.readline().strip()
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


def _kill(proc: subprocess.Popen[Any]) -> None:
    proc.kill()
    proc.wait(timeout=30)
    assert -signal.SIGKILL == proc.returncode


def _echo_config(tmp_path: Path, chunks: int = 4) -> Path:
    """A test_echo node over 100 policies in ``chunks`` chunks, every chunk checkpointed."""
    write_policies(tmp_path / "policies.parquet", generate_policies(100, seed=1))
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]}],
        "output": {"path": "out/{name}.parquet"},
        "run": {"chunk_size": 100 // chunks, "checkpoint_chunks": "all"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _list_json() -> dict[str, dict[str, Any]]:
    listed = _cli("runs", "list", "--json")
    assert 0 == listed.exit_code, listed.output
    return {r["run_id"]: r for r in json.loads(listed.output)}


def _run_frozen(config: Path, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`livecalc run config` frozen (SIGSTOP) once it is recorded and has kept a chunk."""
    proc = subprocess.Popen([LIVECALC, "run", str(config), "--no-progress"])
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
        for manifest in home.glob("runs/*/manifest.json"):
            try:
                done = json.loads(manifest.read_text())["nodes"]["projection"]["done"]
            except (ValueError, KeyError):
                continue
            if not done:
                continue
            os.kill(proc.pid, signal.SIGSTOP)  # so that it cannot finish while we look
            run_id = manifest.parent.name
            if run_id in _list_json():
                return proc, run_id
            os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    raise AssertionError("the run finished (or failed) before it could be stopped")


class TestRunLock:
    def test_a_live_owner_is_refused_by_name_and_a_killed_one_is_not(
        self, tmp_path: Path, holder: Any
    ) -> None:
        """While a process holds a run id, a claim fails naming its pid and host; once it is
        SIGKILLed, the claim succeeds and tells who held it before."""
        proc = holder(tmp_path, "run-1")

        with pytest.raises(RunLockedError) as refused:
            RunLock.acquire(tmp_path, "run-1", action="resume")
        alive = owner_of(tmp_path, "run-1")
        _kill(proc)
        dead = owner_of(tmp_path, "run-1")
        with RunLock.acquire(tmp_path, "run-1") as lock:
            previous = lock.previous

        assert f"pid {proc.pid} on host {socket.gethostname()}" in str(refused.value)
        assert alive is not None and alive.alive and proc.pid == alive.pid
        assert dead is not None and not dead.alive
        assert previous is not None and proc.pid == previous.pid
        # Released: the lock file and the folder it made are gone.
        assert not (tmp_path / "run-1").exists()

    def test_a_running_run_without_a_checkpoint_yet_is_refused_as_running(
        self, livecalc_home: Path, holder: Any
    ) -> None:
        """Resuming a run that is running but has kept no chunk yet says it is running (its
        pid), not that it has no checkpoint."""
        proc = holder(livecalc_home / "runs", "early-run")

        result = _cli("resume", "early-run")

        assert 2 == result.exit_code
        assert f"is running (pid {proc.pid}" in result.output
        _kill(proc)

    def test_the_owner_touches_its_lock_file_while_it_runs(
        self, tmp_path: Path, holder: Any
    ) -> None:
        """The owner's heartbeat: its lock file's mtime, made old, is fresh again within a few
        heartbeats (0.1 s here), which is what another host goes by."""
        proc = holder(tmp_path, "beating", heartbeat=0.1)
        lock_file = tmp_path / "beating" / LOCK_FILE
        old = time.time() - 3600
        os.utime(lock_file, (old, old))

        deadline = time.monotonic() + 60
        while lock_file.stat().st_mtime < old + 1 and time.monotonic() < deadline:
            time.sleep(0.05)

        assert time.time() - lock_file.stat().st_mtime < 60
        _kill(proc)

    def test_another_hosts_run_is_alive_while_its_heartbeat_is_fresh(self, tmp_path: Path) -> None:
        """A lock file of another host (whose flock this host may not see) counts as alive
        until its heartbeat is older than STALE_SECONDS."""
        (tmp_path / "r").mkdir()
        lock_file = tmp_path / "r" / LOCK_FILE
        lock_file.write_text(json.dumps({"host": "calc-elsewhere", "pid": 77}))

        fresh = owner_of(tmp_path, "r")
        with pytest.raises(RunLockedError, match="pid 77 on host calc-elsewhere"):
            RunLock.acquire(tmp_path, "r")
        old = time.time() - STALE_SECONDS - 5
        os.utime(lock_file, (old, old))
        stale = owner_of(tmp_path, "r")

        assert fresh is not None and fresh.alive
        assert stale is not None and not stale.alive
        RunLock.acquire(tmp_path, "r").release()


@pytest.mark.slow
class TestKilledRuns:
    def test_a_killed_run_is_dead_and_a_running_one_is_left_alone(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """A run frozen mid-way is `running`: resume, delete and gc refuse or skip it, naming
        its pid. SIGKILLed, `runs list` shows it dead and resumable at once; a second resume
        while the first runs is refused; the finished record keeps both attempts."""
        config = write_killable_pipeline(tmp_path)
        proc, run_id = _run_frozen(config, livecalc_home)
        try:
            listed_alive = _list_json()[run_id]
            resumed_alive = _cli("resume", run_id)
            deleted_alive = _cli("runs", "delete", run_id)
            gc_alive = _cli("runs", "gc", "--older-than", "0s")
            folder_kept = (livecalc_home / "runs" / run_id / "manifest.json").is_file()
        finally:
            _kill(proc)
        listed_dead = _list_json()[run_id]
        table = _cli("runs", "list")
        shown = _cli("runs", "show", run_id[:6])

        assert ("running", None) == (listed_alive["status"], listed_alive["resumable"])
        for refused in (resumed_alive, deleted_alive):
            assert 2 == refused.exit_code
            assert f"is running (pid {proc.pid} on host {socket.gethostname()}" in refused.output
        assert f"left 1 running: {run_id} (pid {proc.pid} on host" in gc_alive.output
        assert folder_kept
        assert ("dead", True) == (listed_dead["status"], listed_dead["resumable"])
        assert "dead" in table.output and "ok" not in table.output
        assert f"its process (pid {proc.pid} on host" in shown.output
        assert f"livecalc resume {run_id}" in shown.output

        first = subprocess.Popen([LIVECALC, "resume", run_id, "--no-progress"])
        try:
            lock_file = livecalc_home / "runs" / run_id / LOCK_FILE
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                owner = owner_of(livecalc_home / "runs", run_id)
                if owner is not None and owner.pid == first.pid:
                    break
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGSTOP)
            second = _cli("resume", run_id)
            os.kill(first.pid, signal.SIGCONT)
            assert 0 == first.wait(timeout=240)
        finally:
            if first.poll() is None:
                first.kill()
        record = RunStore().get(run_id)

        assert 2 == second.exit_code
        assert f"is running (pid {first.pid}" in second.output
        assert ("succeeded", 1) == (record["status"], record["resumed"])
        assert listed_dead["started_at"].startswith(record["started_at"][:19])
        assert ["killed", "succeeded"] == [a["status"] for a in record["attempts"]]
        assert [proc.pid, first.pid] == [a["pid"] for a in record["attempts"]]
        assert not lock_file.exists()


class TestFinishedBeforeItsRecord:
    def test_resume_completes_the_record_of_a_run_killed_after_its_checkpoint_ended(
        self, tmp_path: Path
    ) -> None:
        """Killed between its checkpoint's end and its final record, a run's record stays
        `running`: resume writes the final record (exit 0) instead of "nothing to resume"."""
        result = livecalc.run(_echo_config(tmp_path))
        store = RunStore()
        final = store.get(result.run_id)
        # What the kill leaves: the running record, and a checkpoint marked complete.
        store.record({**final, "status": "running", "finished_at": None, "seconds": None})

        listed = _list_json()[result.run_id]
        dead_only = _cli("runs", "list", "--status", "dead", "--json")
        completed = _cli("resume", result.run_id)
        record = store.get(result.run_id)
        again = _cli("resume", result.run_id)

        assert ("dead", True) == (listed["status"], listed["resumable"])
        assert [result.run_id] == [r["run_id"] for r in json.loads(dead_only.output)]
        assert 0 == completed.exit_code, completed.output
        assert "record is now complete" in completed.output
        assert ("succeeded", final["finished_at"]) == (record["status"], record["finished_at"])
        assert final["outputs"] == record["outputs"]
        assert 2 == again.exit_code
        assert "nothing to resume" in again.output


HOSTILE_IDS = [
    "/srv/other/folder",
    "../../x",
    "a/b",
    ".hidden",
    "",
    "a\x00b",
    "\ud800",
    "x" * 129,
    "run id",
    "..",
]


class TestRunIds:
    @pytest.mark.parametrize("run_id", HOSTILE_IDS, ids=repr)
    def test_a_path_like_run_id_is_refused_before_anything_is_written(
        self, run_id: str, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """livecalc.run and resume refuse a run id that is not a plain folder name, naming
        the rule; no store, no run folder, nothing else is written."""
        config = _echo_config(tmp_path)
        before = sorted(tmp_path.rglob("*"))

        with pytest.raises(ConfigurationError) as run_error:
            livecalc.run(config, run_id=run_id)
        with pytest.raises(ConfigurationError) as resume_error:
            resume(run_id)

        for error in (run_error, resume_error):
            assert "letters, digits" in str(error.value)
            assert 1 == len(str(error.value).splitlines())
        assert before == sorted(tmp_path.rglob("*"))
        assert [] == list(livecalc_home.iterdir())

    def test_an_absolute_run_id_no_longer_writes_or_deletes_there(self, tmp_path: Path) -> None:
        """The run id "/abs/folder" once wrote a manifest there and, on success, deleted its
        sub-folders named like the config's nodes: now it is refused and the folder stays."""
        config = _echo_config(tmp_path)
        victim = tmp_path / "victim"
        (victim / "a").mkdir(parents=True)
        (victim / "a" / "precious.txt").write_text("keep me")

        with pytest.raises(ConfigurationError):
            livecalc.run(config, run_id=str(victim))

        assert ["a/precious.txt"] == [
            str(p.relative_to(victim)) for p in victim.rglob("*") if p.is_file()
        ]

    def test_resume_takes_a_unique_prefix_and_refuses_an_ambiguous_one(
        self, tmp_path: Path
    ) -> None:
        """`livecalc resume PREFIX` finds the one run it names; a prefix of two runs exits 2
        naming both."""
        raw = json.loads(_echo_config(tmp_path).read_text())
        raw["engines"].append(
            {
                "id": "b",
                "type": "test_fail_n",
                "config": {"n": 99},
                "inputs": ["a_out"],
                "outputs": ["b_out"],
            }
        )
        config = tmp_path / "failing.json"
        config.write_text(json.dumps(raw))
        livecalc.run(config, run_id="nightly-a1")
        livecalc.run(config, run_id="nightly-b2")

        ambiguous = _cli("resume", "nightly")
        unique = _cli("resume", "nightly-b")
        record = RunStore().get("nightly-b2")
        other = RunStore().get("nightly-a1")

        assert 2 == ambiguous.exit_code
        assert "matches 2 runs (nightly-a1, nightly-b2)" in ambiguous.output
        assert 1 == unique.exit_code  # the resume ran, and node b failed again
        assert (1, ["failed", "failed"]) == (
            record["resumed"],
            [a["status"] for a in record["attempts"]],
        )
        assert 0 == other["resumed"]


class TestGc:
    def test_gc_ages_by_the_newest_file_and_leaves_what_is_not_a_run_folder(
        self, tmp_path: Path, livecalc_home: Path, holder: Any
    ) -> None:
        """Of a month-old checkpoint, a run whose manifest is old but whose kept dataset is
        new, a run still running, a foreign folder and a stray file, `runs gc --older-than
        7d` removes only the old checkpoint, and exits 0."""
        runs = livecalc_home / "runs"
        store = LocalCheckpointStore(runs)
        month_ago = time.time() - 30 * 86400
        for run_id in ("old", "kept", "busy"):
            store.put(f"{run_id}/manifest.json", json.dumps({"updated_at": month_ago}).encode())
            for path in (runs / run_id, runs / run_id / "manifest.json"):
                os.utime(path, (month_ago, month_ago))
        (runs / "kept" / "datasets").mkdir()
        (runs / "kept" / "datasets" / "scenarios.parquet").write_bytes(b"new")
        proc = holder(runs, "busy")
        os.utime(runs / "busy" / LOCK_FILE, (month_ago, month_ago))
        (runs / "experiment-2025").mkdir()
        (runs / "experiment-2025" / "notes.txt").write_text("not LiveCalc's")
        (runs / "stray.txt").write_text("x")

        result = _cli("runs", "gc", "--older-than", "7d")
        everything = collect_garbage(store, 0.0)

        assert 0 == result.exit_code, result.output
        assert "removed 1 checkpoints: old" in result.output
        assert f"left 1 running: busy (pid {proc.pid} on host {socket.gethostname()}" in (
            result.output
        )
        assert (["kept"], ["busy"]) == (everything.removed, everything.running)
        assert ["busy", "experiment-2025", "stray.txt"] == sorted(p.name for p in runs.iterdir())
        _kill(proc)


class TestDelete:
    def test_delete_refuses_an_empty_id_and_a_short_prefix(self, tmp_path: Path) -> None:
        """`runs delete ""` (an unset shell variable) and a 3-character prefix are refused
        (exit 2) and the run stays; 4 characters delete it."""
        run_id = livecalc.run(_echo_config(tmp_path)).run_id

        empty = _cli("runs", "delete", "")
        short = _cli("runs", "delete", run_id[:3])
        kept = RunStore().run_ids()
        deleted = _cli("runs", "delete", run_id[:4])

        assert (2, 2) == (empty.exit_code, short.exit_code)
        assert "at least 4 characters" in short.output
        assert [run_id] == kept
        assert 0 == deleted.exit_code
        assert [] == RunStore().run_ids()


class TestRefusedRunsAreRecorded:
    def test_a_missing_input_file_is_recorded_as_failed_and_alerted(self, tmp_path: Path) -> None:
        """A run whose input file is missing exits 2, is recorded as failed with the error
        (its checks shown as not run), and its failure alert is sent."""
        config = _echo_config(tmp_path)
        raw = json.loads(config.read_text())
        sink = tmp_path / "alert.json"
        copy = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"
        raw["alerts"] = [{"type": "command", "argv": [sys.executable, "-c", copy, str(sink)]}]
        config.write_text(json.dumps(raw))
        (tmp_path / "policies.parquet").unlink()

        result = _cli("run", str(config), "--no-progress")
        (record,) = _list_json().values()
        table = _cli("runs", "list")
        alert = json.loads(sink.read_text())

        assert 2 == result.exit_code
        assert ("failed", 0) == (record["status"], record["checks"])
        assert "policies.parquet" in RunStore().get(record["run_id"])["error"]
        assert "ok" not in table.output
        assert ("failed", ["failure"]) == (alert["status"], alert["events"])
        assert "policies.parquet" in alert["error"]
