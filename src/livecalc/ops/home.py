"""Where LiveCalc keeps its state: ``$LIVECALC_HOME`` (default ``~/.livecalc``)."""

from __future__ import annotations

from pathlib import Path

from livecalc.home import ENV_HOME, livecalc_home

__all__ = ["ENV_HOME", "STORE_FILE", "checkpoint_root", "livecalc_home", "store_file"]

STORE_FILE = "runs.duckdb"


def store_file(folder: str | Path | None = None) -> Path:
    """The run store's file: ``runs.duckdb`` in ``folder`` (default: the LiveCalc home).

    A path ending in ``.duckdb`` is taken as the file itself.
    """
    base = Path(folder).expanduser() if folder is not None else livecalc_home()
    return base if base.suffix == ".duckdb" else base / STORE_FILE


def checkpoint_root(folder: str | Path | None = None) -> Path:
    """The folder of run checkpoints: ``runs/`` beside the store."""
    return store_file(folder).parent / "runs"
