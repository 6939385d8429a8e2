"""Replica pools: a node's chunks over several engine replicas, identical to a sequential run."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import capture_logs
from livecalc.pipeline.api import run
from livecalc.pipeline.config import EngineNode, RunOptions
from livecalc.pipeline.executors import create_executor
from livecalc.pipeline.pool import replica_count
from pool_pipelines import outputs as _outputs
from pool_pipelines import projection_pipeline

PLUGIN = "livecalc.testing:register_testing_engines"
N_POLICIES = 300
CHUNK = 40  # 8 chunks, the last one short


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(N_POLICIES, seed=7))
    return path


def _projection_pipeline(out: Path) -> dict[str, Any]:
    return projection_pipeline(out, inner=6, seed=3, chunk_size=CHUNK)


class TestReplicaCount:
    def test_node_then_run_then_default(self) -> None:
        """A node's own parallelism wins over the run's, which wins over the default."""
        options = RunOptions(parallelism=3)

        assert (5, 3, 2) == (
            replica_count(EngineNode(id="a", type="x", parallelism=5), options, 2),
            replica_count(EngineNode(id="a", type="x"), options, 2),
            replica_count(EngineNode(id="a", type="x"), RunOptions(), 2),
        )

    def test_defaults_per_executor(self) -> None:
        """By default: 1 replica locally, one per CPU for processes."""

        assert (1, len(os.sched_getaffinity(0))) == (
            create_executor("local").default_parallelism(),
            create_executor("processes").default_parallelism(),
        )

    def test_parallelism_must_be_positive(self, tmp_path: Path, policies: Path) -> None:
        """parallelism=0 is refused before anything runs."""

        with pytest.raises(ConfigurationError, match="parallelism"):
            run(_projection_pipeline(tmp_path), base_dir=tmp_path, parallelism=0)


class TestBitIdentical:
    @pytest.mark.slow
    def test_local_processes_and_parallelism_agree(self, tmp_path: Path, policies: Path) -> None:
        """npv, detail (streamed to Parquet) and scenario totals are byte-identical whether
        chunks run locally, in one worker or over two worker replicas."""
        runs = {
            (executor, p): run(
                _projection_pipeline(tmp_path / f"{executor}{p}"),
                base_dir=tmp_path,
                executor=executor,
                parallelism=p,
            )
            for executor, p in [("local", 1), ("local", 2), ("processes", 1), ("processes", 2)]
        }

        baseline = _outputs(runs[("local", 1)])
        assert all(baseline == _outputs(r) for r in runs.values())
        assert 8 == runs[("processes", 2)].nodes["proj_detail"].chunks
        assert N_POLICIES == int(
            runs[("processes", 2)].records("scenario_totals")[0]["policy_count"]
        )

    def test_chunks_finishing_out_of_order_merge_in_order(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """When the first chunk finishes last, the merged records are still in chunk order."""
        raw = {
            "plugins": [PLUGIN],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "slow",
                    "type": "test_slow_chunk",
                    "config": {"seconds": 0.5, "policy_id": 1},
                    "inputs": ["policies"],
                    "outputs": ["out"],
                }
            ],
            "run": {"chunk_size": CHUNK},
        }

        with capture_logs() as logs:
            result = run(raw, base_dir=tmp_path, executor="local", parallelism=3)

        order = [e["chunk"] for e in logs if e["event"] == "chunk_done"]
        assert generate_policies(N_POLICIES, seed=7).records.tobytes() == (
            result.records("out").tobytes()
        )
        assert 0 != order[0]  # chunk 0 (holding policy 1) was not the first to finish


def _stall_pipeline(marker: Path, seconds: float, **node: Any) -> dict[str, Any]:
    """One echo node over 8 chunks whose chunk 0 stalls ``seconds`` once (pid in ``marker``)."""
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "echo",
                "type": "test_slow_chunk",
                "config": {"seconds": seconds, "policy_id": 1, "once_marker": str(marker)},
                "inputs": ["policies"],
                "outputs": ["out"],
                **node,
            }
        ],
        "run": {"chunk_size": CHUNK},
    }


def _stalled_pid(marker: Path, stop: threading.Event) -> int | None:
    while not stop.wait(0.05):
        text = marker.read_text() if marker.exists() else ""
        if text:
            return int(text)
    return None


class TestFaults:
    @pytest.mark.slow
    def test_killed_replica_chunk_reruns_once_and_counts_once(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """SIGKILL of the worker running a chunk: the chunk re-runs on a replica, the run
        succeeds, and every policy is counted exactly once."""
        marker = tmp_path / "stalled"
        stop = threading.Event()
        killed: list[int] = []

        def kill_the_stalled_worker() -> None:
            pid = _stalled_pid(marker, stop)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        killer = threading.Thread(target=kill_the_stalled_worker)
        killer.start()
        try:
            with capture_logs() as logs:
                result = run(
                    _stall_pipeline(marker, 120.0),
                    base_dir=tmp_path,
                    executor="processes",
                    parallelism=2,
                )
        finally:
            stop.set()
            killer.join()

        reruns = [e for e in logs if e["event"] == "chunk_rerun"]
        summary = result.summary.to_dict()
        (node,) = [n for n in summary["nodes"] if n["node_id"] == "echo"]
        assert result.success, result.summary.describe()
        assert 1 == len(killed)
        assert [(0, "replica_lost")] == [(e["chunk"], e["cause"]) for e in reruns]
        # The loss is on record, with where and when, and a warning of the run.
        (lost,) = node["pool"]["lost"]
        assert (f"pid:{killed[0]}", 0) == (lost["location"], lost["chunk"])
        assert lost["at"].endswith("Z")
        assert [f"echo: {result.summary.nodes['echo'].warnings[0]}"] == summary["warnings"]
        assert f"lost on pid:{killed[0]}" in summary["warnings"][0]
        assert 1 == node["pool"]["reruns_lost"]
        assert generate_policies(N_POLICIES, seed=7).records.tobytes() == (
            result.records("out").tobytes()
        )
        assert N_POLICIES == result.nodes["echo"].rows_processed

    @pytest.mark.slow
    def test_killed_worker_of_a_single_chunk_node_is_replaced(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """A node of one chunk (every policy in it) on a pool of 2: SIGKILL of the worker
        running it re-runs the chunk (replica_retries), and the run succeeds."""
        marker = tmp_path / "stalled"
        stop = threading.Event()
        killed: list[int] = []

        def kill_the_stalled_worker() -> None:
            pid = _stalled_pid(marker, stop)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        raw = _stall_pipeline(marker, 120.0)
        raw["run"]["chunk_size"] = N_POLICIES
        killer = threading.Thread(target=kill_the_stalled_worker)
        killer.start()
        try:
            with capture_logs() as logs:
                result = run(raw, base_dir=tmp_path, executor="processes", parallelism=2)
        finally:
            stop.set()
            killer.join()

        reruns = [(e["chunk"], e["cause"]) for e in logs if e["event"] == "chunk_rerun"]
        assert result.success, result.summary.describe()
        assert 1 == len(killed)
        assert [(0, "replica_lost")] == reruns
        assert 1 == result.nodes["echo"].chunks
        assert generate_policies(N_POLICIES, seed=7).records.tobytes() == (
            result.records("out").tobytes()
        )

    @pytest.mark.slow
    def test_timed_out_chunk_is_killed_and_retried(self, tmp_path: Path, policies: Path) -> None:
        """A chunk past timeout_seconds is killed and, with retries, re-run to success."""
        raw = _stall_pipeline(tmp_path / "stalled", 120.0, timeout_seconds=3.0, retries=1)

        with capture_logs() as logs:
            result = run(raw, base_dir=tmp_path, executor="processes", parallelism=2)

        reruns = [(e["chunk"], e["cause"]) for e in logs if e["event"] == "chunk_rerun"]
        assert result.success, result.summary.describe()
        assert [(0, "timeout")] == reruns
        assert generate_policies(N_POLICIES, seed=7).records.tobytes() == (
            result.records("out").tobytes()
        )

    @pytest.mark.slow
    def test_timed_out_chunk_fails_the_node_without_retries(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """Without retries, a chunk past its timeout fails the node (as a timeout)."""
        raw = _stall_pipeline(tmp_path / "stalled", 120.0, timeout_seconds=3.0)

        result = run(raw, base_dir=tmp_path, executor="processes", parallelism=2)

        assert "failed" == result.status["echo"]
        assert "EngineTimeoutError" == result.nodes["echo"].error_type

    @pytest.mark.slow
    def test_ctrl_c_stops_every_replica_at_once(self, tmp_path: Path, policies: Path) -> None:
        """SIGINT while every replica is busy for minutes: the run stops within seconds and
        leaves no worker behind."""
        import json
        import subprocess
        import sys
        import time

        (tmp_path / "run.json").write_text(json.dumps(_stall_pipeline(tmp_path / "m", 1.0)))
        # Every chunk stalls: test_sleep sleeps on each one.
        raw = json.loads((tmp_path / "run.json").read_text())
        raw["engines"][0].update(type="test_sleep", config={"seconds": 300})
        (tmp_path / "run.json").write_text(json.dumps(raw))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                # A shell may start background jobs with SIGINT ignored: take it back.
                "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from livecalc.cli import main; main()",
                "run",
                str(tmp_path / "run.json"),
                "--executor",
                "processes",
                "--parallelism",
                "2",
                "--no-progress",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        workers: list[int] = []
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _sleeping_workers(proc.pid)
        time.sleep(1.0)  # both replicas are now inside a 300 s chunk

        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=60)
        stopped_after = time.monotonic() - started
        time.sleep(0.5)

        assert 2 <= len(workers)
        assert stopped_after < 30  # not the 300 s a chunk would take to finish
        assert [] == [pid for pid in workers if _alive(pid)]


def _sleeping_workers(parent: int) -> list[int]:
    """Worker processes (multiprocessing spawn children) of ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


