"""A scenario file written by a pipeline carries the ESG's metadata, so `livecalc esg check`
can test it against the initial curve."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.pipeline.api import run


def _esg_only(folder: Path) -> Path:
    config = {
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {"model": "hull_white", "outer": 4, "inner": 250, "years": 10, "seed": 7},
                "inputs": [],
                "outputs": ["scenarios"],
            }
        ],
        "output": {"type": "parquet", "path": "out/scenarios.parquet"},
    }
    path = folder / "esg.json"
    path.write_text(json.dumps(config), "utf-8")
    return path


class TestStreamedScenarioFile:
    def test_metadata_is_written_and_check_passes(self, tmp_path: Path) -> None:
        """The streamed scenario file has livecalc.esg metadata and passes the martingale check."""
        result = run(_esg_only(tmp_path))
        path = tmp_path / "out" / "scenarios.parquet"

        metadata = pq.read_schema(path).metadata
        check = CliRunner().invoke(app, ["esg", "check", str(path)])

        assert result.success
        assert b"livecalc.esg" in metadata
        assert "hull_white" == json.loads(metadata[b"livecalc.esg"])["model"]
        assert 0 == check.exit_code, check.output
