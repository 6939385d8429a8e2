"""The three examples run through the CLI; their outputs are checked by recomputing with numpy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from livecalc.cli.app import app

EXAMPLES = Path(__file__).parents[1] / "examples"
COMPONENTS = ("premium_income", "death_benefits", "surrender_benefits", "maturity_benefits")


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ (configs and data), so runs write nowhere in the repository."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for config in EXAMPLES.glob("dag_config_*.json"):
        shutil.copy(config, folder)
    shutil.copytree(EXAMPLES / "data", folder / "data")
    return folder


def _run(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["run", str(config), "--no-progress", *args])
    assert 0 == result.exit_code, result.output
    return result


def _summary(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _scenario_sums(results: Any) -> np.ndarray:
    """Portfolio NPV per scenario, in scenario_id order."""
    ids = results.column("scenario_id").to_numpy()
    npv = results.column("npv").to_numpy()
    unique, inverse = np.unique(ids, return_inverse=True)
    return np.bincount(inverse, weights=npv, minlength=len(unique))


def _check_components(table: Any) -> None:
    npv = table.column("npv").to_numpy()
    parts = {c: table.column(c).to_numpy() for c in (*COMPONENTS, "expenses")}
    expected = parts["premium_income"] - sum(parts[c] for c in COMPONENTS[1:]) - parts["expenses"]
    assert np.allclose(expected, npv, rtol=1e-9, atol=1e-6)
    assert all((v >= 0).all() for v in parts.values())


class TestProjectionOnly:
    def test_one_detail_record_per_policy_and_scenario(self, examples: Path) -> None:
        """200 policies x 100 scenarios give 20,000 RESULT_DETAIL rows whose parts add up."""
        policies = pq.read_table(examples / "data" / "policies.parquet")
        scenarios = pq.read_table(examples / "data" / "scenarios.parquet")

        _run(examples / "dag_config_projection_only.json")

        results = pq.read_table(examples / "output" / "projection_only" / "results.parquet")
        n_scen = len(np.unique(scenarios.column("scenario_id").to_numpy()))
        assert policies.num_rows * n_scen == results.num_rows
        assert [
            "scenario_id",
            "policy_id",
            "npv",
            "premium_income",
            "death_benefits",
            "surrender_benefits",
            "expenses",
            "maturity_benefits",
        ] == results.column_names
        assert set(policies.column("policy_id").to_pylist()) == set(
            results.column("policy_id").to_pylist()
        )
        _check_components(results)

    def test_summary_reports_the_rows(self, examples: Path) -> None:
        """The summary JSON says the projection succeeded with 20,000 records in 4 chunks."""

        _run(examples / "dag_config_projection_only.json")

        node = _summary(examples / "output" / "projection_only" / "summary.json")["nodes"][0]
        assert ("succeeded", 20_000, 4) == (node["status"], node["records"], node["chunks"])


class TestEsgProjection:
    def test_scenarios_and_totals(self, examples: Path) -> None:
        """The ESG writes 4 x 25 paths of 50 years; the projection one total per scenario,
        each over all 200 policies, with components that add up to the npv."""

        _run(examples / "dag_config_esg_projection.json")

        out = examples / "output" / "esg_projection"
        scenarios = pq.read_table(out / "scenarios.parquet")
        totals = pq.read_table(out / "totals.parquet")
        expected_ids = sorted(o * 1000 + i for o in range(4) for i in range(25))
        assert 100 * 50 == scenarios.num_rows
        assert expected_ids == sorted(set(scenarios.column("scenario_id").to_pylist()))
        assert expected_ids == totals.column("scenario_id").to_pylist()
        assert [200.0] * 100 == totals.column("policy_count").to_pylist()
        _check_components(totals)

    def test_totals_do_not_depend_on_the_chunk_size(self, examples: Path) -> None:
        """Totals merged over 4 chunks equal the totals of one chunk of all policies."""
        config = examples / "dag_config_esg_projection.json"
        out = examples / "output" / "esg_projection" / "totals.parquet"

        _run(config)
        chunked = pq.read_table(out).column("npv").to_numpy()
        _run(config, "--chunk-size", "1000")
        whole = pq.read_table(out).column("npv").to_numpy()

        assert np.allclose(whole, chunked, rtol=1e-12)


class TestFullPipeline:
    def test_solver_statistics_match_the_written_results(self, examples: Path) -> None:
        """Mean, std, min, max and cte_95 recomputed from results.parquet match the solver's."""

        _run(examples / "dag_config_full_pipeline.json")

        out = examples / "output" / "full_pipeline"
        results = pq.read_table(out / "results.parquet")
        sums = np.sort(_scenario_sums(results))
        solver = next(
            n for n in _summary(out / "summary.json")["nodes"] if n["node_id"] == "solver"
        )
        metrics = solver["outputs"]["metrics"]
        assert 200 * 100 == results.num_rows
        assert ["scenario_id", "policy_id", "npv"] == results.column_names
        assert 100 == metrics["count"]
        assert sums.mean() == pytest.approx(metrics["mean"], rel=1e-9)
        assert sums.std(ddof=1) == pytest.approx(metrics["std"], rel=1e-9)
        assert (sums[0], sums[-1]) == pytest.approx((metrics["min"], metrics["max"]), rel=1e-9)
        assert sums[:5].mean() == pytest.approx(metrics["cte_95"], rel=1e-9)

    def test_goal_seek_solution_zeroes_the_mean(self, examples: Path) -> None:
        """Re-running with the solved premium multiplier gives a mean portfolio NPV of ~0,
        while the written results keep the configured (unstressed) premiums."""
        config = examples / "dag_config_full_pipeline.json"
        out = examples / "output" / "full_pipeline"
        _run(config)
        first = _summary(out / "summary.json")["nodes"][-1]["outputs"]
        multiplier = first["optimization"]["parameters"]["premium_multiplier"]
        base_mean = _scenario_sums(pq.read_table(out / "results.parquet")).mean()

        _run(config, "--set", f"projection.premium_multiplier={multiplier!r}")

        solved_mean = _scenario_sums(pq.read_table(out / "results.parquet")).mean()
        assert first["optimization"]["converged"]
        assert base_mean == pytest.approx(first["metrics"]["mean"], rel=1e-9)
        assert abs(solved_mean) < 1e-6 * abs(base_mean)


