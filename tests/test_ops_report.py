"""The HTML run report, opened in a real headless Chromium over the DevTools protocol.

Each page is loaded from its file with the network cut off; the test collects console
errors and uncaught exceptions, counts the SVG charts that have drawn content and a size,
measures every chart's text labels from the DOM (no two may overlap) and looks for each
chart's legend or labelled series; it saves a screenshot under test-artifacts/ (gitignored)
for a person to look at, and prints the report to PDF with Chromium's ``--print-to-pdf``,
whose pages poppler's ``pdftoppm`` must render with ink on them.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.ops.store import RunStore
from test_ops_checks import real_pipeline

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "about:blank",
]


class Browser:
    """One headless Chromium, driven over its DevTools websocket."""

    def __init__(self) -> None:
        import websocket

        assert CHROMIUM is not None, "chromium is required in CI: make test installs it"
        self.profile = tempfile.mkdtemp(prefix="livecalc-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, f"--user-data-dir={self.profile}", *FLAGS],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        import urllib.request

        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json").read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self._id = 0
        self.events: list[dict[str, Any]] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.call(method)
        # The report must work offline: every request but the file itself fails.
        self.call(
            "Network.emulateNetworkConditions",
            offline=True,
            latency=0,
            downloadThroughput=-1,
            uploadThroughput=-1,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                assert "error" not in message, message
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def load(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.monotonic() < deadline, "page did not load"
            self.events.append(json.loads(self.ws.recv()))

    def errors(self) -> list[str]:
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(json.dumps(params["args"])[:300])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
            elif method == "Network.loadingFailed":
                found.append(f"request failed: {params.get('errorText')}")
        return found

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        height = self.evaluate("document.documentElement.scrollHeight")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1100,
            height=int(height),
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.ws.close()
        self.proc.kill()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


# Charts with drawn content (a rect, path, polyline, polygon or circle) and a rendered size.
DRAWN_CHARTS = """
Array.from(document.querySelectorAll('svg.chart')).filter(s => {
  const box = s.getBoundingClientRect();
  return box.width > 100 && box.height > 100 &&
    s.querySelectorAll('rect, polyline, polygon, circle, path').length > 0;
}).map(s => s.dataset.chart)
"""

# Pairs of text labels, within a chart, whose rendered boxes overlap (by more than half a px).
OVERLAPPING_LABELS = """
(() => {
  const found = [];
  for (const svg of document.querySelectorAll('svg.chart')) {
    const boxes = Array.from(svg.querySelectorAll('text'))
      .filter(t => t.textContent.trim())
      .map(t => [t.textContent, t.getBoundingClientRect()]);
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [ta, a] = boxes[i], [tb, b] = boxes[j];
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 0.5 && h > 0.5) found.push(`${svg.dataset.chart}: '${ta}' / '${tb}'`);
      }
    }
  }
  return found;
})()
"""

# Charts with neither a legend with text nor a labelled series.
UNEXPLAINED_CHARTS = """
Array.from(document.querySelectorAll('svg.chart')).filter(s =>
  !s.querySelector('g.legend text') && !s.querySelector('text.series-label')
).map(s => s.dataset.chart || '(unnamed)')
"""


def print_pdf(page: Path, pdf: Path) -> None:
    """Print ``page`` to ``pdf`` with Chromium's own ``--print-to-pdf`` (print stylesheet)."""
    assert CHROMIUM is not None, "chromium is required in CI: make test installs it"
    profile = tempfile.mkdtemp(prefix="livecalc-pdf-")
    try:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--no-pdf-header-footer",
                f"--print-to-pdf={pdf}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def pdf_pages_ink(pdf: Path, folder: Path) -> list[float]:
    """The share of non-white pixels on each page of ``pdf``, as pdftoppm renders them."""
    pdftoppm = shutil.which("pdftoppm")
    assert pdftoppm is not None, "poppler-utils is required in CI: make test installs it"
    subprocess.run([pdftoppm, "-r", "30", str(pdf), str(folder / "page")], check=True, timeout=120)
    shares = []
    for ppm in sorted(folder.glob("page-*.ppm")):
        data = ppm.read_bytes()
        # P6 header: magic, width, height, maxval, each followed by one whitespace byte.
        fields = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
        assert fields is not None, ppm
        width, height = int(fields.group(1)), int(fields.group(2))
        pixels = data[fields.end() :]
        dark = sum(1 for i in range(0, len(pixels), 3) if min(pixels[i : i + 3]) < 200)
        shares.append(dark / (width * height))
    return shares


