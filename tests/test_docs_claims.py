"""Docs that claimed more than the code (issue 19, items 30 and 32): each claim held here
against the code it describes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from livecalc.assumptions._am_cache import default_cache_dir
from livecalc.engines.projection import ProjectionEngine
from livecalc.errors import ConfigurationError
from livecalc.masking import mask_secret
from livecalc.ops.checkpoint import PART_SUFFIX, RunCheckpoint
from livecalc.pipeline.config import RunOptions
from livecalc.runtime.buffers import POLICY_DTYPE

DOCS = Path(__file__).parents[1] / "docs"


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


class TestDataMd:
    def test_cashflow_units_are_not_money_where_they_are_not(self) -> None:
        """time_years is in years, lives are policies, the discount factor has no unit."""
        table = _section(_text("data.md"), "### CASHFLOW")
        units = dict(
            re.findall(r"^\| \d+ \| \d+ \| \w+ \| `(\w+)` \| .* \| ([^|]+) \|$", table, re.M)
        )

        assert "years from valuation" == units["time_years"].strip()
        for field in ("policies_in_force", "deaths", "lapses"):
            assert "policies" == units[field].strip(), field
        assert "money" not in units["discount_factor"]
        assert "money" == units["premiums"].strip()

    def test_yield_curve_year_0_is_documented_as_the_engine_takes_it(self, tmp_path: Path) -> None:
        """data.md: years 0..N with step_spot; the engine takes a year-0 row with step_spot
        and refuses it with another convention, as the doc says."""
        section = _section(_text("data.md"), "### Yield curve")
        curve = tmp_path / "curve.csv"
        curve.write_text("year,rate\n0,0.02\n" + "".join(f"{y},0.03\n" for y in range(1, 31)))
        pol = np.array([(1, 40, 0, 0, 0, 10, 10_000.0, 500.0)], dtype=POLICY_DTYPE)
        table = tmp_path / "q.parquet"
        pq.write_table(pa.table({"age": list(range(121)), "q": [0.01] * 120 + [1.0]}), table)

        spot = ProjectionEngine()
        spot.initialize(
            {
                "yield_curve": str(curve),
                "mortality_table": str(table),
                "discounting": {"convention": "step_spot"},
            }
        )
        spec = spot.output_spec({"p": pol})
        out = np.zeros(spec.records, spec.dtype)
        spot.run_chunk({"p": pol}, out)
        other = ProjectionEngine()

        assert "years 0..N" in section and "step_spot" in section
        assert np.isfinite(out["npv"]).all()
        with pytest.raises(ConfigurationError, match="year-0 rate is used by step_spot"):
            other.initialize({"yield_curve": str(curve), "mortality_table": str(table)})


class TestItem32:
    def test_checkpoint_min_chunk_seconds_has_no_default(self) -> None:
        """integrations.md no longer gives it a default of 0.5 s; the code has none."""
        text = _text("integrations.md")

        assert None is RunOptions().checkpoint_min_chunk_seconds
        assert "(0.5 s by default)" not in text
        assert "`run.checkpoint_min_chunk_seconds` is set (no default)" in " ".join(text.split())

    def test_ports_md_names_parts_as_the_code_writes_them(self, tmp_path: Path) -> None:
        from livecalc.ops.checkpoint import LocalCheckpointStore

        cp = RunCheckpoint(LocalCheckpointStore(tmp_path), "r", {})
        cp.put_chunk("n", 3, 5, np.zeros(2, dtype=POLICY_DTYPE))
        cp.close()
        written = sorted(p.name for p in (tmp_path / "r" / "n").iterdir())

        assert [f"chunk-000003{PART_SUFFIX}"] == written
        assert "`RUN_ID/NODE_ID/chunk-000003.rec`" in _text("ports.md")
        assert "chunk-000003.parquet" not in _text("ports.md")

    @pytest.mark.parametrize(
        ("length", "shown"), [(10, "***"), (20, "a...a"), (40, "aa...aa"), (64, "aaaa...aaaa")]
    )
    def test_architecture_md_states_the_mask_secret_rule(self, length: int, shown: str) -> None:
        """first4...last4 only from 64 characters, as architecture.md now says."""
        row = next(r for r in _text("architecture.md").splitlines() if "`mask_secret`" in r)

        assert shown == mask_secret("a" * length)
        assert "k = min(4, len // 16)" in row and "from 64 characters" in row

    def test_the_am_cache_follows_livecalc_home(
        self, livecalc_home: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """operations.md: everything in $LIVECALC_HOME, the AM cache included."""
        here = default_cache_dir()
        monkeypatch.delenv("LIVECALC_HOME")

        assert livecalc_home / "cache" == here
        assert Path.home() / ".livecalc" / "cache" == default_cache_dir()
        assert "cache/" in _section(_text("operations.md"), "$LIVECALC_HOME/")
        assert "`$LIVECALC_HOME/cache`" in _text("assumptions.md")


class TestTodaysDocs:
    """Claims of the docs changed on 2026-12-07, each held against the code it describes."""

    def test_json_short_form_is_on_the_commands_cli_md_names(self) -> None:
        """cli.md: `--json` on the `runs` commands and `check`, `--format` only on `engines`."""
        from typer.testing import CliRunner

        from livecalc.cli.app import app

        def cli(*args: str) -> Any:
            return CliRunner().invoke(app, list(args))

        text = " ".join(_text("cli.md").split())

        assert "short form of `--format json` on the `runs` commands and `check`" in text
        assert "(`engines` has `--format` only)" in text
        for command in (["runs", "list"], ["runs", "show"], ["runs", "compare"], ["check"]):
            assert "--json" in cli(*command, "--help").output, command
        assert 2 == cli("engines", "--json").exit_code
        assert 0 == cli("engines", "--format", "json").exit_code

    def test_runs_list_columns_say_what_operations_md_says(self) -> None:
        """`-` in the checks column also for a finished run that declares no checks; the SLA
        column `ok` for every finished run without a breach; counts for failures."""
        from livecalc.cli.runs import _verdict

        text = " ".join(_text("operations.md").split())
        succeeded, failed = {"status": "succeeded"}, {"status": "failed"}

        assert "`-` for a run that did not get that far or declares none" in text
        assert "the SLA column is `ok` for every finished run without a breach" in text
        assert "-" == _verdict(succeeded, 0, "failed", False)  # no checks declared
        assert "ok" == _verdict(succeeded, 0, "failed", True)
        assert "ok" == _verdict(succeeded, 0, "breached", True)  # the SLA column's call
        assert "-" == _verdict(failed, 0, "breached", True)
        assert "1 failed" == _verdict({"status": "check_failed"}, 1, "failed", True)

    def test_config_md_names_the_engine_types_validate_knows(self, tmp_path: Path) -> None:
        """The validation example's `known types` list is the one `livecalc validate` prints, and
        the `type` row names each of them."""
        from typer.testing import CliRunner

        from livecalc.cli.app import app

        config = tmp_path / "c.json"
        engine = {"id": "a", "type": "esgg", "config": {}, "inputs": [], "outputs": ["s"]}
        config.write_text(json.dumps({"engines": [engine]}))
        done = CliRunner().invoke(app, ["validate", str(config), "--no-engines"])
        printed = re.search(r"known types: ([^(]*) \(", " ".join(done.output.split()))
        documented = re.search(r"known types: ([^(]*) \(", _text("config.md"))

        row = next(
            r
            for r in _text("config.md").splitlines()
            if r.startswith("| `type` | string | required | an engine type")
        )

        assert 2 == done.exit_code
        assert printed is not None and documented is not None
        assert printed.group(1) == documented.group(1)
        for name in printed.group(1).split(", "):
            assert f"`{name}`" in row, name

    def test_report_options_have_the_documented_bounds(self) -> None:
        """config.md: move_threshold > 0, at most 1000, default 0.05; title at most 200."""
        from pydantic import ValidationError

        from livecalc.pipeline.config import ReportOptions

        row = next(r for r in _text("config.md").splitlines() if r.startswith("| `move_threshold`"))

        assert 0.05 == ReportOptions().move_threshold
        assert 1000 == ReportOptions(move_threshold=1000).move_threshold
        for bad in (0, 1000.5):
            with pytest.raises(ValidationError):
                ReportOptions(move_threshold=bad)
        with pytest.raises(ValidationError):
            ReportOptions(title="t" * 201)
        assert "number > 0, at most 1000" in row

    def test_nested_md_gives_the_outer_path_limit_as_the_engine_applies_it(self) -> None:
        """esg.outer + fit_outer + proxy_outer may equal the limit nested.md names, not pass it."""
        from livecalc.engines._nested_config import MAX_OUTER_IDS, parse_nested_config

        def config(proxy_outer: int) -> dict[str, Any]:
            esg = {"model": "hull_white", "outer": 10, "inner": 2}
            return {"esg": esg, "lsmc": {"fit_outer": 1000, "proxy_outer": proxy_outer}}

        text = " ".join(_text("engines/nested.md").split())

        assert f"must be at most {MAX_OUTER_IDS:,}" in text
        parse_nested_config(config(MAX_OUTER_IDS - 1010))
        with pytest.raises(ConfigurationError, match="lower proxy_outer"):
            parse_nested_config(config(MAX_OUTER_IDS - 1009))

    def test_store_false_keeps_a_checkpoint_only_where_one_is_given(
        self, tmp_path: Path, livecalc_home: Path
    ) -> None:
        """operations.md: store=False records nothing and keeps no checkpoint, unless
        `checkpoint=` is given too."""
        import livecalc

        examples = Path(__file__).parents[1] / "examples"
        shutil.copytree(examples / "data", tmp_path / "data")
        config = tmp_path / "projection_only.json"
        shutil.copy(examples / "dag_config_projection_only.json", config)
        text = " ".join(_text("operations.md").split())

        bare = livecalc.run(config, store=False)
        given = livecalc.run(config, store=False, checkpoint=tmp_path / "cp")

        assert "unless `livecalc.run` is also given a `checkpoint=` folder" in text
        assert not (livecalc_home / "runs").exists()
        assert not (livecalc_home / "runs.duckdb").exists()
        assert bare.run_id != given.run_id
        assert (tmp_path / "cp" / given.run_id / "manifest.json").is_file()

    def test_report_title_defaults_to_the_config_file_name_without_its_suffix(self) -> None:
        """config.md and operations.md: report.title, else the file's name less `.json`."""
        from livecalc.ops._report_view import ReportView

        def view(prov: dict[str, Any]) -> ReportView:
            return ReportView(record={"provenance": prov})

        config_md = " ".join(_text("config.md").split())
        operations_md = " ".join(_text("operations.md").split())

        assert "valuation" == view({"config_path": "/jobs/valuation.json"}).title
        assert (
            "Year end"
            == view(
                {"config_path": "/jobs/valuation.json", "config": {"report": {"title": "Year end"}}}
            ).title
        )
        assert "LiveCalc run" == view({}).title
        assert "the config file's name without its suffix (`valuation` for" in config_md
        assert "the config file's name without its suffix, else `LiveCalc run`" in operations_md
