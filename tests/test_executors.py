"""Executors: same results everywhere; a crash or timeout under processes fails only its node."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import run
from livecalc.pipeline.executors import create_executor

PLUGIN = "livecalc.testing:register_testing_engines"
FULL_PIPELINE = Path(__file__).parents[1] / "examples" / "dag_config_full_pipeline.json"


def _outputs_in(folder: Path) -> list[str]:
    """Overrides that send an example's output files to ``folder``, not into examples/."""
    return [f"output.path={folder}/results.parquet", f"output.summary_path={folder}/s.json"]


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "policies.parquet"
    write_policies(path, generate_policies(300, seed=4))
    return path


def _config(*engines: dict[str, Any]) -> dict[str, Any]:
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": list(engines),
        "run": {"chunk_size": 64},
    }


def _node(node_id: str, engine_type: str, source: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": engine_type,
        "inputs": [source],
        "outputs": [f"{node_id}_out"],
        **kw,
    }


class TestCreateExecutor:
    def test_unknown_name(self) -> None:
        """An unknown executor name lists the known ones."""

        with pytest.raises(ConfigurationError, match="local, processes, ray"):
            create_executor("threads")

    def test_processes_use_shared_buffers(self) -> None:
        """Only the processes executor needs buffers in shared memory."""

        assert (False, True) == (
            create_executor("local").shared_buffers,
            create_executor("processes").shared_buffers,
        )


class TestProcessesExecutor:
    def test_same_records_as_local(self, tmp_path: Path, policies: Path) -> None:
        """A chunked chain gives bit-for-bit the same records in worker processes."""
        raw = _config(_node("a", "test_echo", "policies"), _node("b", "test_echo", "a_out"))

        local = run(raw, base_dir=tmp_path, executor="local")
        procs = run(raw, base_dir=tmp_path, executor="processes")

        assert procs.success and local.success
        assert local.records("b_out").tobytes() == procs.records("b_out").tobytes()
        assert 5 == procs.nodes["a"].chunks

    def test_full_pipeline_matches_local(self, tmp_path: Path) -> None:
        """The full-pipeline example (the goal-seek drives the projection in its worker) gives
        the local scenarios, results and solution."""
        out = _outputs_in(tmp_path)

        local = run(FULL_PIPELINE, overrides=out, executor="local")
        procs = run(FULL_PIPELINE, overrides=out, executor="processes")

        assert local.records("results").tobytes() == procs.records("results").tobytes()
        assert (
            local.statistics["solver"]["optimization"]["parameters"]
            == (procs.statistics["solver"]["optimization"]["parameters"])
        )

    def test_crash_fails_only_its_node(self, tmp_path: Path, policies: Path) -> None:
        """A segfaulting engine fails its node; the orchestrator and the other branch live."""
        raw = _config(
            _node("crash", "test_crash", "policies"),
            _node("after", "test_echo", "crash_out"),
            _node("other", "test_echo", "policies"),
        )

        result = run(raw, base_dir=tmp_path, executor="processes")

        assert {"crash": "failed", "after": "skipped", "other": "succeeded"} == result.status
        assert "signal" in (result.nodes["crash"].error or "").lower()

    def test_timeout_stops_a_stuck_engine(self, tmp_path: Path, policies: Path) -> None:
        """A chunk running past timeout_seconds is stopped and reported as a timeout."""
        raw = _config(_node("spin", "test_spin", "policies", timeout_seconds=1.0))

        result = run(raw, base_dir=tmp_path, executor="processes")

        assert "failed" == result.status["spin"]
        assert "EngineTimeoutError" == result.nodes["spin"].error_type