CHECKS = [
    {"kind": "finite", "dataset": "results"},
    {"kind": "metric", "name": "mean_huge", "severity": "warn", "expr": "mean > 1e30"},
]


def _goal_seek_pipeline(tmp_path: Path, seed: int) -> Path:
    config = real_pipeline(tmp_path, CHECKS, sla={"run_seconds": 600})
    raw = json.loads(config.read_text())
    raw["engines"][0]["config"]["seed"] = seed
    raw["engines"][2]["config"]["optimization"] = {
        "parameters": [{"name": "premium_multiplier", "bounds": [0.1, 5.0]}],
        "objective": {"metric": "mean", "direction": "target", "target": 0.0},
    }
    config.write_text(json.dumps(raw))
    return config


def _full_example(tmp_path: Path) -> Path:
    """examples/dag_config_full_pipeline.json in tmp_path, with a currency and two checks."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    shutil.copytree(examples / "data", tmp_path / "data")
    raw = json.loads((examples / "dag_config_full_pipeline.json").read_text())
    raw["report"] = {"currency": "EUR"}
    raw["checks"] = [
        {
            "kind": "finite",
            "dataset": "results",
            "description": "every policy's NPV in every scenario is a finite number",
        },
        {
            "kind": "metric",
            "name": "cte_floor",
            "expr": "cte_95 > -5e7",
            "severity": "warn",
            "description": "the CTE 95% stays above -50m",
        },
    ]
    config = tmp_path / "dag_config_full_pipeline.json"
    config.write_text(json.dumps(raw))
    return config


def _latest(tmp_path: Path) -> dict[str, Any]:
    return RunStore().get(RunStore().run_ids()[0])


class TestReportInChromium:
    @pytest.mark.slow
    def test_full_example_report_explains_itself(self, tmp_path: Path, browser: Browser) -> None:
        """The full example's report: no console error, every chart explained, no label over
        another, a first screen that names the key metrics with units; screenshot and PDF."""
        config = _full_example(tmp_path)
        report = tmp_path / "report.html"

        result = CliRunner().invoke(
            app, ["run", str(config), "--no-progress", "--report", str(report)]
        )
        browser.load(report)
        charts = browser.evaluate(DRAWN_CHARTS)
        overlaps = browser.evaluate(OVERLAPPING_LABELS)
        unexplained = browser.evaluate(UNEXPLAINED_CHARTS)
        summary = browser.evaluate("document.querySelector('#summary').innerText")
        seek = browser.evaluate("document.querySelector('svg[data-chart=goal_seek]').textContent")
        fan = browser.evaluate("document.querySelector('svg[data-chart=esg_fan]').textContent")
        summary_bottom = browser.evaluate(
            "document.querySelector('#summary').getBoundingClientRect().bottom"
        )
        shot = browser.screenshot(ARTIFACTS / "report_full_example.png")
        shutil.copy(report, ARTIFACTS / "report_full_example.html")
        pdf = ARTIFACTS / "report_full_example.pdf"
        print_pdf(report, pdf)
        ink = pdf_pages_ink(pdf, tmp_path)
        text = report.read_text()

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert ["npv", "goal_seek", "esg_fan", "timeline"] == charts
        assert [] == overlaps
        assert [] == unexplained
        assert "Premium multiplier" in seek and "target" in seek  # x: the parameter
        for band in ("1st to 99th percentile", "5th to 95th percentile", "median"):
            assert band in fan
        money = r"-?[\d,]+\.\d\d\sEUR"
        for label in ("Mean NPV", "VaR 95%", "CTE 95%"):
            assert re.search(f"{re.escape(label)}\\s{money}", summary), summary
        assert re.search(r"premium multiplier of \d\.\d{4}\sx", summary), summary
        assert "every policy's NPV in every scenario is a finite number" in summary
        assert "All 2 checks passed." in summary
        assert summary_bottom < 800  # the summary is on the first screen
        assert "dag_config_full_pipeline" in browser.evaluate(
            "document.querySelector('h1').innerText"
        )
        assert shot.stat().st_size > 10_000
        assert len(ink) >= 2 and all(share > 0.005 for share in ink), ink
        assert "<script" not in text
        assert "http://" not in text.replace('xmlns="http://www.w3.org', "")

    def test_run_report_shows_checks_and_sla(self, tmp_path: Path, browser: Browser) -> None:
        """`run --report`: checks (a failed warning among them) and the SLA, with labels."""
        config = _goal_seek_pipeline(tmp_path, seed=1)
        report = tmp_path / "report.html"

        result = CliRunner().invoke(
            app, ["run", str(config), "--no-progress", "--report", str(report)]
        )
        browser.load(report)
        text = browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "report_run.png")

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert [] == browser.evaluate(OVERLAPPING_LABELS)
        assert "1 of 2 checks passed; failed: mean_huge (warning)." in text
        assert "finite:results" in text
        assert "SLA" in text and "met" in text
        assert "VaR 99.5%" in text and "solver.metrics.var_99_5" in text

    def test_report_timeline_and_nodes_table_give_the_same_seconds(self, tmp_path: Path) -> None:
        """Each timeline bar's label is the nodes table's seconds for that node."""
        from livecalc.ops.report import render_report

        config = _goal_seek_pipeline(tmp_path, seed=1)
        CliRunner().invoke(app, ["run", str(config), "--no-progress"])
        record = _latest(tmp_path)

        text = render_report(record)

        timeline = text[text.index('data-chart="timeline"') :]
        for node in record["nodes"]:
            seconds = f"{node['seconds']:,.3f} s"
            assert f">{node['node_id']}: {seconds}</title>" in timeline
            assert f'<span class="num">{seconds[:-2]}</span>' in text

    def test_compare_orders_metrics_by_move_and_overlays_distributions(
        self, tmp_path: Path, browser: Browser
    ) -> None:
        """`report RUN --against OTHER`: the largest move first, moves past 5% highlighted, both
        NPV distributions on one chart, config differences beside the metrics."""
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        for folder, seed in (("a", 1), ("b", 2)):
            config = _goal_seek_pipeline(tmp_path / folder, seed=seed)
            CliRunner().invoke(app, ["run", str(config), "--no-progress"])
        newer, older = RunStore().run_ids()
        report = tmp_path / "compare.html"

        result = CliRunner().invoke(
            app, ["report", newer, "--against", older, "--out", str(report)]
        )
        browser.load(report)
        charts = browser.evaluate(DRAWN_CHARTS)
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('.side table')[0].querySelectorAll('tbody tr'))"
            ".filter(r => r.cells[1].innerText != 's')"  # times (seconds) come last
            ".map(r => [r.cells[0].innerText, r.cells[5].innerText, r.className])"
        )
        side = browser.evaluate(
            "Array.from(document.querySelectorAll('.side > div')).map(d => {"
            "const b = d.getBoundingClientRect(); return [b.left, b.right, b.top];})"
        )
        legend = browser.evaluate(
            "document.querySelector('svg[data-chart=npv_compare] g.legend').textContent"
        )
        text = browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "report_compare.png")
        shutil.copy(report, ARTIFACTS / "report_compare.html")

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert [] == browser.evaluate(OVERLAPPING_LABELS)
        assert [] == browser.evaluate(UNEXPLAINED_CHARTS)
        assert "npv_compare" in charts and len(charts) == 5
        moves = [abs(float(m.rstrip("%"))) for _, m, _ in rows if m]
        assert moves == sorted(moves, reverse=True) and moves[0] > 5
        assert [m for _, m, c in rows if c == "moved"] == [
            m for _, m, _ in rows if m and abs(float(m.rstrip("%"))) > 5
        ]
        assert len({label for label, _, _ in rows}) == len(rows)  # no metric twice
        (_, right_a, top_a), (left_b, _, top_b) = side
        assert left_b >= right_a and top_a == top_b  # side by side
        assert f"run {older}" in legend and f"this run {newer}" in legend
        assert f"What moved against run {older}" in text
        assert f"(moves against run {older})." in text  # the summary gives the moves
        assert browser.evaluate("document.querySelectorAll('.tile.moved').length") >= 1
        assert "engines[esg].config.seed" in text

    def test_non_finite_results_still_make_a_report(self, tmp_path: Path, browser: Browser) -> None:
        """Sums that overflow to -inf (sum assured 1e308): `run --report` and `report RUN_ID`
        both write a report that draws what it can and says what is not finite."""
        config = real_pipeline(tmp_path, [])
        policies = pq.read_table(tmp_path / "policies.parquet")
        i = policies.schema.get_field_index("sum_assured")
        huge = pa.array([1e308] * len(policies), type=policies.schema.field(i).type)
        pq.write_table(policies.set_column(i, "sum_assured", huge), tmp_path / "policies.parquet")
        report = tmp_path / "again.html"

        ran = CliRunner().invoke(
            app, ["run", str(config), "--no-progress", "--report", str(tmp_path / "r.html")]
        )
        record = _latest(tmp_path)
        again = CliRunner().invoke(app, ["report", record["run_id"], "--out", str(report)])
        browser.load(report)
        text = browser.evaluate("document.body.innerText")

        assert ran.exit_code in (0, 1), ran.output  # the solver may refuse -inf metrics
        assert math.isinf(record["charts"]["npv"]["values"][0])
        assert 0 == again.exit_code, again.output
        assert [] == browser.errors()
        assert [] == browser.evaluate(OVERLAPPING_LABELS)
        assert "not finite" in text
        assert "timeline" in browser.evaluate(DRAWN_CHARTS)

    def test_the_harness_sees_console_errors(self, tmp_path: Path, browser: Browser) -> None:
        """A page with a script error and an empty chart is caught (the checks can fail)."""
        page = tmp_path / "broken.html"
        page.write_text(
            "<html><body><svg class='chart' width='300' height='200'></svg>"
            "<script>console.error('boom'); undefinedFunction();</script></body></html>"
        )

        browser.load(page)

        assert 2 == len(browser.errors())
        assert [] == browser.evaluate(DRAWN_CHARTS)

    def test_the_harness_sees_overlaps_and_unexplained_charts(
        self, tmp_path: Path, browser: Browser
    ) -> None:
        """Two labels drawn on one another, and a chart with neither legend nor labelled
        series, are caught (the label and legend checks can fail)."""
        page = tmp_path / "cluttered.html"
        page.write_text(
            "<html><body><svg class='chart' data-chart='bad' width='300' height='200'>"
            "<rect x='0' y='0' width='10' height='10'/>"
            "<text x='10' y='20'>VaR 99.5% -1.2M</text><text x='30' y='22'>CTE 99.5% -1.4M</text>"
            "</svg></body></html>"
        )

        browser.load(page)

        assert ["bad: 'VaR 99.5% -1.2M' / 'CTE 99.5% -1.4M'"] == browser.evaluate(
            OVERLAPPING_LABELS
        )
        assert ["bad"] == browser.evaluate(UNEXPLAINED_CHARTS)


class TestReprHtml:
    def test_notebook_shows_summary_key_metrics_and_the_report_chart(
        self, tmp_path: Path, browser: Browser
    ) -> None:
        """RunResult._repr_html_: header, summary, key metrics and the report's NPV chart (the
        same SVG), rendered in Chromium without errors or overlapping labels."""
        import livecalc
        from livecalc.ops.report import render_report

        config = real_pipeline(tmp_path, CHECKS)
        result = livecalc.run(config)
        page = tmp_path / "notebook.html"

        html = result._repr_html_()
        page.write_text(f"<!DOCTYPE html><html><body>{html}</body></html>")
        browser.load(page)
        text = browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "notebook.png")
        svg = re.search(r"<svg.*?</svg>", html, re.S)

        assert [] == browser.errors()
        assert ["npv"] == browser.evaluate(DRAWN_CHARTS)
        assert [] == browser.evaluate(OVERLAPPING_LABELS)
        assert "Summary" in text and "Mean NPV" in text and "CTE 99.5%" in text
        assert "mean_huge" in text
        assert svg is not None and svg.group(0) in render_report(result.record)  # type: ignore[attr-defined]

    def test_plain_pipeline_run_keeps_its_table(self, tmp_path: Path) -> None:
        """A run without the operations layer (pipeline.api.run) shows its nodes table."""
        from livecalc.pipeline.api import run

        config = real_pipeline(tmp_path, [])

        html = run(config)._repr_html_()

        assert html.startswith("<table>") and "projection" in html


class TestLabels:
    def test_each_kind_has_one_format(self) -> None:
        """Money 2 decimals with separators, ratios as %, counts whole, factors 4 decimals."""
        from livecalc.ops.labels import format_value

        assert "1,104,122.06" == format_value(1104122.0569774336, "money")
        assert "503,118.00" == format_value(503118, "money")
        assert "0.00" == format_value(-1.08e-10, "money")  # never "-0.00"
        assert "-3.94%" == format_value(-0.0394, "ratio")
        assert "20,000" == format_value(20000.0, "count")
        assert "0.8827" == format_value(0.8826970647706073, "factor")
        assert "4.686" == format_value(4.686298, "seconds")
        assert ["-inf", "+inf", "NaN", "-inf"] == [
            format_value(v, "money") for v in (-math.inf, math.inf, math.nan, "-inf")
        ]

    def test_solver_metrics_have_labels_units_and_no_duplicates(self) -> None:
        """The solver's keys read as people say them; solution.* and optimization.* once."""
        from livecalc.ops.labels import describe_metrics, unit_of

        record = {
            "nodes": [{"node_id": "solver", "engine_type": "solver"}],
            "metrics": {
                "solver": {
                    "scenarios": 100.0,
                    "metrics.count": 100.0,
                    "metrics.cte_99_5": -1.5e6,
                    "metrics.var_95": -2.7e5,
                    "metrics.p99_5": 1.1e6,
                    "solution.premium_multiplier": 0.88,
                    "optimization.parameters.premium_multiplier": 0.88,
                    "optimization.objective_value": 1e-10,
                    "solution.objective_value": 1e-10,
                }
            },
        }

        metrics = describe_metrics(record)

        assert [
            ("Scenarios", "count"),
            ("CTE 99.5%", "money"),
            ("VaR 95%", "money"),
            ("NPV 99.5th percentile", "money"),
            ("Premium multiplier", "factor"),
            ("Goal-seek objective at the solution", "money"),
        ] == [(m.label, m.kind) for m in metrics]
        assert "EUR" == unit_of("money", "EUR") and "" == unit_of("money")
        assert ["CTE 99.5%", "VaR 95%", "Premium multiplier"] == [
            m.label for m in metrics if m.key_metric
        ]

    def test_unknown_engines_keep_their_keys(self) -> None:
        """A plug-in engine's metric keeps a readable form of its key and a plain number."""
        from livecalc.ops.labels import label_of

        assert ("Pv premiums", "number", False) == label_of("my_engine", "pv_premiums")


