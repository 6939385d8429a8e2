"""The engine graph: run order, producers, descendants and cycle detection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.pipeline.config import DataSource, EngineNode, PipelineConfig
from livecalc.pipeline.graph import EngineGraph, graph_problems


def _node(node_id: str, inputs: list[str], outputs: list[str]) -> EngineNode:
    return EngineNode(id=node_id, type="esg", inputs=inputs, outputs=outputs)


def _graph(*nodes: EngineNode) -> EngineGraph:
    return EngineGraph(PipelineConfig(engines=list(nodes)))


class TestEngineGraph:
    def test_order_puts_producers_first(self) -> None:
        """Every node comes after the nodes whose outputs it reads."""
        graph = _graph(
            _node("solver", ["results"], ["solution"]),
            _node("projection", ["scenarios"], ["results"]),
            _node("esg", [], ["scenarios"]),
        )

        order = graph.order()

        assert ["esg", "projection", "solver"] == order

    def test_descendants_are_transitive(self) -> None:
        """A node's descendants include its consumers' consumers."""
        graph = _graph(
            _node("esg", [], ["scenarios"]),
            _node("projection", ["scenarios"], ["results"]),
            _node("solver", ["results"], ["solution"]),
            _node("other", [], ["x"]),
        )

        assert {"projection", "solver"} == graph.descendants("esg")
        assert set() == graph.descendants("other")

    def test_producers_and_consumers(self) -> None:
        """Datasets map to the node that writes them and the nodes that read them."""
        graph = _graph(_node("esg", [], ["scenarios"]), _node("p", ["scenarios"], ["r"]))

        assert "esg" == graph.producers["scenarios"]
        assert ["p"] == graph.consumers("scenarios")
        assert [] == graph.consumers("r")


class TestGraphProblems:
    def test_self_loop_is_a_cycle(self) -> None:
        """A node reading its own output is reported as a cycle of one."""

        problems = graph_problems([(0, _node("a", ["x"], ["x"]))], {})

        assert [
            "engines[0]: cycle a -> a; an engine cannot depend on its own output: "
            "remove one of these inputs"
        ] == problems

    def test_every_cycle_is_reported(self) -> None:
        """Two separate cycles give two problems."""
        nodes = [
            (0, _node("a", ["b1"], ["a1"])),
            (1, _node("b", ["a1"], ["b1"])),
            (2, _node("c", ["d1"], ["c1"])),
            (3, _node("d", ["c1"], ["d1"])),
        ]

        problems = graph_problems(nodes, {})

        assert 2 == len(problems)

    def test_data_source_name_taken_by_an_output(self) -> None:
        """An engine output named like a data source is produced twice."""
        sources = {"policies": DataSource(path="p.parquet")}

        problems = graph_problems([(0, _node("a", [], ["policies"]))], sources)

        assert [
            "engines[0].outputs[0]: 'policies' is already produced by data_sources.policies; "
            "rename one of them"
        ] == problems

    @settings(max_examples=40, deadline=None)
    @given(st.integers(min_value=1, max_value=8), st.data())
    def test_chains_have_no_problems_and_run_in_order(self, n: int, data: st.DataObject) -> None:
        """Any shuffled chain of nodes validates and orders back into the chain."""
        nodes = [_node(f"n{i}", [f"d{i - 1}"] if i else [], [f"d{i}"]) for i in range(n)]
        shuffled = data.draw(st.permutations(nodes))

        problems = graph_problems(list(enumerate(shuffled)), {})
        order = _graph(*shuffled).order()

        assert [] == problems
        assert [f"n{i}" for i in range(n)] == order


def _ring(prefix: str, n: int) -> list[dict[str, Any]]:
    """``n`` engines, each reading the previous one's output, the first reading the last."""
    return [
        {
            "id": f"{prefix}{i}",
            "type": "test_echo",
            "inputs": [f"{prefix}{(i - 1) % n}_out"],
            "outputs": [f"{prefix}{i}_out"],
        }
        for i in range(n)
    ]


def _livecalc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A cycle used to make validation spin forever: the timeout turns a hang into a failure.
    command = [str(Path(sys.executable).with_name("livecalc")), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


class TestCyclesFromTheCommandLine:
    @pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 6])
    def test_cycle_of_every_length_is_refused(self, tmp_path: Path, length: int) -> None:
        """validate and run name a cycle of any length, exit 2 and write nothing."""
        config = tmp_path / "cycle.json"
        raw = {
            "plugins": ["livecalc.testing:register_testing_engines"],
            "engines": _ring("e", length),
            "output": {"path": "out/results.parquet", "summary_path": "out/summary.json"},
        }
        config.write_text(json.dumps(raw))
        names = " -> ".join([*(f"e{i}" for i in range(length)), "e0"])

        validated = _livecalc("validate", str(config), cwd=tmp_path)
        ran = _livecalc("run", str(config), cwd=tmp_path)

        for done in (validated, ran):
            assert 2 == done.returncode, done.stderr
            assert f"engines[0]: cycle {names};" in done.stderr
            assert "Traceback" not in done.stderr
        assert not (tmp_path / "out").exists()

    def test_two_disjoint_cycles_are_both_named(self, tmp_path: Path) -> None:
        """Two separate cycles (of 3 and 4 engines) are both reported by validate and run."""
        config = tmp_path / "cycles.json"
        raw = {
            "plugins": ["livecalc.testing:register_testing_engines"],
            "engines": [*_ring("a", 3), *_ring("b", 4)],
        }
        config.write_text(json.dumps(raw))

        for command in ("validate", "run"):
            done = _livecalc(command, str(config), cwd=tmp_path)

            assert 2 == done.returncode, done.stderr
            assert "engines[0]: cycle a0 -> a1 -> a2 -> a0;" in done.stderr
            assert "engines[3]: cycle b0 -> b1 -> b2 -> b3 -> b0;" in done.stderr

    def test_long_cycle_is_named_without_the_command_line(self) -> None:
        """graph_problems names a cycle of three, in data-flow order, from its first engine."""
        nodes = [
            (0, _node("c", ["b1"], ["c1"])),
            (1, _node("a", ["c1"], ["a1"])),
            (2, _node("b", ["a1"], ["b1"])),
        ]

        problems = graph_problems(nodes, {})

        assert [
            "engines[0]: cycle c -> a -> b -> c; an engine cannot depend on its own output: "
            "remove one of these inputs"
        ] == problems
