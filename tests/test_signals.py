"""Stopping a real ``livecalc run``: Ctrl-C, SIGTERM and SIGKILL, and what each leaves behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from livecalc.io.generate import generate_policies, write_policies
from livecalc.runtime.leftovers import SHM_FOLDER, owner_tag, pid_alive

LIVECALC = str(Path(sys.executable).with_name("livecalc"))


def _config(folder: Path, seconds: float, executor: str = "processes") -> Path:
    """Policies and a one-node config whose engine sleeps ``seconds`` per chunk of 10."""
    write_policies(folder / "policies.parquet", generate_policies(200, seed=5))
    config = {
        "plugins": ["livecalc.testing:register_testing_engines"],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "a",
                "type": "test_sleep",
                "config": {"seconds": seconds},
                "inputs": ["policies"],
                "outputs": ["x"],
            }
        ],
        "output": {"path": "out/x.parquet"},
        "run": {"executor": executor, "chunk_size": 10},
    }
    (folder / "out").mkdir()
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


def _start(config: Path, *options: str) -> subprocess.Popen[str]:
    """``livecalc run`` in its own process group, with Ctrl-C's default action restored.

    A shell starts background jobs with SIGINT ignored, and Python keeps it ignored: the
    test must not depend on how pytest itself was started.
    """
    return subprocess.Popen(
        [LIVECALC, "run", str(config), "--no-progress", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _workers(pid: int) -> list[int]:
    """The worker processes (spawned children) of ``pid``."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    workers = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(int(child))
    return workers


def _segments(pid: int) -> list[Path]:
    # The run is started from this process, in its pid namespace: it has this owner tag.
    return sorted(SHM_FOLDER.glob(f"livecalc_{owner_tag()}_{pid}_*"))


def _temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".x.parquet.*.tmp"))


def _wait_for(condition: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def process() -> Iterator[list[subprocess.Popen[str]]]:
    """Started runs; any still running at the end is killed with its process group."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


class TestInterrupt:
    """Ctrl-C and SIGTERM stop a run under worker processes at once, leaving nothing."""

    def test_ctrl_c_kills_workers_and_exits_130(
        self, tmp_path: Path, process: list[subprocess.Popen[str]]
    ) -> None:
        """SIGINT during a 60 s chunk: exit 130 within seconds, no worker, no segment left."""
        proc = _start(_config(tmp_path, seconds=60.0))
        process.append(proc)
        _wait_for(lambda: _workers(proc.pid), "a worker process")
        workers = _workers(proc.pid)
        time.sleep(1.0)  # the chunk is running in the worker

        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=45)
        seconds = time.monotonic() - start

        assert 130 == proc.returncode, stderr
        assert seconds < 40, f"took {seconds:.1f} s: the chunk was waited for"
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert [] == [w for w in workers if pid_alive(w)]
        assert [] == _segments(proc.pid)
        assert [] == list((tmp_path / "out").iterdir())

    def test_sigterm_removes_the_temp_file_and_exits_143(
        self, tmp_path: Path, process: list[subprocess.Popen[str]]
    ) -> None:
        """SIGTERM while results stream to a temp file: exit 143, no temp file, no output."""
        proc = _start(_config(tmp_path, seconds=0.5))
        process.append(proc)
        _wait_for(lambda: _temp_files(tmp_path / "out"), "the streamed temp file")
        workers = _workers(proc.pid)

        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=45)

        assert 143 == proc.returncode, stderr
        assert "terminated" in stderr and "Traceback" not in stderr
        assert [] == list((tmp_path / "out").iterdir())
        assert [] == [w for w in workers if pid_alive(w)]
        assert [] == _segments(proc.pid)


class TestSweep:
    """What a SIGKILLed run leaves is removed by the next run; a live process's is kept."""

    def test_next_run_sweeps_a_killed_runs_segments_and_temp_files(
        self, tmp_path: Path, process: list[subprocess.Popen[str]]
    ) -> None:
        """After kill -9 of the process group, the next run removes the dead pid's leftovers."""
        config = _config(tmp_path, seconds=0.5)
        proc = _start(config)
        process.append(proc)
        _wait_for(lambda: _temp_files(tmp_path / "out"), "the streamed temp file")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        _wait_for(lambda: not _workers(proc.pid), "the workers to die")
        left_segments, left_temp = _segments(proc.pid), _temp_files(tmp_path / "out")
        # A live process's (this test's) leftovers-to-be must survive the sweep.
        tag, pid = owner_tag(), os.getpid()
        live_segment = SHM_FOLDER / f"livecalc_{tag}_{pid}_0123456789ab"
        live_temp = tmp_path / "out" / f".x.parquet.livecalc-{tag}-{pid}-0123456789ab.tmp"
        live_segment.write_bytes(b"x")
        live_temp.write_bytes(b"x")
        try:
            again = subprocess.run(
                [LIVECALC, "run", str(config), "--no-progress", "--set", "a.seconds=0"],
                capture_output=True,
                text=True,
                timeout=240,
                check=False,
            )

            kept = (live_segment.exists(), live_temp.exists())
        finally:
            live_segment.unlink(missing_ok=True)
            live_temp.unlink(missing_ok=True)

        assert left_segments and left_temp, "the killed run left nothing to sweep"
        assert 0 == again.returncode, again.stderr
        assert [] == _segments(proc.pid)
        assert [] == [p for p in left_temp if p.exists()]
        assert (True, True) == kept
        assert (tmp_path / "out" / "x.parquet").is_file()
