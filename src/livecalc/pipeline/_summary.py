"""What a run reports: the status of every node, timings, rows, statistics and written files."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from livecalc.log import scrub_text
from livecalc.runtime.leftovers import check_replaceable, sweep_temp_files, temp_path

if TYPE_CHECKING:
    from livecalc.pipeline.pool import PoolRun

__all__ = ["NodeReport", "NodeStatus", "RunSummary", "write_json_atomic"]

NodeStatus = Literal["succeeded", "failed", "skipped", "not_run"]


@dataclass
class NodeReport:
    """One node's outcome: status, timings, counts, the error or the reason it was skipped.

    ``seconds`` is the node's wall time (merge and writing included), ``engine_seconds`` the
    time spent in ``run_chunk`` calls as the runner saw them, ``compute_seconds`` the sum of
    the engine's own ``execution_time_ms``. ``compile_seconds`` is the part of ``seconds``
    numba spent compiling kernels (first use with a cold cache; ``livecalc warmup`` fills the
    cache), measured from numba's compile events in the process that ran the engine;
    ``throughput`` is over ``seconds - compile_seconds``, the run time.
    """

    node_id: str
    engine_type: str
    status: NodeStatus = "not_run"
    seconds: float = 0.0
    engine_seconds: float = 0.0
    compute_seconds: float = 0.0
    init_seconds: float = 0.0
    compile_seconds: float = 0.0
    rows_processed: int = 0
    records: int = 0
    chunks: int = 0
    reused_chunks: int = 0
    chunk_size: int = 0
    chunking: str | None = None
    """What chose ``chunk_size``: the run's ``ChunkStrategy`` (``fixed``, ``memory``, ...) or
    ``node`` (the node's own ``chunk_size``)."""
    error: str | None = None
    error_type: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pool: PoolRun | None = None
    """What the node's replica pool did: replicas and chunks per location (Ray node or
    worker pid), re-runs, replicas lost (each also a warning); None without a pool."""

    @property
    def run_seconds(self) -> float:
        """The node's wall time without the time numba spent compiling."""
        return max(0.0, self.seconds - self.compile_seconds)

    @property
    def throughput(self) -> float:
        """Rows processed per second of run time, compiling excluded (0 when it did not run)."""
        return self.rows_processed / self.run_seconds if self.run_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of this report."""
        return {
            "node_id": self.node_id,
            "engine_type": self.engine_type,
            "status": self.status,
            "seconds": self.seconds,
            "engine_seconds": self.engine_seconds,
            "compute_seconds": self.compute_seconds,
            "init_seconds": self.init_seconds,
            "compile_seconds": self.compile_seconds,
            "run_seconds": self.run_seconds,
            "rows_processed": self.rows_processed,
            "records": self.records,
            "chunks": self.chunks,
            "reused_chunks": self.reused_chunks,
            "chunk_size": self.chunk_size,
            "chunking": self.chunking,
            "throughput_rows_per_sec": self.throughput,
            # The summary file is shared like a log: a token quoted in an error is masked.
            "error": None if self.error is None else scrub_text(self.error),
            "error_type": self.error_type,
            "outputs": _jsonable(self.outputs),
            "warnings": list(self.warnings),
            **({"pool": self.pool.to_dict()} if self.pool is not None else {}),
        }


@dataclass
class RunSummary:
    """The whole run: per-node reports in run order, what was written, the run's own timings."""

    run_id: str
    executor: str
    nodes: dict[str, NodeReport]
    seconds: float = 0.0
    written: dict[str, Path] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    """Declared checks of severity ``error`` that failed (livecalc.ops): the run fails."""
    extras: dict[str, Any] = field(default_factory=dict)
    """More sections of the summary file (provenance, checks, SLA), set by livecalc.ops."""
    selection: dict[str, Any] = field(default_factory=dict)
    """A run of part of the pipeline: the nodes run, those only initialised, the datasets
    read from files (``livecalc.pipeline.selection``); empty for a whole run."""
    kept: dict[str, Path] = field(default_factory=dict)
    """Datasets kept as files (``keep_datasets``), by name."""
    parallelism: int = 1
    """Replicas of the most replicated node (1: no replica pool)."""
    address: str | None = None
    """The Ray cluster the run used (``local``: one started for the run); None off Ray."""

    @property
    def success(self) -> bool:
        """Whether every node succeeded and no ``error`` check failed."""
        return not self.failed_checks and all(r.status == "succeeded" for r in self.nodes.values())

    @property
    def failed(self) -> list[NodeReport]:
        """The nodes that failed."""
        return [r for r in self.nodes.values() if r.status == "failed"]

    @property
    def skipped(self) -> list[NodeReport]:
        """The nodes skipped because something upstream failed."""
        return [r for r in self.nodes.values() if r.status == "skipped"]

    @property
    def warnings(self) -> list[str]:
        """Every node's warnings (a lost replica among them), each with its node."""
        return [f"{r.node_id}: {w}" for r in self.nodes.values() for w in r.warnings]

    def cluster(self) -> dict[str, Any]:
        """Where the run ran: executor, parallelism, address, each pooled node's replicas and
        chunks per location, re-runs and lost replicas (the run store's ``cluster``)."""
        return {
            "executor": self.executor,
            "parallelism": self.parallelism,
            "address": self.address,
            "nodes": {
                r.node_id: r.pool.to_dict() for r in self.nodes.values() if r.pool is not None
            },
            "warnings": self.warnings,
        }

    @property
    def compile_seconds(self) -> float:
        """Seconds numba spent compiling kernels during the nodes' runs, all nodes together."""
        return sum(r.compile_seconds for r in self.nodes.values())

    def describe(self) -> str:
        """One line per node: what ran, what failed and why, what was skipped."""
        lines = []
        for r in self.nodes.values():
            line = f"{r.node_id} ({r.engine_type}): {r.status}"
            if r.error:
                line += f": {r.error}"
            lines.append(line)
        lines.extend(f"check failed: {name}" for name in self.failed_checks)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the summary (datasets are not included, only their names)."""
        return {
            "run_id": self.run_id,
            "executor": self.executor,
            "parallelism": self.parallelism,
            "address": self.address,
            "success": self.success,
            "seconds": self.seconds,
            "compile_seconds": self.compile_seconds,
            "nodes": [r.to_dict() for r in self.nodes.values()],
            "written": {k: str(v) for k, v in self.written.items()},
            "warnings": self.warnings,
            **({"selection": self.selection} if self.selection else {}),
            **({"datasets": {k: str(v) for k, v in self.kept.items()}} if self.kept else {}),
            **({"failed_checks": list(self.failed_checks)} if self.failed_checks else {}),
            **_jsonable(self.extras),
        }

    def to_html(self) -> str:
        """The per-node table as an HTML fragment (for notebooks)."""
        head = "".join(
            f"<th>{h}</th>" for h in ("node", "status", "seconds", "chunks", "rows", "records")
        )
        rows = "".join(
            f"<tr><td>{html.escape(r.node_id)}</td><td>{r.status}</td><td>{r.seconds:.3f}</td>"
            f"<td>{r.chunks}</td><td>{r.rows_processed:,}</td><td>{r.records:,}</td></tr>"
            for r in self.nodes.values()
        )
        checks = self.extras.get("checks") or []
        rows += "".join(
            f"<tr><td colspan='2'>check {html.escape(str(c.get('name')))}</td>"
            f"<td colspan='4'>{'passed' if c.get('passed') else 'FAILED'} "
            f"({html.escape(str(c.get('severity')))}): {html.escape(str(c.get('message')))}"
            "</td></tr>"
            for c in checks
        )
        state = "succeeded" if self.success else "FAILED"
        return (
            f"<table><caption>run {html.escape(self.run_id)}: {state} in {self.seconds:.3f} s"
            f"</caption><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_replaceable(path)
    sweep_temp_files(path)  # what runs killed while writing it left behind
    tmp = temp_path(path)
    # Not mkstemp, which makes the file private (0600): the umask decides, as for the
    # Parquet files written beside it. O_EXCL still refuses to follow or reuse a name.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_jsonable(data), f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
