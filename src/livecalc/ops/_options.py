"""What a run's ``store=`` and ``checkpoint=`` options mean: the run store, the checkpoint store.

A run records itself in ``$LIVECALC_HOME``'s store unless told otherwise, and keeps chunk
checkpoints (when its config's ``run.checkpoint`` asks) in ``runs/`` beside that store, or in
the folder, ``pyarrow.fs`` URI or ``livecalc.ports.CheckpointStore`` given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livecalc._version import __version__
from livecalc.errors import ConfigurationError
from livecalc.ops.checkpoint import RunCheckpoint, checkpoint_store
from livecalc.ops.home import checkpoint_root
from livecalc.ops.provenance import pinned_assumptions
from livecalc.ops.store import RunStore
from livecalc.pipeline.config import PipelineConfig
from livecalc.ports import CheckpointStore

__all__ = ["CheckpointOption", "StoreOption", "checkpoints_of", "new_checkpoint", "store_of"]

StoreOption = bool | str | Path | None
"""None or True: ``$LIVECALC_HOME``; a folder or .duckdb file; False: record nothing."""

CheckpointOption = CheckpointStore | str | Path | bool | None
"""A ``CheckpointStore``, a folder or ``pyarrow.fs`` URI; False: none; None or True: the
default (``runs/`` beside the store, when the config's ``run.checkpoint`` is true)."""


def store_of(store: StoreOption) -> RunStore | None:
    """The run store a run records itself in; None for ``store=False``."""
    if store is False:
        return None
    return RunStore(None if store is None or store is True else store)


def checkpoints_of(store: StoreOption, checkpoint: CheckpointOption) -> CheckpointStore:
    """The checkpoint store a run uses: the one given, or that of a folder or URI, or
    ``runs/`` beside the run store."""
    if isinstance(checkpoint, CheckpointStore):
        return checkpoint
    if isinstance(checkpoint, str | Path):
        return checkpoint_store(checkpoint)
    if checkpoint is not None and not isinstance(checkpoint, bool):
        raise ConfigurationError(
            f"checkpoint: {checkpoint!r} is not a CheckpointStore, a folder, a URI or a bool "
            "(a CheckpointStore has put, get, list and delete: see livecalc.ports)"
        )
    return checkpoint_store(checkpoint_root(store if isinstance(store, str | Path) else None))


def new_checkpoint(
    config: PipelineConfig,
    prov: Mapping[str, Any],
    store: StoreOption,
    checkpoint: CheckpointOption,
    run_id: str | None,
    overrides: Sequence[str],
    credentials: Any = None,
) -> RunCheckpoint | None:
    """The checkpoint a new run keeps its chunks in, or None when it keeps none (checkpoint
    False; or not given, and the store False or the config's ``run.checkpoint`` false).

    Its manifest keeps what a resume must find the same: the config's and inputs' sha256,
    this LiveCalc's version and the version each ``am://`` reference resolves to
    (``credentials``: those of the run)."""
    if checkpoint is False or (
        checkpoint is None and (store is False or not config.run.checkpoint)
    ):
        return None
    import uuid

    folder = store if isinstance(store, str | Path) else None
    checkpoints = checkpoints_of(store, checkpoint)
    run_id = run_id or uuid.uuid4().hex[:12]
    meta = {
        "config_path": prov["config_path"],
        "overrides": list(overrides),
        "config_hash": prov["config_hash"],
        "inputs": prov["inputs"],
        "config": None if prov["config_path"] else config.model_dump(mode="json"),
        "location": str(checkpoint) if isinstance(checkpoint, str | Path) else repr(checkpoints),
        "store": None if folder is None else str(folder),
        "livecalc_version": __version__,
        "assumption_versions": pinned_assumptions(config, credentials, run_id),
    }
    return RunCheckpoint(checkpoints, run_id, meta)
