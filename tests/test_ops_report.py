"""The HTML run report, opened in a real headless Chromium over the DevTools protocol.

Each page is loaded from its file with the network cut off; the test collects console
errors and uncaught exceptions, counts the SVG charts that have drawn content and a size,
and saves a screenshot under test-artifacts/ (gitignored) for a person to look at.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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


class TestReportInChromium:
    def test_run_report_renders_every_chart_without_errors(
        self, tmp_path: Path, browser: Browser
    ) -> None:
        """`run --report`: no console error, 4 drawn charts, checks and SLA shown; screenshot."""
        config = _goal_seek_pipeline(tmp_path, seed=1)
        report = tmp_path / "report.html"

        result = CliRunner().invoke(
            app, ["run", str(config), "--no-progress", "--report", str(report)]
        )
        browser.load(report)
        charts = browser.evaluate(DRAWN_CHARTS)
        text = browser.evaluate("document.body.innerText")
        shot = browser.screenshot(ARTIFACTS / "report_run.png")

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert ["timeline", "npv", "esg_fan", "goal_seek"] == charts
        assert "mean_huge" in text and "FAILED" in text
        assert "finite:results" in text
        assert "SLA" in text and "met" in text
        assert shot.stat().st_size > 10_000
        assert "<script" not in report.read_text()
        assert "http://" not in report.read_text().replace('xmlns="http://www.w3.org', "")

    def test_report_command_compares_two_runs(self, tmp_path: Path, browser: Browser) -> None:
        """`report RUN --against OTHER`: metrics side by side with differences, no errors."""
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
        text = browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "report_compare.png")

        assert 0 == result.exit_code, result.output
        assert [] == browser.errors()
        assert 4 == len(charts)
        assert f"Metrics, compared with run {older}" in text
        assert "solver.metrics.mean" in text
        assert "engines[esg].config.seed" in text

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


class TestReprHtml:
    def test_run_result_shows_a_table_in_notebooks(self, tmp_path: Path) -> None:
        """RunResult._repr_html_ is an HTML table of the nodes and the checks."""
        import livecalc

        config = real_pipeline(tmp_path, CHECKS)

        html = livecalc.run(config)._repr_html_()

        assert html.startswith("<table>")
        assert "projection" in html and "mean_huge" in html


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