FULL_PIPELINE = Path(__file__).parents[1] / "examples" / "dag_config_full_pipeline.json"


class TestGoalSeek:
    @pytest.mark.slow
    def test_goal_seek_reruns_use_the_pool_and_match_local(self, tmp_path: Path) -> None:
        """The goal-seek's re-runs go through the projection's pool (overrides on every
        replica) and find the same solution, with the same records, as a local run."""
        out = [f"output.path={tmp_path}/r.parquet", f"output.summary_path={tmp_path}/s.json"]

        local = run(FULL_PIPELINE, overrides=out, executor="local")
        with capture_logs() as logs:
            pooled = run(FULL_PIPELINE, overrides=out, executor="processes", parallelism=2)

        pool_runs = [e for e in logs if e["event"] == "node_pool_finished"]
        assert pooled.success, pooled.summary.describe()
        assert local.records("results").tobytes() == pooled.records("results").tobytes()
        found = [
            {k: v for k, v in r.statistics["solver"]["optimization"].items() if k != "seconds"}
            for r in (local, pooled)
        ]
        assert found[0] == found[1]
        assert len(pool_runs) > 2  # the projection's own run, then the evaluator's re-runs
        assert {2} == {len(e["chunks_by_location"]) for e in pool_runs}


_THREADS_SCRIPT = """
import numba, numpy as np
from livecalc.io.generate import generate_policies
from livecalc.runtime.numba_threads import NumbaThreadsEngine
from livecalc.testing import EchoEngine

class ThreadsSeen(EchoEngine):
    def run_chunk(self, input_buffer, output_buffer):
        self.threads_seen = numba.get_num_threads()
        return super().run_chunk(input_buffer, output_buffer)

engine = ThreadsSeen()
capped = NumbaThreadsEngine(engine, {cap})
capped.initialize({{}})
policies = generate_policies(10, seed=1).records
out = np.zeros(10, dtype=policies.dtype)
capped.run_chunk({{"policies": policies}}, out)
assert policies.tobytes() == out.tobytes()
print(numba.config.NUMBA_NUM_THREADS, engine.threads_seen)
"""


class TestNumbaThreads:
    @pytest.mark.parametrize("cap", [1, 2, 9])
    def test_replica_kernels_use_their_share_of_the_cpus(self, cap: int) -> None:
        """A replica's chunk runs with the thread cap it was given (never above numba's pool).

        numba's pool is pinned to 4 threads in a fresh interpreter, so the cap is visible
        whatever this machine's CPU count.
        """
        import subprocess
        import sys

        env = {**os.environ, "NUMBA_NUM_THREADS": "4"}
        done = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT.format(cap=cap)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip

        assert 0 == done.returncode, done.stderr
        assert f"4 {min(cap, 4)}" == done.stdout.split()[-2] + " " + done.stdout.split()[-1]