class TestLocalExecutor:
    def test_records_are_the_engines_buffer(self, tmp_path: Path, policies: Path) -> None:
        """Locally, a single-chunk node's records are the buffer the engine wrote (no copy)."""
        raw = _config(_node("a", "test_echo", "policies"))
        raw["run"]["chunk_size"] = 1000

        result = run(raw, base_dir=tmp_path, executor="local")

        records = result.records("a_out")
        assert 300 == len(records)
        assert 0 == records.ctypes.data % 16
        assert np.array_equal(
            generate_policies(300, seed=4).records["policy_id"], records["policy_id"]
        )


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    """One small local Ray for the module's tests (started once: it takes seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
class TestRayExecutor:
    def test_same_records_as_local(self, tmp_path: Path, policies: Path, ray_cluster: Any) -> None:
        """Chunks through Ray actors give bit-for-bit the local records."""
        raw = _config(_node("a", "test_echo", "policies"), _node("b", "test_echo", "a_out"))

        local = run(raw, base_dir=tmp_path, executor="local")
        remote = run(raw, base_dir=tmp_path, executor="ray")

        assert remote.success
        assert local.records("b_out").tobytes() == remote.records("b_out").tobytes()

    def test_full_pipeline_matches_local(self, tmp_path: Path, ray_cluster: Any) -> None:
        """The full-pipeline example (ESG, projection, goal-seeking solver) gives the same
        scenarios, results and solution on Ray as locally."""
        out = _outputs_in(tmp_path)

        local = run(FULL_PIPELINE, overrides=out, executor="local")
        remote = run(FULL_PIPELINE, overrides=out, executor="ray")

        assert local.records("results").tobytes() == remote.records("results").tobytes()
        assert (
            local.statistics["solver"]["optimization"]["parameters"]
            == (remote.statistics["solver"]["optimization"]["parameters"])
        )

    def test_timeout_kills_the_actor(
        self, tmp_path: Path, policies: Path, ray_cluster: Any
    ) -> None:
        """A stuck chunk is stopped at timeout_seconds and fails only its node."""
        raw = _config(
            _node("spin", "test_spin", "policies", timeout_seconds=1.0),
            _node("other", "test_echo", "policies"),
        )

        result = run(raw, base_dir=tmp_path, executor="ray")

        assert {"spin": "failed", "other": "succeeded"} == result.status
        assert "EngineTimeoutError" == result.nodes["spin"].error_type

    def test_failure_is_retried_by_livecalc_not_ray(
        self, tmp_path: Path, policies: Path, ray_cluster: Any
    ) -> None:
        """retries=1 re-runs a failed chunk once; a second failure fails the node."""
        once = _config(_node("f", "test_fail_n", "policies", config={"n": 1}, retries=1))
        twice = _config(_node("f", "test_fail_n", "policies", config={"n": 2}, retries=1))

        recovered = run(once, base_dir=tmp_path, executor="ray")
        failed = run(twice, base_dir=tmp_path, executor="ray")

        assert ("succeeded", "failed") == (recovered.status["f"], failed.status["f"])


class TestReplicaPlacement:
    def test_one_per_node_before_two_on_any(self) -> None:
        """Replicas of one engine fill every node once before any node gets a second."""
        from livecalc.pipeline.executors.ray import place_replica

        nodes = [("head", 1.0), ("w1", 1.0), ("w2", 1.0)]
        live: list[str] = []
        for _ in range(6):
            target = place_replica(nodes, live)
            assert target is not None
            live.append(target)

        assert ["head", "w1", "w2", "head", "w1", "w2"] == live

    def test_by_cpu_and_skipping_nodes_without_cpus(self) -> None:
        """A node of 2 CPUs takes two replicas for one on a node of 1; a 0-CPU head none."""
        from livecalc.pipeline.executors.ray import place_replica

        nodes = [("head", 0.0), ("big", 2.0), ("small", 1.0)]
        live: list[str] = []
        for _ in range(6):
            target = place_replica(nodes, live)
            assert target is not None
            live.append(target)

        assert {"big": 4, "small": 2} == {n: live.count(n) for n in set(live)}
        assert ["big", "small", "big"] == live[:3]

    def test_a_replacement_goes_to_the_emptiest_node(self) -> None:
        """After a node's replica is lost, the new one goes where fewest replicas run."""
        from livecalc.pipeline.executors.ray import place_replica

        nodes = [("head", 1.0), ("w1", 1.0), ("w2", 1.0)]

        assert "w2" == place_replica(nodes, ["head", "w1", "head", "w1"])
        assert place_replica([("head", 0.0)], []) is None


_OWN_CLUSTER_SCRIPT = """
import json, sys
from livecalc.pipeline.api import run
config, base = json.loads(sys.argv[1]), sys.argv[2]
result = run(config, base_dir=base, executor="ray", parallelism=2)
assert result.success, result.summary.describe()
print(json.dumps({"records": result.records("a_out").tobytes().hex()}))
"""