@pytest.mark.slow
class TestNested:
    def test_summary_has_the_four_figures_and_they_recompute(self, examples: Path) -> None:
        """examples/nested: summary.json holds nested.var_99_5 (+ _se), lsmc.r2 and
        lsmc.max_abs_rel_error_oos; the VaR recomputes from the per-outer-path values and the
        value at 0 from the written cash flows; the run prints the tables."""
        folder = examples / "nested"
        folder.mkdir()
        shutil.copy(EXAMPLES / "nested" / "config.json", folder)

        result = _run(folder / "config.json")

        nodes = _summary(folder / "output" / "summary.json")["nodes"]
        outputs = next(n for n in nodes if n["node_id"] == "valuation")["outputs"]
        nested, lsmc = outputs["nested"], outputs["lsmc"]
        paths = nested["outer_paths"]
        change = np.array(paths["deflator"]) * np.array(paths["value"]) - nested["value_0"]
        loss = -change
        assert np.quantile(loss, 0.995, method="inverted_cdf") == pytest.approx(
            nested["var_99_5"], rel=1e-12
        )
        assert nested["var_99_5_se"] > 0
        assert 0.0 < lsmc["r2"] <= 1.0
        assert 0.0 <= lsmc["max_abs_rel_error_oos"] < 1.0
        table = pq.read_table(folder / "output" / "cashflows.parquet")
        cf = {name: table.column(name).to_numpy() for name in table.column_names}
        later = cf["time_years"] >= 1.0
        start = (cf["premiums"] - cf["expenses"] - cf["commissions"])[later]
        end = (cf["death_claims"] + cf["surrenders"] + cf["maturities"])[later]
        t = cf["time_years"][later]
        value_0 = float((start * 1.03**-t).sum() - (end * 1.03 ** -(t + 1)).sum())
        assert value_0 == pytest.approx(nested["value_0"], rel=1e-9)
        for text in ("var_99_5 (loss of value)", "LSMC proxy", "by quantile", "closed form"):
            assert text in result.output
