"""Every test gets its own LIVECALC_HOME: runs are recorded in a store under the test's tmp
folder, never in the user's ~/.livecalc.

Hypothesis runs derandomized by default (profile ``repeatable``): every run of the suite, here
and in CI, tries the same examples, so a pass means the same thing everywhere and a
submission cannot fail on a case nobody ran before. ``LIVECALC_HYPOTHESIS=explore`` draws new
random examples on every run (and replays failures from the example database) to look for new
failures: run it now and then (``LIVECALC_HYPOTHESIS=explore make test``), and keep what it
finds as an ``@example`` of its test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("LIVECALC_HYPOTHESIS", "repeatable"))


@pytest.fixture(autouse=True)
def livecalc_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A fresh, empty LIVECALC_HOME for this test (subprocesses inherit it)."""
    home = tmp_path_factory.mktemp("livecalc_home")
    monkeypatch.setenv("LIVECALC_HOME", str(home))
    return home
