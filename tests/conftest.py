"""Every test gets its own LIVECALC_HOME: runs are recorded in a store under the test's tmp
folder, never in the user's ~/.livecalc."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def livecalc_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh, empty LIVECALC_HOME for this test (subprocesses inherit it)."""
    home = tmp_path_factory.mktemp("livecalc_home")
    monkeypatch.setenv("LIVECALC_HOME", str(home))
    return home
