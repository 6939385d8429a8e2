"""Resume refuses to mix assumption versions or LiveCalc versions (issue 19, item 7).

A real Assumptions Manager on loopback serves ``mort`` v1; a run of a projection on
``am://mort@latest`` stops with its chunks kept (a node downstream fails); v2 is published;
``livecalc resume`` would value the remaining chunks on v2: it is refused, naming both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import livecalc
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.cli.app import app
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.checkpoint import LocalCheckpointStore, RunCheckpoint

SECRET = "s" * 40
PLUGIN = "livecalc.testing:register_testing_engines"
TABLE = Path(livecalc.__file__).parent / "data" / "mortality_gompertz_makeham.csv"


@pytest.fixture
def am(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An AM serving mort v1; the run's credentials in the environment. Yields its root."""
    root = tmp_path / "am"
    (root / "mort").mkdir(parents=True)
    (root / "mort" / "v1.csv").write_text(TABLE.read_text())
    with BackgroundServer(create_app(root, SECRET)) as server:
        monkeypatch.setenv("LIVECALC_AM_URL", server.url)
        monkeypatch.setenv("LIVECALC_AM_TOKEN", issue_token(SECRET, "nightly"))
        monkeypatch.setenv("LIVECALC_AM_CACHE_DIR", str(tmp_path / "cache"))
        yield root


def _resume(run_id: str) -> subprocess.CompletedProcess[str]:
    """`livecalc resume RUN_ID` in a process of its own, as a nightly retry runs it (this
    process remembers the tables of the runs it made)."""
    exe = Path(sys.executable).with_name("livecalc")
    return subprocess.run(
        [str(exe), "resume", run_id, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _config(tmp_path: Path) -> Path:
    """A projection on am://mort@latest in 4 chunks, then a node that fails: the run stops
    with the projection's chunks kept."""
    write_policies(tmp_path / "policies.parquet", generate_policies(200, seed=3, max_term=20))
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "projection",
                "type": "projection",
                "config": {"mortality_table": "am://mort@latest"},
                "inputs": ["policies"],
                "outputs": ["results"],
            },
            {
                "id": "stop",
                "type": "test_fail_n",
                "config": {"n": 99},
                "inputs": ["results"],
                "outputs": ["never"],
            },
        ],
        "output": {"path": "out/results.parquet"},
        "run": {"chunk_size": 50, "checkpoint_chunks": "all"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


class TestResumeKeepsVersions:
    def test_a_new_latest_version_is_refused(self, tmp_path: Path, am: Path) -> None:
        config = _config(tmp_path)
        first = livecalc.run(config)
        manifest = json.loads(
            (Path(livecalc.ops.home.checkpoint_root()) / first.run_id / "manifest.json").read_text()
        )
        same = _resume(first.run_id)
        v2 = TABLE.read_text().replace("0.000", "0.001", 5)
        (am / "mort" / "v2.csv").write_text(v2)

        refused = _resume(first.run_id)

        pinned = manifest["meta"]["assumption_versions"]["am://mort@latest"]
        assert ("mort", "v1") == (pinned["name"], pinned["version"])
        assert 1 == same.returncode, same.stderr  # resumed (node stop fails again)
        assert "resolved to version" not in same.stderr
        assert 2 == refused.returncode, refused.stderr
        assert (
            "am://mort@latest resolved to version v1 when the run started and to version v2 "
            "now; resume refuses to mix results"
        ) in " ".join(refused.stderr.split())

    def test_the_same_version_with_other_content_is_refused(self, tmp_path: Path, am: Path) -> None:
        """v1 republished with other numbers (what a new ETag says): refused too."""
        config = _config(tmp_path)
        first = livecalc.run(config)
        (am / "mort" / "v1.csv").write_text(TABLE.read_text().replace("0.000", "0.002", 3))

        refused = _resume(first.run_id)

        assert 2 == refused.returncode, refused.stderr
        assert "to version v1 with other content now" in " ".join(refused.stderr.split())

    def test_another_livecalc_version_is_refused(self, livecalc_home: Path) -> None:
        store = LocalCheckpointStore(livecalc_home / "runs")
        cp = RunCheckpoint(store, "old1", {"livecalc_version": "0.0.1", "config": {}})
        cp.save()

        refused = CliRunner().invoke(app, ["resume", "old1"])

        assert 2 == refused.exit_code, refused.output
        assert "was started by LiveCalc 0.0.1" in refused.output
