"""Docs that claimed more than the code (issue 19, items 30 and 32): each claim held here
against the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

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
