"""Finishing a run that was killed: the checks before it runs again, and a scheduler's retry.

``resumable`` loads a run's checkpoint and refuses to resume a run that finished, or whose
config or an input file changed since it started (sha256), that another LiveCalc version
started, or whose ``am://`` references resolve to another version (or content) now: resume
never mixes results.
``retried_checkpoint`` is how a scheduler's retry of a run id (attempt > 1) finds the
unfinished checkpoint it resumes instead of starting over, refusing one of other nodes.
``resolve_run_id`` takes a unique prefix, as ``runs show`` does; ``finish_record`` completes
the record of a run killed between its checkpoint's end and its final record;
``refused_record`` is the record of a run refused once its config was read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from livecalc._version import __version__
from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.masking import scrub_text
from livecalc.ops._checkpoint_stores import LocalCheckpointStore
from livecalc.ops._options import CheckpointOption, StoreOption, checkpoints_of, store_of
from livecalc.ops.checkpoint import RunCheckpoint
from livecalc.ops.kept import check_resumed_datasets, check_same_selection, resumed_selection
from livecalc.ops.provenance import pinned_assumptions, provenance, versions
from livecalc.ops.store import RunStore, utc_now
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.loading import load_config
from livecalc.ports import RunContext

__all__ = [
    "RunFinished",
    "finish_record",
    "refused_record",
    "resolve_run_id",
    "resumable",
    "retried_checkpoint",
]


class RunFinished(ConfigurationError):
    """A resume found the run finished: there is nothing to compute (the CLI exits 0 when
    the resume completed the run's record, 2 otherwise)."""

    def __init__(self, message: str, completed: bool) -> None:
        super().__init__(message)
        self.completed = completed


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
    now = pinned_assumptions(config, None, run_id)
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


def resolve_run_id(prefix: str, store: StoreOption, checkpoint: CheckpointOption) -> str:
    """The run id a unique prefix names, among the runs in the store and the run folders of
    the checkpoint store; the prefix itself when it names a run whole, or nothing.

    Raises:
        ConfigurationError: the prefix names several runs.
    """
    ids: set[str] = set()
    checkpoints = checkpoints_of(store, checkpoint)
    if isinstance(checkpoints, LocalCheckpointStore):
        if (checkpoints.root / prefix).is_dir():
            return prefix
        with contextlib.suppress(OSError):
            ids |= {p.name for p in checkpoints.root.iterdir() if p.name.startswith(prefix)}
    run_store = store_of(store)
    if run_store is not None and run_store.file.exists():
        # A store that cannot be read: the checkpoint alone decides.
        with contextlib.suppress(ConfigurationError):
            ids |= {i for i in run_store.run_ids() if i.startswith(prefix)}
    if prefix in ids or not ids:
        return prefix
    if len(ids) > 1:
        listed = ", ".join(sorted(ids)[:5]) + (", ..." if len(ids) > 5 else "")
        raise ConfigurationError(
            f"run {prefix!r} matches {len(ids)} runs ({listed}); give more of the id"
        )
    return ids.pop()


def finish_record(run_id: str, cp: RunCheckpoint, run_store: RunStore | None) -> None:
    """A run whose checkpoint is complete has nothing to resume; when it was killed after
    its checkpoint said so but before its final record, the record is written from the
    copy the checkpoint keeps.

    Raises:
        RunFinished: always, saying which.
    """
    kept = cp.manifest.get("record")
    current: Mapping[str, Any] | None = None
    if run_store is not None and isinstance(kept, dict):
        try:
            current = run_store.get(run_id)
        except ConfigurationError:
            current = None
    if (
        run_store is not None
        and isinstance(kept, dict)
        and (current is None or current.get("status") in ("running", "dead"))
    ):
        run_store.record(kept)
        _log.info("run_record_completed", run=run_id, status=kept.get("status"))
        raise RunFinished(
            f"run {run_id!r} had finished ({kept.get('status')}) when it was killed, before "
            "its final record: the record is now complete; there is nothing to resume",
            completed=True,
        )
    raise RunFinished(f"run {run_id!r} finished; there is nothing to resume", completed=False)


def refused_record(
    config_or_path: Any, exc: ConfigurationError, *, run_id: str, source: str,
    overrides: Sequence[str],
) -> tuple[dict[str, Any] | None, list[Any]]:  # fmt: skip
    """The record of a run refused as bad input once its config was read (a missing input
    file, a bad dataset), and the alerts its config declares; (None, []) when the config
    itself could not be read as a JSON object."""
    from pydantic import TypeAdapter, ValidationError

    from livecalc.pipeline.operations import AlertConfig

    raw: Any
    config_path: str | None = None
    digest: str | None = None
    if isinstance(config_or_path, PipelineConfig):
        raw = {"alerts": None}
        alerts: list[Any] = list(config_or_path.alerts)
    else:
        if isinstance(config_or_path, Mapping):
            raw = config_or_path
        else:
            try:
                path = Path(config_or_path)
                data = path.read_bytes()
                raw = json.loads(data)
            except (OSError, ValueError, TypeError):
                return None, []
            config_path, digest = str(path.resolve()), hashlib.sha256(data).hexdigest()
        if not isinstance(raw, Mapping):
            return None, []
        try:
            alerts = list(TypeAdapter(list[AlertConfig]).validate_python(raw.get("alerts") or []))
        except ValidationError:
            alerts = []  # the alerts themselves are bad: nobody to tell
    now = utc_now().isoformat() + "Z"
    record = {
        "run_id": run_id,
        "started_at": now,
        "finished_at": now,
        "status": "failed",
        "seconds": 0.0,
        "source": source,
        "error": scrub_text(str(exc)),
        "resumed": 0,
        "provenance": {
            "config_path": config_path,
            "overrides": [scrub_text(o) for o in overrides],
            "config_hash": digest,
            "config": None,
            "inputs": [],
            "assumptions": [],
            "versions": versions(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "executor": None,
        },
    }
    return record, alerts