class TestCompareRecords:
    def test_metrics_are_ordered_by_the_size_of_their_move(self) -> None:
        """Largest relative move first; a metric in one run only, last."""
        from livecalc.ops.report import compare_records

        def record(run_id: str, metrics: dict[str, float]) -> dict[str, Any]:
            nodes = [{"node_id": "solver", "engine_type": "solver", "seconds": 1.0}]
            return {"run_id": run_id, "nodes": nodes, "metrics": {"solver": metrics}}

        a = record("a", {"metrics.mean": 100.0, "metrics.var_95": -10.0, "metrics.std": 5.0})
        b = record("b", {"metrics.mean": 101.0, "metrics.var_95": 4.8, "metrics.cte_95": -3.0})

        diff = compare_records(a, b)

        assert ["solver.metrics.var_95", "solver.metrics.mean"] == [
            m["metric"] for m in diff["metrics"][:2]
        ]
        assert [1.48, 0.01] == [round(m["relative"], 10) for m in diff["metrics"][:2]]
        assert {"solver.metrics.cte_95", "solver.metrics.std"} == {
            m["metric"] for m in diff["metrics"][2:]
        }
        assert "VaR 95%" == diff["metrics"][0]["label"]


class TestAxes:
    @settings(max_examples=200)
    @given(
        lo=st.floats(-1e12, 1e12, allow_nan=False),
        span=st.floats(1e-9, 1e12, allow_nan=False),
    )
    def test_ticks_cover_the_data_with_distinct_labels(self, lo: float, span: float) -> None:
        """At least 4 evenly spaced ticks from at or below the lowest value to at or above
        the highest (no point falls outside the axis), each written differently."""
        from livecalc.ops._svg import nice_ticks, tick_formatter

        hi = lo + span
        if hi <= lo:
            return

        ticks = nice_ticks(lo, hi)

        steps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(ticks) >= 4
        assert ticks[0] <= lo and ticks[-1] >= hi
        assert max(steps) - min(steps) <= 1e-9 * max(abs(ticks[0]), abs(ticks[-1]), steps[0])
        for kind in ("money", "ratio"):
            labels = [tick_formatter(ticks, kind)(t) for t in ticks]
            assert len(set(labels)) == len(labels), labels

    def test_non_finite_values_are_left_out_and_counted(self) -> None:
        """A histogram of -inf, NaN and finite values draws the finite ones and says how
        many it left out; a marker at -inf is listed, not drawn."""
        from livecalc.ops._svg import Marker, Series, histogram

        svg = histogram(
            [Series("NPV", [1.0, 2.0, -math.inf, math.nan, 3.0])],
            [Marker("VaR 95%", -math.inf, "-inf")],
            "NPV",
            "NPV",
        )

        assert "3 scenarios" in svg and "2 scenarios not finite:" in svg
        assert "VaR 95%" in svg and "stroke-dasharray" in svg
        assert "nan" not in svg.lower().replace("-inf", "")

    def test_a_record_of_nothing_but_non_finite_numbers_renders(self) -> None:
        """Every number -inf or NaN (metrics, chart values, markers, rates, the goal seek):
        the report is written, each chart drawn with what it has."""
        from livecalc.ops.report import render_report

        inf, nan = -math.inf, math.nan
        record = {
            "run_id": "x",
            "status": "failed",
            "seconds": nan,
            "nodes": [
                {"node_id": "solver", "engine_type": "solver", "status": "failed", "seconds": inf}
            ],
            "metrics": {"solver": {"metrics.mean": inf, "metrics.cte_95": nan}},
            "charts": {
                "timeline": [{"node_id": "solver", "start": nan, "end": inf, "status": "failed"}],
                "npv": {"values": [inf, nan], "markers": {"var_95": nan}},
                "esg_fan": {"years": [1, 2], "percentiles": {"50": [nan, inf]}, "scenarios": 2},
                "goal_seek": {"objective": [inf, nan], "parameters": [{"p": 1.0}, {"p": nan}],
                              "target": inf, "metric": "mean", "converged": False},
            },
        }  # fmt: skip

        text = render_report(record)

        assert "Mean NPV" in text and "-inf" in text and "NaN" in text
        assert "not finite" in text


