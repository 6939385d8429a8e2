"""Kept datasets and node selections, as the run folder, checkpoints and resume see them.

``livecalc.run(..., keep_datasets=True)`` writes every dataset the run produces to
``$LIVECALC_HOME/runs/RUN_ID/datasets/`` (``livecalc.pipeline.selection.DatasetKeeper`` writes
them). That folder sits beside the run's checkpoint parts (``RUN_ID/NODE_ID/``), which the
end of a successful run deletes, so the datasets stay; ``livecalc runs gc`` removes the whole
``RUN_ID`` folder once its newest file is old enough. A run that kept no checkpoint gets a
manifest marked complete for that reason alone (``mark_kept``).

A run of some nodes (``nodes=``, ``datasets=``) records its selection in the checkpoint
manifest, with each dataset file's sha256, so that ``livecalc resume`` runs the same selection
and refuses a dataset file that changed since.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ops.checkpoint import LocalCheckpointStore, RunCheckpoint
from livecalc.ops.home import checkpoint_root
from livecalc.ops.provenance import file_sha256
from livecalc.pipeline._config_files import given_path
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.operations import CheckConfig
from livecalc.pipeline.selection import Selection
from livecalc.ports.context import check_run_id

__all__ = [
    "DATASETS_FOLDER",
    "check_resumed_datasets",
    "check_same_selection",
    "checks_in_scope",
    "kept_folder",
    "mark_kept",
    "new_run_id",
    "resumed_selection",
    "selection_meta",
]

_log = get_logger()

DATASETS_FOLDER = "datasets"
"""The folder of a run's kept datasets, in its run folder ``runs/RUN_ID/``."""


def new_run_id() -> str:
    """A new run id (the form ``livecalc.log.run_context`` gives)."""
    return uuid.uuid4().hex[:12]


def kept_folder(
    config: PipelineConfig,
    keep_datasets: bool | str | Path,
    store: bool | str | Path | None,
    run_id: str | None,
) -> Path | None:
    """Where the run keeps its datasets: None, the run's folder, or the folder given.

    Raises:
        ConfigurationError: the run folder cannot hold them (a node named like the folder,
            whose checkpoint parts would go there too; a run id that is no folder name).
    """
    if keep_datasets is False:
        return None
    if keep_datasets is not True:
        return given_path(keep_datasets, "keep_datasets")
    if run_id is None:  # pragma: no cover - session.run names the run first
        raise AssertionError("keep_datasets=True needs the run id")
    try:
        check_run_id(run_id)
    except ValueError as exc:
        raise ConfigurationError(f"keep_datasets: {exc}") from None
    if any(node.id == DATASETS_FOLDER for node in config.engines):
        raise ConfigurationError(
            f"keep_datasets: node {DATASETS_FOLDER!r} keeps its checkpoint parts in "
            f"runs/RUN_ID/{DATASETS_FOLDER}/, where the datasets would go; give a folder "
            "(keep_datasets=PATH) or rename the node"
        )
    folder = store if isinstance(store, str | Path) else None
    return checkpoint_root(folder) / run_id / DATASETS_FOLDER


def mark_kept(folder: Path) -> None:
    """Give a run folder that holds kept datasets a complete manifest when the run left none
    there (no checkpoint, or one elsewhere), so that ``livecalc runs gc`` ages it like any
    other. A manifest already there (the run's checkpoint) is left as it is, for resume."""
    root, run_id = folder.parent.parent, folder.parent.name
    store = LocalCheckpointStore(root)
    if not folder.is_dir() or store.list(f"{run_id}/manifest.json"):
        return
    try:
        RunCheckpoint(store, run_id, {"kept_datasets_only": True}).finish()
    except OSError as exc:
        _log.warning("kept_manifest_failed", folder=str(folder), error=str(exc))


