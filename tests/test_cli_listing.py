"""Listing commands for people and for scripts: whole values when the output is not a
terminal (cron, CI logs), ``--format plain|csv|json`` everywhere, ``livecalc --version``."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.cli.app import app
from test_ops_checks import real_pipeline

LONG_ID = "nightly-2026-12-07-term-book-year-end-valuation-with-a-long-run-id"
CHECKS = [
    {
        "kind": "finite",
        "dataset": "results",
        "description": "every NPV is a finite number",
    },
    {"kind": "metric", "name": "mean_huge", "severity": "warn", "expr": "mean > 1e30"},
]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[str, str]:
    """Two recorded runs of one small pipeline (EUR), the ESG seed changed between them."""
    config = real_pipeline(tmp_path, CHECKS, report={"currency": "EUR"})
    livecalc.run(config, run_id=LONG_ID)
    raw = json.loads(config.read_text())
    raw["engines"][0]["config"]["seed"] = 7
    config.write_text(json.dumps(raw))
    second = livecalc.run(config)
    return LONG_ID, second.run_id


class TestListingCommands:
    def test_runs_list_through_a_pipe_shows_whole_ids_statuses_and_times(
        self, two_runs: tuple[str, str]
    ) -> None:
        """`livecalc runs list | cat`: every id, status and start time whole (no "…")."""
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        exe = Path(sys.executable).with_name("livecalc")

        out = subprocess.run(
            [str(exe), "runs", "list"], capture_output=True, text=True, timeout=120, env=env
        )

        assert 0 == out.returncode, out.stderr
        assert LONG_ID in out.stdout and two_runs[1] in out.stdout
        assert 2 == out.stdout.count("succeeded")
        assert 2 == len(re.findall(r"\b20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\b", out.stdout))
        assert "…" not in out.stdout

    def test_run_summary_through_a_pipe_is_not_cut(self, tmp_path: Path) -> None:
        """`livecalc run CONFIG | cat`: the end-of-run tables keep every status and count whole
        (a cron log once read `succeed…`, `5,0…`)."""
        config = real_pipeline(tmp_path, [])
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        exe = Path(sys.executable).with_name("livecalc")

        out = subprocess.run(
            [str(exe), "run", str(config), "--no-progress"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )

        assert 0 == out.returncode, out.stderr
        assert 3 == len(re.findall(r"│ (esg|projection|solver) +│ succeeded │", out.stdout))
        assert "…" not in out.stdout

    def test_every_listing_command_prints_json_csv_and_plain(
        self, two_runs: tuple[str, str]
    ) -> None:
        """`--format json` of every listing command parses; csv has its header; plain too."""
        first, second = two_runs
        commands = [
            ["runs", "list"],
            ["runs", "show", first],
            ["runs", "compare", first, second],
            ["check", second],  # the latest run: the first's outputs were overwritten
            ["engines"],
        ]
        headers = {
            "runs list": "run_id,started_at,status,seconds,source,checks,sla,config",
            "runs show": "node,metric,label,value,unit",
            "runs compare": f"metric,label,unit,a {first},b {second},difference,relative",
            "check": "check,severity,result,message",
            "engines": "type,aliases,name,version,AM",
        }

        for command in commands:
            name = " ".join(command[:2]) if command[0] == "runs" else command[0]
            as_json = _cli(*command, "--format", "json")
            as_csv = _cli(*command, "--format", "csv")
            plain = _cli(*command, "--format", "plain")

            assert 0 == as_json.exit_code, (command, as_json.output)
            assert json.loads(as_json.stdout)
            rows = list(csv.reader(io.StringIO(as_csv.stdout)))
            assert headers[name] == ",".join(rows[0])
            assert len(rows) > 1
            assert 0 == plain.exit_code and "┃" not in plain.stdout, plain.output

    def test_json_flag_is_format_json_and_a_clash_is_refused(
        self, two_runs: tuple[str, str]
    ) -> None:
        """`--json` prints what `--format json` prints; `--json --format csv` exits 2."""
        same = _cli("runs", "list", "--json")
        clash = _cli("runs", "list", "--json", "--format", "csv")

        assert json.loads(_cli("runs", "list", "--format", "json").output) == json.loads(
            same.output
        )
        assert 2 == clash.exit_code
        assert "disagree" in clash.output

    def test_runs_show_lists_metrics_with_labels_units_and_checks(
        self, two_runs: tuple[str, str]
    ) -> None:
        """`runs show`: each metric's label, value, unit and stored name; each check."""
        shown = _cli("runs", "show", LONG_ID)

        assert 0 == shown.exit_code, shown.output
        assert re.search(r"Mean NPV\s.*\d\.\d\d\s.*EUR\s.*solver\.metrics\.mean", shown.output)
        assert re.search(r"CTE 99\.5%\s.*EUR", shown.output)
        assert "finite:results" in shown.output and "every NPV is a finite number" in shown.output
        assert "mean_huge" in shown.output and "FAILED" in shown.output

    def test_compare_lists_the_largest_move_first(self, two_runs: tuple[str, str]) -> None:
        """`runs compare --format csv`: rows by the size of their relative move (the solver's
        own times last)."""
        out = _cli("runs", "compare", *two_runs, "--format", "csv")

        rows = list(csv.DictReader(io.StringIO(out.output)))
        moves = [
            abs(float(r["relative"].rstrip("%")))
            for r in rows
            if r["relative"] and r["unit"] != "s"
        ]
        assert moves == sorted(moves, reverse=True)
        assert moves[0] > 0


class TestVersion:
    def test_version_prints_the_package_version(self) -> None:
        """`livecalc --version` prints `livecalc X.Y.Z` and exits 0."""
        out = _cli("--version")

        assert 0 == out.exit_code
        assert f"livecalc {livecalc.__version__}\n" == out.output
