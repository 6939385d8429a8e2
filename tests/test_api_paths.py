"""livecalc.run resolves engines' relative file paths against the config's folder and reads
credentials only where a run needs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.pipeline.api import run

TABLE = Path(__file__).parents[1] / "src" / "livecalc" / "data" / "mortality_gompertz_makeham.csv"


def _pipeline(folder: Path, mortality_table: str) -> Path:
    """A projection-only pipeline in ``folder`` with its own mortality table file."""
    (folder / "tables").mkdir(parents=True)
    shutil.copy(TABLE, folder / "tables" / "mortality.csv")
    write_policies(folder / "policies.parquet", generate_policies(50, seed=3))
    config: dict[str, Any] = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "projection",
                "type": "projection",
                "config": {"output": "scenario_totals", "mortality_table": mortality_table},
                "inputs": ["policies"],
                "outputs": ["totals"],
            }
        ],
    }
    path = folder / "pipeline.json"
    path.write_text(json.dumps(config), "utf-8")
    return path


class TestRelativePaths:
    def test_table_path_resolves_against_the_config_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A relative mortality_table is found beside the config, whatever the working folder."""
        config = _pipeline(tmp_path / "project", "tables/mortality.csv")
        absolute = _pipeline(tmp_path / "abs", str(tmp_path / "project/tables/mortality.csv"))
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")

        relative_run = run(config)
        absolute_run = run(absolute)

        assert relative_run.success
        np.testing.assert_array_equal(
            absolute_run.records("totals")["npv"], relative_run.records("totals")["npv"]
        )

    def test_missing_relative_table_is_named(self, tmp_path: Path) -> None:
        """A table file that exists nowhere is reported with the key that names it."""
        config = _pipeline(tmp_path / "project", "tables/nope.csv")

        with pytest.raises(ConfigurationError, match=r"mortality_table.*nope\.csv"):
            run(config)


class TestCredentials:
    def test_refused_credentials_file_does_not_stop_runs_without_am(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A credentials file others can read is ignored by a pipeline with no am:// table."""
        home = tmp_path / "home"
        creds = home / ".livecalc" / "credentials.json"
        creds.parent.mkdir(parents=True)
        creds.write_text(json.dumps({"am_url": "http://127.0.0.1:9", "am_token": "x" * 40}))
        creds.chmod(0o644)
        monkeypatch.setenv("HOME", str(home))
        for name in ("LIVECALC_AM_URL", "LIVECALC_AM_TOKEN", "LIVECALC_AM_CACHE_DIR"):
            monkeypatch.delenv(name, raising=False)
        config = _pipeline(tmp_path / "project", "tables/mortality.csv")

        result = run(config)

        assert result.success


class TestUriPaths:
    @pytest.mark.parametrize(
        ("section", "key", "uri", "where"),
        [
            ("output", "path", "s3://my-bucket/out/t.parquet", "output.path: 's3://my-bucket/out"),
            ("policies", "path", "s3://my-bucket/in/p.parquet", "data_sources.policies.path"),
            ("output", "summary_path", "gs://b/s.json", "output.summary_path: 'gs://b/s.json'"),
        ],
    )
    def test_a_uri_is_refused_not_made_a_local_folder(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        section: str,
        key: str,
        uri: str,
        where: str,
    ) -> None:
        """A data source or output given as a URI: exit 2 with one line naming the key and the
        fix; nothing is written (an s3:// output used to land in ./s3:/..., exit 0)."""
        from typer.testing import CliRunner

        from livecalc.cli.app import app

        config = _pipeline(tmp_path / "p", "tables/mortality.csv")
        raw = json.loads(config.read_text())
        raw["output"] = {"path": "out.parquet"}
        target = raw["output"] if section == "output" else raw["data_sources"][section]
        target[key] = uri
        config.write_text(json.dumps(raw))
        monkeypatch.chdir(tmp_path)

        result = CliRunner().invoke(app, ["run", str(config), "--no-progress", "--no-store"])

        assert 2 == result.exit_code, result.output
        assert where in result.output
        assert "mount the bucket" in result.output
        assert 1 == result.output.count(uri)  # one problem, no "file does not exist" too
        assert "Traceback" not in result.output
        assert [] == sorted(p.name for p in tmp_path.rglob("*") if ":" in p.name)
        assert not (tmp_path / "p" / "out.parquet").exists()