def selection_meta(
    selection: Selection | None, prov: Mapping[str, Any], keep_datasets: bool | str | Path
) -> dict[str, Any]:
    """What the checkpoint manifest records of a run's selection, for resume."""
    hashes = {i["dataset"]: i["sha256"] for i in prov.get("inputs", []) if "dataset" in i}
    keep: bool | str = keep_datasets if isinstance(keep_datasets, bool) else str(keep_datasets)
    return {
        "nodes": list(selection.nodes) if selection is not None else None,
        "datasets": {
            name: {"path": str(path), "sha256": hashes.get(name) or file_sha256(path)}
            for name, path in (selection.files if selection is not None else {}).items()
        },
        "keep_datasets": keep,
    }


def resumed_selection(
    meta: Mapping[str, Any],
) -> tuple[list[str] | None, dict[str, str] | None, bool | str]:
    """(nodes, datasets, keep_datasets) of the run a checkpoint manifest describes."""
    datasets = {name: item["path"] for name, item in (meta.get("datasets") or {}).items()}
    keep = meta.get("keep_datasets", False)
    return meta.get("nodes"), datasets or None, keep if isinstance(keep, bool | str) else False


def check_same_selection(
    run_id: str, meta: Mapping[str, Any], nodes: Sequence[str] | str | None
) -> None:
    """Refuse to resume, for a scheduler's retry, a checkpoint of other nodes than asked:
    two tasks given the same run id.

    Raises:
        ConfigurationError: naming both selections and the fix.
    """
    asked = {nodes} if isinstance(nodes, str) else set(nodes) if nodes is not None else None
    had = set(meta["nodes"]) if meta.get("nodes") is not None else None
    if asked != had:
        what = ", ".join(sorted(had)) if had is not None else "every node"
        want = ", ".join(sorted(asked)) if asked is not None else "every node"
        raise ConfigurationError(
            f"run {run_id!r}: its unfinished checkpoint is of {what}, but this attempt runs "
            f"{want}; give each task its own run id"
        )


def check_resumed_datasets(run_id: str, meta: Mapping[str, Any]) -> None:
    """Refuse to resume a run whose dataset files changed (or went) since it started.

    Raises:
        ConfigurationError: naming the dataset and its file.
    """
    for name, item in (meta.get("datasets") or {}).items():
        path = Path(item["path"])
        if not path.is_file() or file_sha256(path) != item["sha256"]:
            what = "is gone" if not path.is_file() else "changed since the run started"
            raise ConfigurationError(
                f"run {run_id!r}: dataset file {path} (datasets[{name!r}]) {what} (sha256 "
                f"{item['sha256'][:12]}... then); resume refuses to mix results: start a new "
                "run with the file as it is now"
            )


def checks_in_scope(
    config: PipelineConfig, nodes: Sequence[str]
) -> tuple[list[CheckConfig], list[dict[str, str]]]:
    """The declared checks a run of ``nodes`` evaluates, and those it leaves to the runs of
    the other nodes (name and reason).

    A check is in scope when every dataset it names is produced or read by a node run, the
    node it names (``node``, or a ``statistic``'s ``node.key``) is run, and, for a ``metric``
    check without ``node``, the run includes a last node of the pipeline (one whose outputs
    no node reads), where the final statistics come from.
    """
    run = set(nodes)
    engines = {node.id: node for node in config.engines}
    available = {name for n in run for name in (*engines[n].inputs, *engines[n].outputs)}
    read = {name for node in config.engines for name in node.inputs}
    last = {n.id for n in config.engines if not set(n.outputs) & read}
    selected: list[CheckConfig] = []
    left: list[dict[str, str]] = []
    for check in config.checks:
        named = [d for d in (check.dataset, check.against) if d is not None]
        node = check.node or (check.statistic.split(".", 1)[0] if check.statistic else None)
        missing = [d for d in named if d not in available]
        if missing:
            reason = f"dataset {missing[0]!r} is neither produced nor read by the nodes run"
        elif node is not None and node not in run:
            reason = f"node {node!r} is not run"
        elif check.kind == "metric" and check.node is None and not run & last:
            reason = "a metric check without 'node' runs with a last node of the pipeline"
        else:
            selected.append(check)
            continue
        left.append({"name": check.label, "reason": reason})
    return selected, left
