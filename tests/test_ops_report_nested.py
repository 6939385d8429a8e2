"""The run report's nested section: the LSMC proxy against the validation points, in Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.ops.report_nested import MAX_POINTS, nested_chart, nested_section
from test_nested_engine import _config, _term_policies
from test_ops_report import ARTIFACTS, DRAWN_CHARTS, Browser

OUTER = 40


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def _nested_config(tmp_path: Path) -> Path:
    raw = _config(_term_policies(tmp_path / "term.parquet", 10))
    node = raw["engines"][1]["config"]
    node["esg"].update(outer=OUTER, inner=20)
    node["lsmc"].update(fit_outer=200, fit_inner=2, proxy_outer=500)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestNestedReport:
    def test_proxy_chart_draws_every_validation_point(
        self, tmp_path: Path, browser: Browser
    ) -> None:
        """`run --report`: the proxy chart is drawn with one point per outer path of the
        nested set, the proxy and closed-form lines and the fit table; no console error."""
        report = tmp_path / "report.html"

        result = CliRunner().invoke(
            app, ["run", str(_nested_config(tmp_path)), "--no-progress", "--report", str(report)]
        )
        browser.load(report)
        charts = browser.evaluate(DRAWN_CHARTS)
        circles = browser.evaluate(
            "document.querySelector('svg[data-chart=lsmc_proxy]').querySelectorAll('circle').length"
        )
        lines = browser.evaluate(
            "document.querySelector('svg[data-chart=lsmc_proxy]')"
            ".querySelectorAll('polyline').length"
        )
        text = browser.evaluate("document.body.innerText")
        shot = browser.screenshot(ARTIFACTS / "report_nested.png")

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert "lsmc_proxy" in charts
        assert OUTER == circles
        assert 2 == lines  # the proxy and the closed form
        assert "Nested valuation and LSMC proxy" in text
        assert "R^2 out of sample" in text
        assert shot.stat().st_size > 10_000


class TestNestedChartData:
    def test_nothing_without_a_proxy(self) -> None:
        """Statistics of other engines, or a nested run without lsmc, give no chart."""

        assert nested_chart({"solver": {"metrics": {"mean": 1.0}}}) is None
        assert nested_chart({"v": {"nested": {"outer_paths": {}}}}) is None
        assert "" == nested_section({"charts": {}})

    def test_many_points_are_thinned(self) -> None:
        """More validation points than MAX_POINTS are thinned evenly to at most that many."""

        n = 3 * MAX_POINTS + 1
        paths = {"short_rate": [0.01] * n, "value": [1.0] * n, "standard_error": [0.1] * n}
        lsmc = {
            "curve": {"short_rate": [0.0, 0.02], "proxy": [1.0, 1.0]},
            "basis": "polynomial", "degree": 2, "fit_paths": 10, "r2": 0.5, "r2_oos": 0.9,
            "max_abs_rel_error_oos": 0.01, "var_99_5": 1.0,
        }  # fmt: skip
        nested = {"valuation_year": 1, "outer_paths": paths, "var_99_5": 1.0, "var_99_5_se": 0.1}

        chart = nested_chart({"v": {"nested": nested, "lsmc": lsmc}})

        assert chart is not None
        assert MAX_POINTS >= len(chart["v"]["short_rate"]) > MAX_POINTS // 2
        assert nested_section({"charts": {"nested": chart}}).count("<circle") == len(
            chart["v"]["short_rate"]
        )
