"""Chunk strategies: run.chunking fixed or by memory budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import livecalc
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.chunking import (
    BYTES_PER_POLICY_YEAR,
    DRIVER_BYTES,
    POLICY_OVERHEAD,
    Footprint,
    memory_chunk_size,
    working_bytes_per_policy,
)
from livecalc.pipeline.operations import parse_bytes

PLUGIN = "livecalc.testing:register_testing_engines"


def _config(tmp_path: Path, chunking: dict[str, Any] | None, n: int = 1_000) -> dict[str, Any]:
    write_policies(tmp_path / "policies.parquet", generate_policies(n, seed=8))
    run: dict[str, Any] = {"chunk_size": 100}
    if chunking is not None:
        run["chunking"] = chunking
    return {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [{"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["o"]}],
        "output": {"path": "out/o.parquet"},
        "run": run,
    }


class TestStrategies:
    def test_fixed_size_sets_policies_per_chunk(self, tmp_path: Path) -> None:
        """{"strategy": "fixed", "size": 250} runs 1,000 policies in 4 chunks."""
        config = _config(tmp_path, {"strategy": "fixed", "size": 250})

        result = livecalc.run(config, base_dir=tmp_path, store=False)

        assert 4 == result.nodes["a"].chunks

    def test_chunk_size_alone_still_works(self, tmp_path: Path) -> None:
        """run.chunk_size without run.chunking keeps its meaning."""
        result = livecalc.run(_config(tmp_path, None), base_dir=tmp_path, store=False)

        assert 10 == result.nodes["a"].chunks

    def test_memory_budget_grows_chunks_with_the_budget(self, tmp_path: Path) -> None:
        """A budget that leaves room for 300 echoed policies past the driver and the inputs
        gives chunks of 300; a large one, one chunk."""
        per_policy = 3 * 32 + POLICY_OVERHEAD + BYTES_PER_POLICY_YEAR * 50  # streamed, 50 y
        tight = int((DRIVER_BYTES + 1_000 * 32 + per_policy * 300) / 0.9) + 1
        small = _config(tmp_path, {"strategy": "memory", "budget": tight})
        large = _config(tmp_path, {"strategy": "memory", "budget": "64GB"})

        many = livecalc.run(small, base_dir=tmp_path, store=False).nodes["a"]
        one = livecalc.run(large, base_dir=tmp_path, store=False).nodes["a"].chunks

        assert (4, 300) == (many.chunks, many.chunk_size)
        assert 1 == one

    def test_same_budget_same_chunks_whatever_memory_is_in_use(self, tmp_path: Path) -> None:
        """The chunk size does not follow the process's memory: a rerun after 200 MB more
        was allocated chunks the same and writes the same bits (it used to shrink)."""
        import pyarrow.parquet as pq

        # 30 MB past the model's driver and inputs: room for two chunks. The old model took
        # the process's RSS instead: one chunk of one policy (or fewer after the 200 MB).
        budget = int((DRIVER_BYTES + 32 * 20_000 + 30 * 10**6) / 0.9)
        config = _config(tmp_path, {"strategy": "memory", "budget": budget}, n=20_000)

        first = livecalc.run(config, base_dir=tmp_path, store=False)
        before = pq.read_table(tmp_path / "out" / "o.parquet")
        ballast = np.ones(200 * 2**20, dtype=np.uint8)  # touched: resident
        second = livecalc.run(config, base_dir=tmp_path, store=False)
        after = pq.read_table(tmp_path / "out" / "o.parquet")
        del ballast

        assert first.nodes["a"].chunk_size == second.nodes["a"].chunk_size
        assert 1 < first.nodes["a"].chunks < 20_000
        assert before.equals(after)

    def test_cli_chunk_size_wins_over_the_budget(self, tmp_path: Path) -> None:
        """An explicit chunk_size argument overrides the memory strategy."""
        config = _config(tmp_path, {"strategy": "memory", "budget": "64GB"})

        result = livecalc.run(config, base_dir=tmp_path, store=False, chunk_size=500)

        assert 2 == result.nodes["a"].chunks


class TestModel:
    def test_streamed_npv_output(self) -> None:
        """1,000 scenarios of 24-byte records per policy, streamed, one replica: the chunk's
        slot and two more copies of it (Arrow, pages), plus the working arrays."""
        size = memory_chunk_size(
            "p", 10**9, 1_000_000, lambda k: (1_000 * k, 24), streamed=True, working_bytes=2_656,
        )  # fmt: skip

        assert (9 * 10**8 - DRIVER_BYTES) // (3 * 24_000 + 2_656) == size

    def test_totals_output_is_bounded_by_working_memory(self) -> None:
        """Scenario totals do not grow with policies: only the per-policy overhead counts."""
        size = memory_chunk_size("p", 10**9, 10**9, lambda k: (1_000, 64), streamed=False)

        # The fixed 64,000 bytes of totals: in the slot and in the merged totals.
        assert (9 * 10**8 - DRIVER_BYTES - 2 * 64_000) // POLICY_OVERHEAD == size

    def test_budget_covers_every_replica_process_and_chunk_in_flight(self) -> None:
        """Four replicas in worker processes, 8 chunks in flight, 10 MB of inputs, two nodes
        at once: each term as documented, worked by hand."""
        footprint = Footprint(
            replicas=4, chunks_in_flight=8, worker_processes=5, input_bytes=10**7,
            concurrent_nodes=2,
        )  # fmt: skip

        size = memory_chunk_size(
            "p", 4 * 10**9, 10**8, lambda k: (1_000 * k, 24), streamed=True,
            working_bytes=2_656, footprint=footprint,
        )  # fmt: skip

        fixed = 400 * 2**20 + 5 * 128 * 2**20 + 10**7  # 1,100,519,040 bytes
        per_policy = (8 + 2) * 24_000 + 4 * 2_656  # 250,624 bytes
        assert (3_600_000_000 - fixed) // 2 // per_policy == size == 4_986

    def test_ray_replicas_keep_two_more_copies_each(self) -> None:
        """Under Ray each replica's buffer and returned records count too."""
        plain = Footprint(replicas=2, chunks_in_flight=4)
        ray = Footprint(replicas=2, chunks_in_flight=4, replica_output_copies=2)

        sizes = [
            memory_chunk_size("p", 2 * 10**9, 10**8, lambda k: (100 * k, 24), True, 1_000, f)
            for f in (plain, ray)
        ]

        left = 1_800_000_000 - 400 * 2**20
        assert [left // (6 * 2_400 + 2_000), left // (10 * 2_400 + 2_000)] == sizes

    def test_budget_below_the_fixed_part_gives_the_smallest_chunk(self) -> None:
        """A budget the driver alone exceeds: chunks of one policy (and a warning)."""
        assert 1 == memory_chunk_size("p", 10**6, 500, lambda k: (k, 24), True)

    def test_working_memory_grows_with_projection_years(self) -> None:
        """Per-policy working memory: the overhead plus a share per scenario year."""
        from livecalc.runtime.records import SCENARIO_DTYPE

        scenarios = np.zeros(30, dtype=SCENARIO_DTYPE)
        scenarios["year"] = np.tile(np.arange(1, 31), 1)

        assert POLICY_OVERHEAD + BYTES_PER_POLICY_YEAR * 30 == working_bytes_per_policy(
            {"s": scenarios}
        )


class TestConfig:
    @pytest.mark.parametrize(
        ("chunking", "message"),
        [
            ({"strategy": "memory"}, "needs a 'budget'"),
            ({"strategy": "memory", "budget": "1XB"}, "is not a size"),
            ({"strategy": "fixed", "budget": "1GB"}, "goes with strategy 'memory'"),
            ({"strategy": "lru"}, "run.chunking.strategy"),
        ],
    )
    def test_bad_chunking_is_named(
        self, tmp_path: Path, chunking: dict[str, Any], message: str
    ) -> None:
        """A bad run.chunking is a ConfigurationError naming the key and the fix."""
        config = _config(tmp_path, chunking)

        with pytest.raises(ConfigurationError) as info:
            livecalc.run(config, base_dir=tmp_path, store=False)

        assert "run.chunking" in str(info.value)
        assert message in str(info.value)

    def test_sizes(self) -> None:
        """Budgets are written like 1GB, 512MB, 2GiB or given in bytes."""
        assert [10**9, 512 * 10**6, 2 * 2**30, 1234] == [
            parse_bytes(t) for t in ("1GB", "512 MB", "2GiB", 1234)
        ]

    def test_config_file_round_trip(self, tmp_path: Path) -> None:
        """The schema documents run.chunking."""
        from livecalc.pipeline.config import config_json_schema

        assert "chunking" in json.dumps(config_json_schema())


def _pss_of_tree(root: int) -> int:
    """Proportional set size of ``root`` and all its descendants now (Linux /proc)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, total = [root], 0
    while pids:
        pid = pids.pop()
        pids.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("Pss:"))
        except OSError:
            continue  # gone meanwhile
    return total


def _run_measured(config: Path, *args: str) -> tuple[int, int]:
    """``livecalc run`` in a subprocess: its exit code and the peak PSS of all its processes."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen(
        [sys.executable, "-c", "from livecalc.cli import main; main()", "run", str(config),
         "--no-progress", "--log-file", str(config.with_suffix(".log")), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    peak = 0
    try:
        while child.poll() is None:
            peak = max(peak, _pss_of_tree(child.pid))
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    return child.returncode, peak


@pytest.mark.slow
class TestBudgetMeasured:
    def test_peak_pss_of_all_processes_within_the_budget_and_reruns_identical(
        self, tmp_path: Path
    ) -> None:
        """A per-policy NPV run with a budget stays within it, all processes counted (PSS,
        sampled every 50 ms): locally at 500 MB and with 2 worker replicas at 1 GB; two runs
        under processes choose the same chunks and write the same bits."""
        import pyarrow.parquet as pq

        write_policies(tmp_path / "policies.parquet", generate_policies(10_000, seed=3))

        def config(name: str, budget: str) -> Path:
            raw = {
                "data_sources": {"policies": {"path": "policies.parquet"}},
                "engines": [
                    {"id": "esg", "type": "esg", "outputs": ["scenarios"], "config": {
                        "model": "hull_white", "outer": 2, "inner": 25, "years": 50, "seed": 5,
                    }},
                    {"id": "proj", "type": "projection", "config": {"output": "npv"},
                     "inputs": ["policies", "scenarios"], "outputs": ["npv"]},
                ],
                "output": {"path": f"{name}/npv.parquet", "summary_path": f"{name}/s.json"},
                "run": {"chunking": {"strategy": "memory", "budget": budget}},
            }  # fmt: skip
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(raw))
            return path

        runs = {
            "local": (config("local", "500MB"), ("--executor", "local"), 500 * 10**6),
            "p1": (config("p1", "1GB"), ("--executor", "processes", "--parallelism", "2"), 1e9),
            "p2": (config("p2", "1GB"), ("--executor", "processes", "--parallelism", "2"), 1e9),
        }

        measured = {name: _run_measured(path, *args) for name, (path, args, _) in runs.items()}
        summaries = {n: json.loads((tmp_path / n / "s.json").read_text()) for n in runs}
        tables = {n: pq.read_table(tmp_path / n / "npv.parquet") for n in runs}

        assert {n: 0 for n in runs} == {n: rc for n, (rc, _) in measured.items()}
        assert all(peak <= runs[n][2] for n, (_, peak) in measured.items()), measured
        nodes = {
            n: next(r for r in s["nodes"] if r["node_id"] == "proj") for n, s in summaries.items()
        }
        chunks = {n: (r["chunk_size"], r["chunks"]) for n, r in nodes.items()}
        assert chunks["p1"] == chunks["p2"]
        assert all(1 < n for _, n in chunks.values()), chunks
        assert tables["p1"].equals(tables["p2"])
        assert tables["local"].equals(tables["p1"])