@pytest.mark.ray
@pytest.mark.slow
class TestRayOwnCluster:
    def test_no_address_starts_its_own_cluster_despite_a_stale_cluster_file(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """With no address and a ray_current_cluster file naming a cluster that is gone,
        the ray executor starts a new local cluster (it used to hang joining the stale one).

        The run is a subprocess in network and process namespaces of its own (loopback only),
        with its own Ray temp folder, so neither the stale file nor the cluster touch anyone
        else's; everything in it is killed at the end whatever happens."""
        import json
        import os
        import shutil
        import signal
        import subprocess
        import sys
        import tempfile

        raw = _config(_node("a", "test_echo", "policies"))
        # Ray's socket paths must stay under 108 bytes: a short folder, not tmp_path.
        ray_tmp = Path(tempfile.mkdtemp(prefix="lcray", dir="/tmp"))
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=str(ray_tmp), RAY_USAGE_STATS_ENABLED="0")
        command = [sys.executable, "-c", _OWN_CLUSTER_SCRIPT, json.dumps(raw), str(tmp_path)]
        # A /dev/shm of its own too: in another pid namespace every outside process looks
        # dead, and LiveCalc's sweep of dead runs' segments would unlink theirs.
        shell = "ip link set lo up && mount -t tmpfs tmpfs /dev/shm && exec " + " ".join(
            _quote(c) for c in command
        )
        child = subprocess.Popen(
            # Its own network and process namespaces: whatever Ray leaves dies with it.
            ["unshare", "-rnp", "--fork", "--kill-child", "--mount-proc", "sh", "-c", shell],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = child.communicate(timeout=240)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            shutil.rmtree(ray_tmp, ignore_errors=True)
        local = run(raw, base_dir=tmp_path, executor="local")

        assert 0 == child.returncode, err[-2000:]
        assert local.records("a_out").tobytes().hex() == json.loads(out.splitlines()[-1])["records"]


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


_TOKEN_SCRIPT = """
set -u
ip link set lo up
# A /dev/shm of its own: in this pid namespace every outside process looks dead, and
# LiveCalc's sweep of dead runs' shared memory would unlink theirs.
mount -t tmpfs tmpfs /dev/shm || exit 1
"$RAY" start --head --node-ip-address=127.0.0.1 --port=6390 --num-cpus=1 \\
    --include-dashboard=false --disable-usage-stats >/dev/null 2>&1
echo "start=$?"
run() {
    timeout 150 "$PY" -c "from livecalc.cli import main; main()" run "$CONFIG" \\
        --executor ray --address 127.0.0.1:6390 --parallelism 2 --no-progress --no-store \\
        2>"$1.err"
    echo "$1=$?"
}
run good
RAY_AUTH_TOKEN=not-the-cluster-token run wrong
"$RAY" stop --force >/dev/null 2>&1
"""


@pytest.mark.ray
@pytest.mark.slow
class TestRayTokenAuth:
    def test_a_cluster_with_token_auth_is_joined_with_its_token_and_refused_without(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """A head started with RAY_AUTH_MODE=token: a run with the same RAY_AUTH_MODE and
        RAY_AUTH_TOKEN joins it (exit 0); one with another token is refused with one line
        naming the address and the fix (exit 2), its token never printed. Everything runs
        in network and process namespaces of the test's own."""
        import json
        import os
        import subprocess
        import sys
        import tempfile

        token = "livecalc-test-token-0123456789abcdef"
        config = tmp_path / "echo.json"
        config.write_text(json.dumps(_config(_node("a", "test_echo", "policies"))))
        ray_tmp = tempfile.mkdtemp(prefix="lcray", dir="/tmp")
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(
            RAY_TMPDIR=ray_tmp,
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=token,
            PY=sys.executable,
            RAY=str(Path(sys.executable).parent / "ray"),
            CONFIG=str(config),
        )
        try:
            done = subprocess.run(
                ["unshare", "-rnp", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
                 _TOKEN_SCRIPT],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=420,
            )  # fmt: skip
        finally:
            import shutil

            shutil.rmtree(ray_tmp, ignore_errors=True)
        codes = dict(line.split("=", 1) for line in done.stdout.split() if "=" in line)
        wrong = (tmp_path / "wrong.err").read_text()

        assert {"start": "0", "good": "0", "wrong": "2"} == codes, (done.stdout, wrong[-2000:])
        assert "cannot join the Ray cluster at '127.0.0.1:6390'" in wrong
        assert "RAY_AUTH_TOKEN" in wrong
        assert "Traceback" not in wrong
        assert token not in wrong and "not-the-cluster-token" not in wrong
