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
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.graph import EngineGraph
from livecalc.pipeline.loading import given_path
from livecalc.pipeline.operations import CheckConfig
from livecalc.pipeline.selection import Selection
from livecalc.ports.context import check_run_id

__all__ = [
    "DATASETS_FOLDER",
    "check_owner",
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


def check_owner(config: PipelineConfig, check: CheckConfig, order: Sequence[str]) -> str:
    """The node whose run evaluates ``check`` when the pipeline runs node by node: one run
    per check, so the check has one verdict (``order``: the nodes in run order).

    - a check naming datasets (``dataset``, a ``reconcile``'s ``against``) that nodes
      produce: the latest of those producers, the first run in which both datasets exist (a
      ``reconcile`` across two nodes is evaluated by the later one, on the earlier one's kept
      dataset);
    - a check of data sources only: the first node that reads one of them;
    - a check of statistics: the node it names (``node``, a ``statistic``'s ``node.key``),
      else the last node that has outputs (where the final statistics come from).
    """
    producers = {out: node.id for node in config.engines for out in node.outputs}
    named = [d for d in (check.dataset, check.against) if d is not None]
    if named:
        made = [producers[d] for d in named if d in producers]
        if made:
            return max(made, key=list(order).index)
        readers = [n for n in order if set(config.node(n).inputs) & set(named)]
        return (readers or list(order))[0]
    node = check.node or (check.statistic.split(".", 1)[0] if check.statistic else None)
    if node is not None:
        return node
    with_outputs = [n for n in order if config.node(n).outputs]
    return (with_outputs or list(order))[-1]


def checks_in_scope(
    config: PipelineConfig, nodes: Sequence[str]
) -> tuple[list[CheckConfig], list[dict[str, str]]]:
    """The declared checks a run of ``nodes`` evaluates, and those it leaves to the runs of
    the other nodes (name and reason).

    A check is evaluated by the run of its node (``check_owner``), and by no other: run node
    by node, every check is evaluated once, and a scheduler shows the verdict that run
    recorded. A dataset the check names that the run neither produces nor reads comes from
    the file given for it (``datasets=``); without one, the check fails saying so.
    """
    run = set(nodes)
    order = EngineGraph(config).order()
    selected: list[CheckConfig] = []
    left: list[dict[str, str]] = []
    for check in config.checks:
        owner = check_owner(config, check, order)
        if owner in run:
            selected.append(check)
        else:
            left.append({"name": check.label, "reason": f"evaluated by the run of node {owner!r}"})
    return selected, left
