"""Process isolation from a plain script: a missing main guard is named, with the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from livecalc.io.generate import generate_policies, write_policies


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with policies and a two-node config that runs under worker processes."""
    write_policies(tmp_path / "policies.parquet", generate_policies(60, seed=2))
    config = {
        "plugins": ["livecalc.testing:register_testing_engines"],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["x"]},
            {"id": "b", "type": "test_echo", "inputs": ["x"], "outputs": ["y"]},
        ],
        "run": {"executor": "processes"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def _script(folder: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as a script file (its own __main__), as a user would with python."""
    path = folder / "script.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


class TestMainGuard:
    """A script that starts worker processes needs ``if __name__ == "__main__":``."""

    def test_unguarded_script_is_told_to_add_the_guard(self, project: Path) -> None:
        """Without the guard, the error names the spawn re-import and shows the guard."""
        done = _script(
            project,
            """
            import livecalc
            result = livecalc.run("config.json")
            print("success", result.success)
            """,
        )

        assert 0 != done.returncode
        assert 'if __name__ == "__main__":' in done.stderr
        assert "importing your script again" in done.stderr
        assert "exited with code 1" not in done.stderr
        assert "success" not in done.stdout

    def test_guarded_script_runs(self, project: Path) -> None:
        """With the guard, the same script runs under worker processes."""
        done = _script(
            project,
            """
            import livecalc

            if __name__ == "__main__":
                result = livecalc.run("config.json")
                print("success", result.success)
            """,
        )

        assert 0 == done.returncode, done.stderr
        assert "success True" in done.stdout
