"""Where LiveCalc keeps its state: ``$LIVECALC_HOME`` (default ``~/.livecalc``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_HOME", "STORE_FILE", "checkpoint_root", "livecalc_home", "store_file"]

ENV_HOME = "LIVECALC_HOME"
STORE_FILE = "runs.duckdb"


def livecalc_home() -> Path:
    """``$LIVECALC_HOME``, or ``~/.livecalc`` when it is not set."""
    value = os.environ.get(ENV_HOME)
    return Path(value).expanduser() if value else Path.home() / ".livecalc"


def store_file(folder: str | Path | None = None) -> Path:
    """The run store's file: ``runs.duckdb`` in ``folder`` (default: the LiveCalc home).

    A path ending in ``.duckdb`` is taken as the file itself.
    """
    base = Path(folder).expanduser() if folder is not None else livecalc_home()
    return base if base.suffix == ".duckdb" else base / STORE_FILE


def checkpoint_root(folder: str | Path | None = None) -> Path:
    """The folder of run checkpoints: ``runs/`` beside the store."""
    return store_file(folder).parent / "runs"
