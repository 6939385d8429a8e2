"""Config keys and overrides that change nothing are said (issue 19, item 20)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.pipeline._no_effect import no_effect_warnings
from livecalc.pipeline.loading import load_config
from livecalc.runtime.factory import EngineFactory

EXAMPLES = Path(__file__).parents[1] / "examples"
WARNING = "engines[1].config.discount_rate has no effect: node 'projection' reads scenarios"


@pytest.fixture
def full(tmp_path: Path) -> Path:
    """The full-pipeline example (ESG -> projection -> solver) in a folder of its own."""
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    raw = json.loads((EXAMPLES / "dag_config_full_pipeline.json").read_text())
    raw["output"] = {"path": "out/results.parquet", "summary_path": "out/summary.json"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _warnings(config: Path, *overrides: str) -> list[str]:
    return no_effect_warnings(load_config(config, list(overrides)), EngineFactory())


class TestNoEffect:
    def test_discount_rate_beside_scenarios_is_a_warning(self, full: Path) -> None:
        """--set projection.discount_rate=0.035 on a projection fed by the ESG: warned at
        validate (stderr) and at run (a `warning` event, reason no_effect)."""
        runner = CliRunner()

        validated = runner.invoke(
            app, ["validate", str(full), "--set", "projection.discount_rate=0.035"]
        )
        options = ["--no-progress", "--log-json", "--no-store"]
        ran = runner.invoke(
            app, ["run", str(full), *options, "--set", "projection.discount_rate=0.035"]
        )
        events = [json.loads(line) for line in ran.output.splitlines() if line.startswith("{")]

        assert 0 == validated.exit_code, validated.output
        assert WARNING in " ".join(validated.output.split())
        assert 0 == ran.exit_code, ran.output
        assert any(
            e.get("reason") == "no_effect" and WARNING in e.get("message", "") for e in events
        )

    @pytest.mark.parametrize(
        ("overrides", "warned"),
        [
            ((), False),
            (("projection.discount_rate=0.035",), True),
            (("projection.yield_curve=curve.csv",), True),
            # Equivalence premiums are priced on the deterministic curve: it has an effect.
            (
                (
                    "projection.discount_rate=0.035",
                    'projection.premium={"method": "equivalence", "loading": 0.2}',
                ),
                False,
            ),
        ],
    )
    def test_which_keys_have_no_effect(
        self, full: Path, overrides: tuple[str, ...], warned: bool
    ) -> None:
        (full.parent / "curve.csv").write_text("year,rate\n1,0.03\n")

        assert warned == bool(_warnings(full, *overrides))

    def test_without_scenarios_the_rate_is_used(self, tmp_path: Path) -> None:
        """A projection without a scenario input discounts at discount_rate: no warning."""
        shutil.copytree(EXAMPLES / "data", tmp_path / "data")
        raw: dict[str, Any] = {
            "data_sources": {"policies": {"path": "data/policies.parquet"}},
            "engines": [
                {
                    "id": "projection",
                    "type": "projection",
                    "config": {"discount_rate": 0.035},
                    "inputs": ["policies"],
                    "outputs": ["results"],
                }
            ],
        }
        (tmp_path / "config.json").write_text(json.dumps(raw))

        assert [] == _warnings(tmp_path / "config.json")

    def test_the_cli_docs_example_override_has_an_effect(self, full: Path) -> None:
        """docs/cli.md's `--set` example: no warning, and the results differ from a run
        without it."""
        doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
        line = next(ln for ln in doc.splitlines() if "dag_config_full_pipeline.json --set" in ln)
        override = line.split("--set ", 1)[1].strip()
        runner = CliRunner()

        base = runner.invoke(app, ["run", str(full), "--no-progress", "--no-store"])
        plain = pq.read_table(full.parent / "out" / "results.parquet").column("npv")
        changed = runner.invoke(
            app, ["run", str(full), "--no-progress", "--no-store", "--set", override]
        )
        stressed = pq.read_table(full.parent / "out" / "results.parquet").column("npv")

        assert (0, 0) == (base.exit_code, changed.exit_code), changed.output
        assert [] == _warnings(full, override)
        assert not plain.equals(stressed)
