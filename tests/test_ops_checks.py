"""Declared checks: validated with the config, evaluated after the run, exit 1 on an error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.store import RunStore

PLUGIN = "livecalc.testing:register_testing_engines"


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def real_pipeline(tmp_path: Path, checks: list[dict[str, Any]], **extra: Any) -> Path:
    """ESG (2 x 50 paths, 10 years) -> projection (40 policies) -> solver, with ``checks``."""
    write_policies(tmp_path / "policies.parquet", generate_policies(40, seed=5, max_term=10))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {"model": "hull_white", "outer": 2, "inner": 50, "years": 10, "seed": 1},
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "npv"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
            {
                "id": "solver",
                "type": "solver",
                "config": {"metrics": ["mean", "var_99_5", "cte_99_5"]},
                "inputs": ["results"],
                "outputs": ["solution"],
            },
        ],
        "output": {"path": "out/results.parquet", "summary_path": "out/summary.json"},
        "run": {"chunk_size": 15},
        "checks": checks,
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def echo_pipeline(tmp_path: Path, checks: list[dict[str, Any]]) -> Path:
    """Two echo nodes over 90 policies: a_out and b_out hold the same records."""
    write_policies(tmp_path / "policies.parquet", generate_policies(90, seed=2))
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
            {"id": "b", "type": "test_echo", "inputs": ["a_out"], "outputs": ["b_out"]},
        ],
        "output": {"path": "out/{name}.parquet", "write": ["a_out", "b_out"]},
        "run": {"chunk_size": 40},
        "checks": checks,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


GOOD = [
    {"kind": "finite", "dataset": "results"},
    {"kind": "row_count", "dataset": "results", "equals": "policies_x_scenarios"},
    {"kind": "range", "dataset": "results", "column": "npv", "min": -1e9, "max": 1e9},
    {"kind": "range", "statistic": "solver.metrics.mean", "min": -1e12, "max": 1e12},
    {"kind": "metric", "expr": "cte_99_5 <= var_99_5"},
    {"kind": "martingale", "dataset": "scenarios", "z_threshold": 6},
]


class TestChecksInARun:
    def test_passing_checks_are_recorded_everywhere(self, tmp_path: Path) -> None:
        """Six kinds that hold: exit 0, each passed in summary.json and in the store."""
        config = real_pipeline(tmp_path, GOOD)

        result = _cli("run", str(config), "--no-progress")
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        record = RunStore().get(RunStore().run_ids()[0])

        assert 0 == result.exit_code, result.output
        assert [True] * 6 == [c["passed"] for c in summary["checks"]]
        assert 40 * 100 == summary["checks"][1]["value"]
        assert [c["name"] for c in summary["checks"]] == [c["name"] for c in record["checks"]]
        assert "succeeded" == record["status"]

    def test_failing_error_check_exits_1_and_keeps_outputs(self, tmp_path: Path) -> None:
        """An error check that fails: exit 1, outputs kept, marked in summary, store, report."""
        checks = [{"kind": "metric", "name": "mean_huge", "expr": "mean > 1e30"}]
        config = real_pipeline(tmp_path, checks)
        report = tmp_path / "report.html"

        result = _cli("run", str(config), "--no-progress", "--report", str(report))
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        record = RunStore().get(RunStore().run_ids()[0])

        assert 1 == result.exit_code
        assert "check mean_huge failed (error)" in result.output
        assert pq.read_table(tmp_path / "out" / "results.parquet").num_rows == 4000
        assert ["mean_huge"] == summary["failed_checks"]
        assert summary["success"] is False
        assert "check_failed" == record["status"]
        assert [False] == [c["passed"] for c in record["checks"]]
        assert "mean_huge" in report.read_text()

    def test_failing_warn_check_exits_0_and_appears(self, tmp_path: Path) -> None:
        """A warn check that fails: exit 0, and it is in the output, summary, store, report."""
        checks = [
            {"kind": "range", "name": "npv_small", "severity": "warn", "dataset": "results",
             "column": "npv", "max": 0.0},
        ]  # fmt: skip
        config = real_pipeline(tmp_path, checks)
        report = tmp_path / "report.html"

        result = _cli("run", str(config), "--no-progress", "--report", str(report))
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        record = RunStore().get(RunStore().run_ids()[0])

        assert 0 == result.exit_code
        assert "check npv_small failed (warn)" in result.output
        assert [(False, "warn")] == [(c["passed"], c["severity"]) for c in summary["checks"]]
        assert "succeeded" == record["status"]
        assert "npv_small" in report.read_text()

    def test_reconcile_and_row_count_bounds(self, tmp_path: Path) -> None:
        """reconcile compares column sums of two datasets; row_count takes min and max."""
        checks = [
            {"kind": "reconcile", "dataset": "a_out", "column": "premium", "against": "b_out"},
            {"kind": "reconcile", "name": "bad", "severity": "warn", "dataset": "a_out",
             "column": "premium", "against": "b_out", "against_column": "sum_assured"},
            {"kind": "row_count", "dataset": "b_out", "min": 90, "max": 90},
            {"kind": "row_count", "name": "too_few", "severity": "warn", "dataset": "b_out",
             "min": 91},
        ]  # fmt: skip
        config = echo_pipeline(tmp_path, checks)

        result = _cli("run", str(config), "--no-progress")
        record = RunStore().get(RunStore().run_ids()[0])

        assert 0 == result.exit_code, result.output
        assert [True, False, True, False] == [c["passed"] for c in record["checks"]]

    def test_check_command_reruns_on_stored_outputs(self, tmp_path: Path) -> None:
        """`livecalc check RUN_ID` re-evaluates on the written files; exit 1 when they fail;
        an output overwritten since the run (sha256 differs) is refused, exit 2, naming it."""
        checks = [
            {"kind": "row_count", "dataset": "a_out", "equals": 90},
            {"kind": "row_count", "dataset": "b_out", "equals": 90, "severity": "warn"},
        ]
        config = echo_pipeline(tmp_path, checks)
        _cli("run", str(config), "--no-progress")
        run_id = RunStore().run_ids()[0]

        passed = _cli("check", run_id, "--json")
        truncated = pq.read_table(tmp_path / "out" / "a_out.parquet").slice(0, 10)
        pq.write_table(truncated, tmp_path / "out" / "a_out.parquet")
        refused = _cli("check", run_id, "--json")

        assert 0 == passed.exit_code, passed.output
        assert [90, 90] == [c["value"] for c in json.loads(passed.output)]
        assert 2 == refused.exit_code, refused.output
        assert "a_out.parquet (dataset 'a_out') changed since the run" in refused.output
        assert "Traceback" not in refused.output

    def test_check_command_gives_the_run_verdicts_for_data_in_no_file(self, tmp_path: Path) -> None:
        """Six checks that passed in the run, two of them on scenarios the run held in
        memory only (row count against policies x scenarios, martingale): `livecalc check`
        reports all six passed, not "cannot check" (issue 19 item 10)."""
        config = real_pipeline(tmp_path, GOOD)
        assert 0 == _cli("run", str(config), "--no-progress").exit_code
        run_id = RunStore().run_ids()[0]

        again = _cli("check", run_id, "--json")
        results = json.loads(again.output)

        assert 0 == again.exit_code, again.output
        assert [True] * 6 == [c["passed"] for c in results]
        assert results[5]["message"].startswith("as the run found")
        assert 40 * 100 == results[1]["value"]


class TestCheckConfig:
    def test_bad_checks_are_reported_together_with_paths(self, tmp_path: Path) -> None:
        """Every bad check is named by its JSON path in one error, exit 2, nothing runs."""
        checks = [
            {"kind": "metric", "expr": "__import__('os') > 1"},
            {"kind": "range", "dataset": "results"},
            {"kind": "sum", "dataset": "results"},
            {"kind": "finite", "dataset": "results", "severity": "fatal"},
        ]
        config = echo_pipeline(tmp_path, [])
        raw = json.loads(config.read_text())
        raw["engines"][1]["outputs"] = ["results"]
        raw["output"]["write"] = ["a_out", "results"]
        raw["checks"] = checks
        config.write_text(json.dumps(raw))

        result = _cli("run", str(config), "--no-progress")

        assert 2 == result.exit_code
        for path in ("checks[0]", "checks[1]", "checks[2].kind", "checks[3].severity"):
            assert path in result.output
        assert "a function call" in result.output
        assert "Value error" not in result.output
        assert not (tmp_path / "out").exists()

    def test_unknown_dataset_and_sla_node_are_named(self, tmp_path: Path) -> None:
        """A check's unknown dataset and an SLA's unknown node: exit 2 with a suggestion."""
        config = echo_pipeline(tmp_path, [{"kind": "finite", "dataset": "b_ot"}])
        raw = json.loads(config.read_text())
        raw["sla"] = {"nodes": {"c": 10}}
        config.write_text(json.dumps(raw))

        result = _cli("run", str(config), "--no-progress")

        assert 2 == result.exit_code
        assert "checks[0].dataset: 'b_ot' is no dataset of this config" in result.output
        assert "did you mean 'b_out'" in result.output
        assert "sla.nodes.c: 'c' is no engine node" in result.output