class TestReportConfig:
    def test_bad_report_options_are_refused_by_path(self, tmp_path: Path) -> None:
        """`report.currency` too long and an unknown `report` key: one error naming both."""
        from livecalc.errors import ConfigurationError
        from livecalc.pipeline.loading import load_config

        raw = json.loads(real_pipeline(tmp_path, []).read_text())
        raw["report"] = {"currency": "EURO-DOLLARS-X", "colour": "red"}

        with pytest.raises(ConfigurationError) as caught:
            load_config(raw, base_dir=tmp_path)

        assert "report.currency" in str(caught.value)
        assert "report.colour" in str(caught.value)


class TestReportView:
    def test_the_valuation_date_is_shown_when_the_record_has_one(self) -> None:
        """A record (or its config) with a valuation date shows it in the header; none, no
        empty slot."""
        from livecalc.ops.report import render_report

        dated = {"run_id": "r", "status": "succeeded", "valuation_date": "2026-12-31"}
        in_config = {"run_id": "r", "provenance": {"config": {"valuation_date": "2026-06-30"}}}

        assert "valuation date <b>2026-12-31</b>" in render_report(dated)
        assert "valuation date <b>2026-06-30</b>" in render_report(in_config)
        assert "valuation date" not in render_report({"run_id": "r", "status": "failed"})

    def test_a_failed_or_dead_run_says_so_first(self) -> None:
        """The summary of a failed run names the failed node and its error; a dead run says
        its process is gone."""
        from livecalc.ops.report import render_report

        failed = {
            "run_id": "r",
            "status": "failed",
            "nodes": [{"node_id": "projection", "status": "failed", "error": "no such table"}],
        }

        assert "Node projection failed: no such table." in render_report(failed)
        assert "its process is gone" in render_report({"run_id": "r", "status": "dead"})


