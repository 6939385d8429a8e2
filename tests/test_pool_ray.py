"""Replica pools on a real multi-node Ray cluster simulated on this machine (3 raylets)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import capture_logs
from livecalc.pipeline.api import run
from pool_pipelines import MODES, projection_pipeline
from pool_pipelines import outputs as _outputs

pytestmark = [pytest.mark.ray, pytest.mark.slow]

N_POLICIES = 1200
CHUNK = 60  # 20 chunks
_NODE = {
    "num_cpus": 1,
    "object_store_memory": 100 * 2**20,
    # Loopback only: Ray would otherwise advertise the machine's own address.
    "node_ip_address": "127.0.0.1",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head and two worker nodes, one CPU each; the driver joins by address."""
    import ray
    from ray.cluster_utils import Cluster

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # ray.init(address="127.0.0.1:port") swaps a loopback host for the machine's address when
    # clusters are enabled, and the loopback-bound head would not answer there: resolve
    # loopback to itself, as Ray does on a laptop (macOS, Windows).
    mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **_NODE,
            "include_dashboard": False,
            # A lost node is declared dead within about 8 s, not the default half minute, and
            # a raylet starved of CPU on a busy 2-core machine is not (the loss test waits
            # for the verdict before the next test places actors).
            "_system_config": {
                "health_check_period_ms": 1000,
                "health_check_failure_threshold": 8,
            },
        },
    )
    workers = [cluster.add_node(**_NODE) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, workers
    finally:
        cluster.shutdown()
        mp.undo()


@pytest.fixture(scope="module")
def policies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray_pool")
    write_policies(folder / "policies.parquet", generate_policies(N_POLICIES, seed=11))
    return folder


def _pipeline(out: Path) -> dict[str, Any]:
    return projection_pipeline(out, inner=10, seed=5, chunk_size=CHUNK)


def _wait_until_dead(address: str, node_id: str, timeout: float = 60.0) -> None:
    """Until Ray has declared the node dead: later runs then place no actor on it."""
    import time

    import ray

    ray.init(address=address, log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
                return
            time.sleep(0.5)
        raise AssertionError(f"Ray still lists node {node_id} as alive after {timeout:g} s")
    finally:
        ray.shutdown()


def _node_ids(cluster: Any) -> set[str]:
    nodes = [cluster.head_node, *cluster.worker_nodes]
    return {str(n.node_id) for n in nodes}


class TestRayCluster:
    def test_chunks_spread_over_every_node_and_match_local(
        self, cluster: Any, policies_dir: Path
    ) -> None:
        """Replicas on all three nodes run the chunks; outputs are byte-identical to local."""
        ray_cluster, _ = cluster
        nodes = _node_ids(ray_cluster)
        local = run(_pipeline(policies_dir / "local"), base_dir=policies_dir, executor="local")

        with capture_logs() as logs:
            remote = run(
                _pipeline(policies_dir / "ray"),
                base_dir=policies_dir,
                executor="ray",
                address=ray_cluster.address,
                parallelism=3,
            )

        used = {e["location"] for e in logs if e["event"] == "chunk_done"}
        pools = {n: r.pool for n, r in remote.summary.nodes.items() if r.pool is not None}
        assert _outputs(local) == _outputs(remote)
        assert nodes == used
        # One replica per node, every time, where the actors really run (SPREAD left a node
        # idle in 3 runs of 5; soft node affinity moved actors too).
        assert {f"proj_{m}" for m in MODES} == set(pools)
        assert all({n: 1 for n in nodes} == p.replicas_by_location for p in pools.values())

    def test_runtime_env_ships_a_plugin_engine_to_the_workers(
        self, cluster: Any, policies_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A plug-in engine importable only in the driver runs on the cluster's workers when
        ``run.ray.runtime_env.py_modules`` ships it; without it, its node fails."""
        ray_cluster, _ = cluster
        package = tmp_path / "mods" / "shipped_echo"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            "from livecalc.testing import EchoEngine\n\n\n"
            "class ShippedEcho(EchoEngine):\n    engine_type = 'shipped_echo'\n\n\n"
            "def register(factory):\n    factory.register_engine('shipped_echo', ShippedEcho)\n"
        )
        monkeypatch.syspath_prepend(str(package.parent))  # the driver only, not the workers
        config: dict[str, Any] = {
            "plugins": ["shipped_echo:register"],
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "echo", "type": "shipped_echo", "inputs": ["policies"], "outputs": ["e"]}
            ],
            "run": {"chunk_size": 300, "replica_retries": 0},
        }
        shipped = {**config, "run": {**config["run"], "ray": {"runtime_env": {
            "py_modules": [str(package)]
        }}}}  # fmt: skip

        without = run(
            config, base_dir=policies_dir, executor="ray", address=ray_cluster.address,
            parallelism=3,
        )  # fmt: skip
        remote = run(
            shipped, base_dir=policies_dir, executor="ray", address=ray_cluster.address,
            parallelism=3,
        )  # fmt: skip
        local = run(config, base_dir=policies_dir, executor="local")

        assert "failed" == without.status["echo"]
        assert "succeeded" == remote.status["echo"]
        assert local.records("e").tobytes() == remote.records("e").tobytes()

    def test_memory_budget_gives_the_same_chunks_and_bits_on_rerun(
        self, cluster: Any, policies_dir: Path
    ) -> None:
        """Two runs on the cluster with the same memory budget choose the same chunk size (it
        used to follow the driver's memory) and write the same bits."""
        ray_cluster, _ = cluster
        runs = []
        for name in ("budget1", "budget2"):
            config = _pipeline(policies_dir / name)
            config["run"]["chunking"] = {"strategy": "memory", "budget": "1970MB"}
            runs.append(
                run(
                    config,
                    base_dir=policies_dir,
                    executor="ray",
                    address=ray_cluster.address,
                    parallelism=3,
                )
            )

        sizes = [{n: r.nodes[n].chunk_size for n in r.nodes} for r in runs]
        assert sizes[0] == sizes[1]
        assert 1 < runs[0].nodes["proj_npv"].chunks
        assert _outputs(runs[0]) == _outputs(runs[1])

    def test_losing_a_worker_node_mid_run_still_matches_local(
        self, cluster: Any, policies_dir: Path
    ) -> None:
        """A worker node killed after the first chunks: its chunks re-run on the others and
        the outputs are still byte-identical to local."""
        ray_cluster, workers = cluster
        local = run(_pipeline(policies_dir / "local2"), base_dir=policies_dir, executor="local")
        victim = workers[-1]
        removed = threading.Event()

        def progress(event: str, node_id: str, **info: Any) -> None:
            # Kill the node as soon as the first projection has merged one chunk: the other
            # chunks in flight on that node are lost with it.
            if event == "chunk_finished" and node_id == "proj_npv" and not removed.is_set():
                removed.set()
                ray_cluster.remove_node(victim, allow_graceful=False)

        with capture_logs() as logs, pytest.MonkeyPatch.context() as mp:
            mp.setenv("RAY_ADDRESS", ray_cluster.address)  # joined through the environment
            remote = run(
                _pipeline(policies_dir / "ray2"),
                base_dir=policies_dir,
                executor="ray",
                parallelism=3,
                progress=progress,
            )

        reruns = [e for e in logs if e["event"] == "chunk_rerun"]
        _wait_until_dead(ray_cluster.address, str(victim.node_id))
        assert removed.is_set()
        assert _outputs(local) == _outputs(remote)
        assert reruns and {"replica_lost"} == {e["cause"] for e in reruns}
        # Each loss is on record with the victim's node and a time, and is a run warning.
        lost = [x for r in remote.summary.nodes.values() if r.pool for x in r.pool.lost]
        assert lost and {str(victim.node_id)} == {x.location for x in lost}
        assert any(str(victim.node_id) in w for w in remote.summary.warnings)
        assert (
            local.nodes["proj_detail"].rows_processed == remote.nodes["proj_detail"].rows_processed
        )


class TestCommandLine:
    def test_address_and_parallelism_flags_join_the_cluster(
        self, cluster: Any, policies_dir: Path, tmp_path: Path
    ) -> None:
        """`livecalc run --executor ray --address A --parallelism 3` runs on every node and
        writes the same totals as a local run."""
        import json
        import os
        import subprocess
        import sys

        ray_cluster, _ = cluster
        nodes = _node_ids(ray_cluster)
        config = _pipeline(tmp_path / "cli")
        (policies_dir / "cli.json").write_text(json.dumps(config))
        local = run(_pipeline(tmp_path / "local"), base_dir=policies_dir, executor="local")
        env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            # As in the fixture: keep a loopback address loopback in the command's process.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }

        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from livecalc.cli import main; main()",
                "run",
                str(policies_dir / "cli.json"),
                "--executor",
                "ray",
                "--address",
                str(ray_cluster.address),
                "--parallelism",
                "3",
                "--no-progress",
                "--log-file",
                str(tmp_path / "run.log"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

        assert 0 == done.returncode, done.stderr[-2000:]
        from livecalc.ops.store import RunStore

        (run_id,) = RunStore().run_ids()
        cluster = RunStore().get(run_id)["cluster"]
        assert ("ray", 3, str(ray_cluster.address)) == (
            cluster["executor"],
            cluster["parallelism"],
            cluster["address"],
        )
        for pool in cluster["nodes"].values():  # even over the live nodes, chunks on each
            placed = pool["replicas_by_location"]
            assert nodes == set(placed) == set(pool["chunks_by_location"])
            assert 3 == sum(placed.values())
            assert max(placed.values()) - min(placed.values()) <= 1
        events = [json.loads(line) for line in (tmp_path / "run.log").read_text().splitlines()]
        pooled = [e for e in events if e["event"] == "node_pool_finished"]
        used = set().union(*(e["chunks_by_location"] for e in pooled))
        cli_totals = pq.read_table(tmp_path / "cli" / "scenario_totals.parquet")
        local_totals = pq.read_table(local.written["scenario_totals"])
        assert nodes == used  # every live node (one was removed by the test before)
        assert all(
            local_totals[c].to_numpy().tobytes() == cli_totals[c].to_numpy().tobytes()
            for c in local_totals.column_names
        )
