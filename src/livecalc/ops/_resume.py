"""Finishing a run that was killed: the checks before it runs again, and a scheduler's retry.

``resumable`` loads a run's checkpoint and refuses to resume a run that finished, or whose
config or an input file changed since it started (sha256), that another LiveCalc version
started, or whose ``am://`` references resolve to another version (or content) now: resume
never mixes results.
``retried_checkpoint`` is how a scheduler's retry of a run id (attempt > 1) finds the
unfinished checkpoint it resumes instead of starting over, refusing one of other nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livecalc._version import __version__
from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ops._options import CheckpointOption, StoreOption, checkpoints_of
from livecalc.ops.checkpoint import RunCheckpoint
from livecalc.ops.kept import check_resumed_datasets, check_same_selection, resumed_selection
from livecalc.ops.provenance import pinned_assumptions, provenance
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.loading import load_config
from livecalc.ports import RunContext

__all__ = ["resumable", "retried_checkpoint"]

_log = get_logger()


def resumable(
    run_id: str,
    store: StoreOption,
    checkpoint: CheckpointOption,
    known: RunCheckpoint | None = None,
) -> tuple[PipelineConfig, RunCheckpoint]:
    """The config and checkpoint of the killed run ``run_id``, checked for a resume.

    Args:
        known: the run's checkpoint when the caller has loaded it already.

    Raises:
        ConfigurationError: no checkpoint for this run, the run finished, or its config or an
            input file changed since (sha256 mismatch), or another LiveCalc version, or an
            ``am://`` reference that resolves to another version or content now.
    """
    cp = known or RunCheckpoint.load(checkpoints_of(store, checkpoint), run_id)
    meta = cp.manifest["meta"]
    if cp.manifest.get("complete"):
        raise ConfigurationError(f"run {run_id!r} finished; there is nothing to resume")
    started = meta.get("livecalc_version")
    if started is not None and started != __version__:
        raise ConfigurationError(
            f"run {run_id!r} was started by LiveCalc {started}, this is {__version__}; "
            "resume refuses to mix results of two versions: start a new run"
        )
    source: Any = meta["config_path"] if meta.get("config_path") else meta["config"]
    if isinstance(source, str) and not Path(source).is_file():
        raise ConfigurationError(
            f"run {run_id!r}: its config {source} is gone; resume needs the config it ran"
        )
    base_dir = None
    if isinstance(source, dict):
        # A config given as a dict: its relative paths resolve where they did.
        source = dict(source)
        base_dir = source.pop("base_dir", None)
    config = load_config(source, meta.get("overrides", []), base_dir=base_dir)
    _check_same_assumptions(run_id, meta, config)
    check_resumed_datasets(run_id, meta)
    _nodes, datasets, _keep = resumed_selection(meta)
    prov = provenance(
        config,
        config_path=None,
        overrides=[],
        executor=config.run.executor,
        datasets={name: Path(path) for name, path in (datasets or {}).items()},
    )
    if prov["config_hash"] != meta["config_hash"]:
        raise ConfigurationError(
            f"run {run_id!r}: the config {meta.get('config_path') or ''} changed since the run "
            f"started (sha256 {meta['config_hash'][:12]}... now {prov['config_hash'][:12]}...); "
            "resume refuses to mix results: start a new run"
        )
    now = {i["path"]: i["sha256"] for i in prov["inputs"]}
    for item in meta.get("inputs", []):
        if now.get(item["path"]) != item["sha256"]:
            raise ConfigurationError(
                f"run {run_id!r}: input file {item['path']} changed since the run started "
                "(sha256 differs) or is gone; resume refuses to mix results: start a new run"
            )
    _log.info(
        "run_resumed", run=run_id, done={k: len(v["done"]) for k, v in cp.manifest["nodes"].items()}
    )
    return config, cp


def _check_same_assumptions(run_id: str, meta: Mapping[str, Any], config: PipelineConfig) -> None:
    """Refuse a resume whose ``am://`` references resolve to another version (or content)
    than when the run started: half the chunks would be valued on one table and half on
    the other."""
    pinned = meta.get("assumption_versions") or {}
    if not pinned:
        return
    now = pinned_assumptions(config)
    for ref, then in pinned.items():
        found = now.get(ref)
        if found is None:
            raise ConfigurationError(
                f"run {run_id!r}: {ref} resolved to version {then['version']} when the run "
                "started and cannot be resolved now; resume needs the same table: check the "
                "Assumptions Manager credentials (LIVECALC_AM_URL, LIVECALC_AM_TOKEN)"
            )
        if (found["version"], found["sha256"]) != (then["version"], then["sha256"]):
            what = (
                f"version {found['version']}"
                if found["version"] != then["version"]
                else f"version {found['version']} with other content"
            )
            raise ConfigurationError(
                f"run {run_id!r}: {ref} resolved to version {then['version']} when the run "
                f"started and to {what} now; resume refuses to mix results: start a new run"
            )


def _unfinished(
    run_id: str, store: StoreOption, checkpoint: CheckpointOption
) -> RunCheckpoint | None:
    """The checkpoint of ``run_id`` when there is one that did not finish, else None."""
    if checkpoint is False:
        return None
    try:
        cp = RunCheckpoint.load(checkpoints_of(store, checkpoint), run_id)
    except ConfigurationError:
        return None
    return None if cp.manifest.get("complete") else cp


def retried_checkpoint(
    context: RunContext,
    run_id: str,
    store: StoreOption,
    checkpoint: CheckpointOption,
    nodes: Sequence[str] | None,
) -> RunCheckpoint | None:
    """The unfinished checkpoint a scheduler's retry of ``run_id`` resumes, if there is one.

    Raises:
        ConfigurationError: the checkpoint is of other nodes than ``nodes`` (two tasks
            sharing a run id).
    """
    cp = _unfinished(run_id, store, checkpoint)
    if cp is not None:
        check_same_selection(run_id, cp.manifest["meta"], nodes)
        context.log("info", "livecalc_resuming", run_id=run_id, attempt=context.attempt)
    return cp
