"""First-run cost: the numba warm-up, compile time apart from run time, what set-up installs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytest

from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import run
from livecalc.runtime import jit
from livecalc.runtime.engine import ExecutionResult, InputBuffer
from livecalc.runtime.factory import EngineFactory
from livecalc.testing import EchoEngine, register_testing_engines

ROOT = Path(__file__).parent.parent
LIVECALC = str(Path(sys.executable).with_name("livecalc"))


class CompilingEngine(EchoEngine):
    """An echo engine whose first run_chunk compiles a fresh numba function (no cache)."""

    engine_type = "test_compiling"

    def run_chunk(
        self, input_buffer: InputBuffer, output_buffer: np.ndarray | None
    ) -> ExecutionResult:
        """Compile a new function once, then echo."""
        if not getattr(self, "compiled", False):

            @numba.njit(cache=False)
            def add_one(x: float) -> float:
                return x + 1.0

            add_one(1.0)
            self.compiled = True
        return super().run_chunk(input_buffer, output_buffer)


def _factory() -> EngineFactory:
    factory = EngineFactory()
    register_testing_engines(factory)
    factory.register_engine("test_compiling", CompilingEngine)
    return factory


class TestCompileClock:
    """livecalc.runtime.jit counts compilations, not calls of compiled code."""

    def test_counts_a_compilation_once(self) -> None:
        """A new function's first call adds compile time; its second call adds none."""

        @numba.njit(cache=False)
        def twice(x: float) -> float:
            return 2.0 * x

        before = jit.compile_seconds()
        twice(1.0)
        after_first = jit.compile_seconds()
        twice(2.0)

        assert after_first > before
        assert after_first == jit.compile_seconds()


class TestSummaryCompileTime:
    """The run summary reports compile time per node, apart from run time."""

    @pytest.mark.parametrize("executor", ["local", "processes"])
    def test_compiling_node_reports_its_compile_time(self, tmp_path: Path, executor: str) -> None:
        """The node that compiles reports compile_seconds > 0 and rows/s over its run time."""
        write_policies(tmp_path / "policies.parquet", generate_policies(40, seed=1))
        config = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {"id": "a", "type": "test_compiling", "inputs": ["policies"], "outputs": ["x"]},
                {"id": "b", "type": "test_echo", "inputs": ["x"], "outputs": ["y"]},
            ],
        }

        result = run(config, executor=executor, factory=_factory(), base_dir=tmp_path)

        a, b = result.nodes["a"], result.nodes["b"]
        assert result.success
        assert 0.0 < a.compile_seconds <= a.seconds
        assert 0.0 == b.compile_seconds
        assert a.seconds - a.compile_seconds == pytest.approx(a.run_seconds)
        assert a.rows_processed / a.run_seconds == pytest.approx(a.throughput)
        summary: Mapping[str, Any] = result.summary.to_dict()
        assert a.compile_seconds == summary["nodes"][0]["compile_seconds"]
        assert a.compile_seconds == summary["compile_seconds"]


class TestWarmupCommand:
    """``livecalc warmup`` fills numba's cache with every signature the engines use."""

    def test_after_warmup_a_run_compiles_nothing(self, tmp_path: Path) -> None:
        """After the warm-up, ESG -> projection under worker processes compiles nothing."""
        warm = subprocess.run(
            [LIVECALC, "warmup"], capture_output=True, text=True, timeout=280, check=False
        )
        write_policies(
            tmp_path / "policies.parquet",
            generate_policies(50, seed=3, in_force_fraction=0.3, max_term=20),
        )
        config = {
            "data_sources": {"policies": {"path": "policies.parquet"}},
            "engines": [
                {
                    "id": "esg",
                    "type": "esg",
                    "config": {"outer": 2, "inner": 5, "years": 30, "seed": 7},
                    "outputs": ["scenarios"],
                },
                {
                    "id": "projection",
                    "type": "projection",
                    "config": {"output": "detail", "time_step": "monthly"},
                    "inputs": ["policies", "scenarios"],
                    "outputs": ["results"],
                },
            ],
            "output": {"path": "out/results.parquet", "summary_path": "out/summary.json"},
        }
        (tmp_path / "config.json").write_text(json.dumps(config))

        done = subprocess.run(
            [LIVECALC, "run", str(tmp_path / "config.json"), "--executor", "processes"],
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )

        assert 0 == warm.returncode, warm.stderr
        assert "projection.full_kernel" in warm.stdout
        assert "esg._gaussian_kernel" in warm.stdout
        assert "projection_nested._values_kernel" in warm.stdout
        assert re.search(r"compiled \d+ signatures, loaded \d+ from the cache", warm.stdout)
        assert 0 == done.returncode, done.stderr
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert {"esg": 0.0, "projection": 0.0} == {
            n["node_id"]: n["compile_seconds"] for n in summary["nodes"]
        }


class TestMakefile:
    """The demo installs what a run needs; the tests add the development extra."""

    def _commands(self, target: str, tmp_path: Path) -> str:
        done = subprocess.run(
            ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def test_demo_installs_no_dev_extra(self, tmp_path: Path) -> None:
        """make demo creates the venv, installs the package alone and warms the kernels up."""
        commands = self._commands("demo", tmp_path)

        assert "-m venv" in commands
        assert "pip install --quiet -e .\n" in commands
        assert "[dev]" not in commands
        assert "livecalc warmup" in commands

    def test_test_installs_the_dev_extra(self, tmp_path: Path) -> None:
        """make test creates the venv and installs the dev extra (pytest, ...)."""
        commands = self._commands("test", tmp_path)

        assert "-m venv" in commands
        assert "-e '.[dev]'" in commands
        assert "livecalc warmup" in commands
