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
    POLICY_OVERHEAD,
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
        """A budget barely above the process's memory gives many chunks; a large one, one."""
        from livecalc.pipeline.chunking import current_rss_bytes

        tight = current_rss_bytes() // 9 * 10 + 40_000 * 2
        small = _config(tmp_path, {"strategy": "memory", "budget": tight})
        large = _config(tmp_path, {"strategy": "memory", "budget": "64GB"})

        many = livecalc.run(small, base_dir=tmp_path, store=False).nodes["a"].chunks
        one = livecalc.run(large, base_dir=tmp_path, store=False).nodes["a"].chunks

        assert many > 1
        assert 1 == one

    def test_cli_chunk_size_wins_over_the_budget(self, tmp_path: Path) -> None:
        """An explicit chunk_size argument overrides the memory strategy."""
        config = _config(tmp_path, {"strategy": "memory", "budget": "64GB"})

        result = livecalc.run(config, base_dir=tmp_path, store=False, chunk_size=500)

        assert 2 == result.nodes["a"].chunks


class TestModel:
    def test_streamed_npv_output(self) -> None:
        """1,000 scenarios of 24-byte records per policy, streamed: three copies each."""
        size = memory_chunk_size(
            "p", 10**9, 1_000_000, lambda k: (1_000 * k, 24), streamed=True, rss_bytes=10**8,
            working_bytes=2_656,
        )  # fmt: skip

        assert (9 * 10**8 - 10**8) // (3 * 24_000 + 2_656) == size

    def test_totals_output_is_bounded_by_working_memory(self) -> None:
        """Scenario totals do not grow with policies: only the per-policy overhead counts."""
        size = memory_chunk_size(
            "p", 10**9, 10**9, lambda k: (1_000, 64), streamed=False, rss_bytes=10**8
        )

        assert (9 * 10**8 - 10**8 - 2 * 64_000) // POLICY_OVERHEAD == size

    def test_budget_below_memory_in_use_gives_the_smallest_chunk(self) -> None:
        """A budget the process already exceeds: chunks of one policy (and a warning)."""
        assert 1 == memory_chunk_size("p", 10**6, 500, lambda k: (k, 24), True, rss_bytes=10**8)

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