class TestClusterSection:
    def test_report_shows_where_a_pooled_run_ran(self, tmp_path: Path, browser: Browser) -> None:
        """`run --executor processes --parallelism 2 --report`: the report's Cluster section
        shows the executor, the parallelism and each replica's location with its chunks, as the
        run store recorded them; no console error."""
        from livecalc.io.generate import generate_policies, write_policies

        write_policies(tmp_path / "policies.parquet", generate_policies(300, seed=2))
        config = tmp_path / "pool.json"
        config.write_text(
            json.dumps(
                {
                    "plugins": ["livecalc.testing:register_testing_engines"],
                    "data_sources": {"policies": {"path": "policies.parquet"}},
                    "engines": [
                        {"id": "echo", "type": "test_echo", "inputs": ["policies"],
                         "outputs": ["out"]},
                    ],
                    "output": {"path": "out.parquet"},
                    "run": {"chunk_size": 50},
                }
            )
        )  # fmt: skip
        report = tmp_path / "report.html"

        result = CliRunner().invoke(
            app,
            ["run", str(config), "--no-progress", "--executor", "processes", "--parallelism",
             "2", "--report", str(report)],
        )  # fmt: skip
        browser.load(report)
        text = browser.evaluate("document.body.innerText")
        (record,) = [RunStore().get(run_id) for run_id in RunStore().run_ids()]
        cluster = record["cluster"]
        pool = cluster["nodes"]["echo"]

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert ("processes", 2, None) == (
            cluster["executor"], cluster["parallelism"], cluster["address"]
        )  # fmt: skip
        assert 2 == pool["replicas"] == len(pool["replicas_by_location"])
        assert 6 == sum(pool["chunks_by_location"].values())
        assert "Cluster" in text
        assert all(where in text for where in pool["chunks_by_location"])
        assert "this machine" in text
