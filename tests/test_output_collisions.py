"""Output paths that are an input file or another output are refused at validation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.io.generate import generate_policies, write_policies

EXAMPLES = Path(__file__).parent.parent / "examples"
PLUGIN = "livecalc.testing:register_testing_engines"


def _config(tmp_path: Path, **output: Any) -> Path:
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "data/policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
            {"id": "b", "type": "test_echo", "inputs": ["policies"], "outputs": ["b_out"]},
        ],
        "output": {"path": "out/{name}.parquet", "write": ["a_out", "b_out"], **output},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "policies.parquet"
    path.parent.mkdir()
    write_policies(path, generate_policies(20, seed=1))
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


class TestOutputCollisions:
    @pytest.mark.parametrize(
        "target",
        ["data/policies.parquet", "out/../data/policies.parquet", "link.parquet", "hard.parquet"],
    )
    def test_output_onto_an_input_is_refused(
        self, tmp_path: Path, policies: Path, target: str
    ) -> None:
        """An output path that is a data source (directly, through '..' or a link) exits 2."""
        (tmp_path / "link.parquet").symlink_to(policies)
        (tmp_path / "hard.parquet").hardlink_to(policies)
        config = _config(tmp_path, write=["a_out"])
        before = _files(tmp_path)

        result = CliRunner().invoke(app, ["run", str(config), "--set", f"output.path={target}"])

        assert 2 == result.exit_code, result.output
        assert "output.path (output 'a_out')" in result.output
        assert "is the file of data_sources.policies" in result.output
        assert before == _files(tmp_path)

    def test_summary_onto_an_output_is_refused(self, tmp_path: Path, policies: Path) -> None:
        """A summary path equal to a results file exits 2 naming both keys; nothing written."""
        config = _config(tmp_path, summary_path="out/sub/../b_out.parquet")

        result = CliRunner().invoke(app, ["validate", str(config)])

        assert 2 == result.exit_code, result.output
        assert "output.summary_path:" in result.output
        assert "is also written by output.path (output 'b_out')" in result.output
        assert not (tmp_path / "out").exists()

    def test_summary_onto_an_input_is_refused(self, tmp_path: Path, policies: Path) -> None:
        """A summary path equal to a data source exits 2."""
        config = _config(tmp_path, summary_path="data/policies.parquet")

        result = CliRunner().invoke(app, ["run", str(config)])

        assert 2 == result.exit_code, result.output
        assert "output.summary_path:" in result.output
        assert "data_sources.policies" in result.output

    def test_summary_onto_the_config_file_is_refused(self, tmp_path: Path, policies: Path) -> None:
        """A summary path that is the config file itself exits 2; the config is intact."""
        config = _config(tmp_path, summary_path="config.json")
        before = config.read_text()

        result = CliRunner().invoke(app, ["run", str(config)])

        assert 2 == result.exit_code, result.output
        assert "is the config file itself" in result.output
        assert before == config.read_text()

    def test_output_onto_an_engine_config_file_is_refused(
        self, tmp_path: Path, policies: Path
    ) -> None:
        """An output path naming a file an engine reads (a table) exits 2 naming the key."""
        (tmp_path / "mortality_table.csv").write_text("age,qx\n0,0.001\n")
        raw = json.loads(_config(tmp_path).read_text())
        raw["engines"][0]["config"] = {"mortality_table": "mortality_table.csv"}
        raw["output"] = {"path": "mortality_table.csv", "write": ["a_out"]}
        config = tmp_path / "config.json"
        config.write_text(json.dumps(raw))

        result = CliRunner().invoke(app, ["run", str(config)])

        assert 2 == result.exit_code, result.output
        assert "is the file of engines[0].config.mortality_table" in result.output
        assert "age,qx\n0,0.001\n" == (tmp_path / "mortality_table.csv").read_text()

    def test_example_with_output_onto_its_policies(self, tmp_path: Path) -> None:
        """The issue's case: --set output.path=data/policies.parquet exits 2, data intact."""
        shutil.copytree(EXAMPLES / "data", tmp_path / "data")
        config = tmp_path / "config.json"
        shutil.copy(EXAMPLES / "dag_config_projection_only.json", config)
        before = _files(tmp_path)
        command = [str(Path(sys.executable).with_name("livecalc")), "run", str(config)]

        done = subprocess.run(
            [*command, "--set", "output.path=data/policies.parquet"],
            capture_output=True,
            text=True,
            timeout=120,
        )

        assert 2 == done.returncode, done.stderr
        assert "is the file of data_sources.policies" in done.stderr
        assert "Traceback" not in done.stderr
        assert before == _files(tmp_path)
