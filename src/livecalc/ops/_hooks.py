"""``OpsHooks``: what follows a recorded run, from its first record to its checks.

The run store gets a ``running`` record once the run has gone ``START_RECORD_DELAY`` seconds
(at once when it keeps checkpoints) and the full record when it ends; each finished chunk is
checkpointed when that is cheaper than computing it again; the declared checks and the SLA
are evaluated, and the chart data gathered, before the summary file is written.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger
from livecalc.ops.checkpoint import RunCheckpoint
from livecalc.ops.kept import checks_in_scope
from livecalc.ops.liveness import Owner, record_attempts
from livecalc.ops.provenance import PROVENANCE_KEY, file_sha256
from livecalc.ops.store import RunStore, utc_now
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.hooks import RunHooks
from livecalc.ports import ProgressReporter

if TYPE_CHECKING:
    from livecalc.pipeline._summary import RunSummary

__all__ = ["START_RECORD_DELAY", "OpsHooks"]

_log = get_logger()

START_RECORD_DELAY = 1.0
"""Seconds a run goes before its ``running`` record is written (see ``OpsHooks``)."""


class OpsHooks(RunHooks):
    """Follows one run: store records, checkpoints, checks, SLA, chart data."""

    def __init__(
        self,
        config: PipelineConfig,
        prov: dict[str, Any],
        *,
        store: RunStore | None,
        checkpoint: RunCheckpoint | None,
        source: str,
        resumed: bool = False,
        dataset_files: Mapping[str, str | Path] | None = None,
    ) -> None:
        self.config = config
        # The dataset files a run of some nodes was given: a check it owns may name one that
        # none of its nodes reads (a reconcile across nodes).
        self.dataset_files = dict(dataset_files or {})
        self.prov = prov
        self.store = store
        self.checkpoint = checkpoint
        self.source = source
        self.resumed = resumed
        self.store_error: str | None = None
        self.record: dict[str, Any] = {}
        self.timeline: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        self._starts: dict[str, float] = {}
        self._chunk_starts: dict[str, float] = {}
        self._resolved: list[tuple[str, str, str]] = []
        self._token: Any = None
        self._starting: threading.Thread | None = None
        self._finished = threading.Event()
        self._attempt_started: str | None = None
        self._first_started_at: str | None = None
        self._attempts: list[dict[str, Any]] | None = None
        self._resumes = int(resumed)

    def continue_from(self, previous: Mapping[str, Any] | None, owner: Owner | None) -> None:
        """A resume: the record keeps the first attempt's start, counts the resumes and lists
        every attempt (``previous``: the record so far; ``owner``: what the run's lock file
        said of the attempt that died, whose last heartbeat is its end)."""
        if previous is None:
            return
        self._attempts = record_attempts(previous, owner)
        self._first_started_at = previous.get("started_at")
        self._resumes = int(previous.get("resumed") or 0) + 1

    # -- progress (the timeline) ------------------------------------------------------------

    def progress(self, user: ProgressReporter | None) -> ProgressReporter:
        """A progress callback that records node start and end times, then calls ``user``."""

        def follow(event: str, node_id: str, **info: Any) -> None:
            now = time.perf_counter() - self._t0
            if event == "node_started":
                self._starts[node_id] = now
                self._chunk_starts[node_id] = now
            elif event == "chunk_finished":
                self._chunk_starts[node_id] = now
            elif event == "node_finished":
                start = self._starts.get(node_id, now)
                self.timeline.append(
                    {"node_id": node_id, "start": start, "end": now, "status": info.get("status")}
                )
            if user is not None:
                user(event, node_id, **info)

        return follow

    # -- hooks --------------------------------------------------------------------------------

    def run_started(self, run_id: str, config: PipelineConfig) -> Mapping[str, str]:
        from livecalc.assumptions.client import RESOLVED

        self._t0 = time.perf_counter()
        self._token = RESOLVED.set(self._resolved)
        self._attempt_started = utc_now().isoformat() + "Z"
        self.record = {
            "run_id": run_id,
            "started_at": self._attempt_started,
            "finished_at": None,
            "status": "running",
            "seconds": None,
            "source": self.source,
            "resumed": self._resumes,
            "provenance": self.prov,
        }
        if self._attempts is not None:
            self.record["attempts"] = [*self._attempts, self._attempt()]
            if self._first_started_at:
                self.record["started_at"] = self._first_started_at
        # The first record (status running: `runs list` shows the run, and a killed run stays
        # listed) is written while the run goes on, and only once it has run for
        # START_RECORD_DELAY seconds: a shorter run is recorded once, at its end, so the store
        # costs a short run one write instead of two.
        self._starting = threading.Thread(
            target=self._save_later, args=(dict(self.record),), daemon=True
        )
        self._starting.start()
        return {PROVENANCE_KEY: json.dumps(self.prov, default=str)}

    def stored_chunks(self, node_id: str, chunk_size: int, chunks: int) -> Mapping[int, np.ndarray]:
        if self.checkpoint is None or chunks < 2 or _collects_per_chunk(self.config, node_id):
            return {}
        stored = self.checkpoint.stored(node_id, chunk_size, chunks)
        if len(stored) == chunks:
            # Every chunk kept: the last one still runs, so that the engine's get_outputs()
            # (the projection's method, a node's statistics) are those of a real run.
            stored.discard(chunks - 1)
        return stored

    def chunk_output(
        self, node_id: str, chunk: int, chunks: int, records: np.ndarray, stable: bool = False
    ) -> None:
        if self.checkpoint is None or chunks < 2 or _collects_per_chunk(self.config, node_id):
            return
        options = self.config.run
        # Seconds since the node's previous chunk finished: with replicas computing chunks
        # side by side, the time per chunk of the node's throughput, which a write competes
        # with.
        seconds = time.perf_counter() - self._t0 - self._chunk_starts.get(node_id, 0.0)
        if options.checkpoint_chunks == "auto" and not (
            self.checkpoint.worth_writing(records.nbytes, seconds, options.checkpoint_max_overhead)
            if options.checkpoint_min_chunk_seconds is None
            else seconds >= options.checkpoint_min_chunk_seconds
        ):
            # Cheaper to compute again on resume than to write now.
            self.checkpoint.skipped += 1
            return
        self.checkpoint.put_chunk(node_id, chunk, chunks, records, stable=stable)

    def run_finished(self, summary: RunSummary) -> None:
        from livecalc.ops.alerts import sla_results
        from livecalc.ops.checks import RunData, evaluate_checks

        self._reset_resolved()
        if self.checkpoint is not None:
            # A run that failed keeps every part queued (resume needs them); one that
            # succeeded has no use for parts not yet written.
            self.checkpoint.close(drain=not summary.success)
        config = self.config
        pinned = (self.checkpoint.manifest["meta"] if self.checkpoint is not None else {}).get(
            "assumption_versions"
        ) or {}
        if self._resolved or pinned:
            # Resolved in this process during the run, else when its checkpoint pinned them
            # (the run's engines then reused that resolution).
            versions = {ref: (p["name"], p["version"]) for ref, p in pinned.items()}
            versions |= {ref: (name, ver) for ref, name, ver in self._resolved}
            for a in self.prov["assumptions"]:
                a["name"], a["version"] = versions.get(a["reference"], (None, None))
        outputs = [
            {
                "name": name,
                "path": str(path),
                "sha256": file_sha256(path),
                "size_bytes": Path(path).stat().st_size,
            }
            for name, path in summary.written.items()
            if Path(path).is_file()
        ]
        statistics = {k: r.outputs for k, r in summary.nodes.items() if r.outputs}
        datasets = {
            **{k: v for k, v in summary.written.items()},
            **{k: v for k, v in summary.datasets.items() if isinstance(v, np.ndarray)},
        }
        for name, src in config.data_sources.items():
            datasets.setdefault(name, config.resolve(src.path))
        declared, not_run = config.checks, list[dict[str, str]]()
        if summary.selection:
            # A run of some nodes evaluates the checks it owns; the other runs the rest.
            declared, not_run = checks_in_scope(config, summary.selection["nodes"])
            for name, path in self.dataset_files.items():
                datasets.setdefault(name, Path(path))
        checks = [
            c.to_dict() for c in evaluate_checks(declared, RunData(datasets, statistics, config))
        ]
        sla = sla_results(config, summary.seconds, {k: r.seconds for k, r in summary.nodes.items()})
        if summary.selection:
            # The run-level limit bounds the whole pipeline, which a run of some nodes is
            # not: only the limits of the nodes it ran apply.
            sla = [s for s in sla if s["target"] != "run" and s["target"] in summary.nodes]
        summary.failed_checks = [
            c["name"] for c in checks if not c["passed"] and c["severity"] == "error"
        ]
        summary.extras = {
            "provenance": self.prov,
            "outputs": outputs,
            "checks": checks,
            "sla": sla,
        }
        if not_run:
            summary.extras["checks_not_run"] = not_run
        if summary.kept:
            summary.extras["datasets"] = {k: str(v) for k, v in summary.kept.items()}
            self.record["datasets"] = summary.extras["datasets"]
        if summary.selection:
            self.record["selection"] = summary.selection
        self.record["cluster"] = summary.cluster()
        self.record.update(
            {
                "nodes": [r.to_dict() for r in summary.nodes.values()],
                "metrics": _metrics(statistics),
                "checks": checks,
                "sla": sla,
                "outputs": outputs,
                "charts": _charts(summary.datasets, statistics, self.timeline),
                "seconds": summary.seconds,
            }
        )
        if config.output is not None and config.output.summary_path:
            self.record["summary_path"] = str(config.resolve(config.output.summary_path))

    def _reset_resolved(self) -> None:
        from livecalc.assumptions.client import RESOLVED

        if self._token is not None:
            RESOLVED.reset(self._token)
            self._token = None

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the run's end (status: succeeded, failed, check_failed, interrupted)."""
        self._reset_resolved()
        self.record["status"] = status
        self.record["finished_at"] = utc_now().isoformat() + "Z"
        if self.record.get("seconds") is None:
            self.record["seconds"] = time.perf_counter() - self._t0
        if error is not None:
            self.record["error"] = error
        if self._attempts is not None:
            this = {**self._attempt(), "status": status, "seconds": self.record["seconds"]}
            this["finished_at"] = self.record["finished_at"]
            self.record["attempts"] = [*self._attempts, this]
            # The run's seconds: every attempt's, the one killed up to its last heartbeat.
            self.record["seconds"] = sum(a.get("seconds") or 0.0 for a in self.record["attempts"])
        if self.checkpoint is not None and status in ("succeeded", "check_failed"):
            # A copy of the final record: killed between the checkpoint's end and the record
            # below, `livecalc resume` writes it (nothing is left to compute).
            self.checkpoint.manifest["record"] = json.loads(json.dumps(self.record, default=str))
            try:
                self.checkpoint.finish()
            except OSError as exc:
                _log.warning("checkpoint_cleanup_failed", error=str(exc))
        elif self.checkpoint is not None:
            self.checkpoint.close(drain=True)
        if self._starting is not None:
            self._finished.set()
            self._starting.join()
        self._save(self.record)
        _log.info("run_recorded", status=status, store=self._store_name())

    def _attempt(self) -> dict[str, Any]:
        """This attempt, as the record's ``attempts`` list it."""
        return {
            "started_at": self._attempt_started,
            "finished_at": None,
            "seconds": None,
            "status": "running",
            "host": self.prov.get("host"),
            "pid": self.prov.get("pid"),
        }

    def _save_later(self, record: Mapping[str, Any]) -> None:
        # A run that keeps checkpoints is recorded at once: killed in its first second, it can
        # still be resumed (resume finds the run in the store).
        delay = 0.0 if self.checkpoint is not None else START_RECORD_DELAY
        if not self._finished.wait(delay):
            self._save(record)

    def _save(self, record: Mapping[str, Any]) -> None:
        if self.store is None or self.store_error is not None:
            return
        try:
            self.store.record(record)
        except (ConfigurationError, OSError) as exc:
            # The run goes on and its outputs are written; the caller reports this at the end.
            self.store_error = str(exc)
            _log.error("store_failed", store=str(self.store.file), error=str(exc))

    def _store_name(self) -> str | None:
        return str(self.store.file) if self.store is not None else None


def _collects_per_chunk(config: PipelineConfig, node_id: str) -> bool:
    """Whether the node's engine builds part of its get_outputs() chunk by chunk (the
    projection's ``audit`` cash flows, for the audited policies each chunk holds): a chunk
    reused from a checkpoint would leave them out, so such a node computes every chunk."""
    return bool(config.node(node_id).config.get("audit"))


def _metrics(statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The numbers worth comparing between runs, by node: a node's top-level numbers, its
    ``metrics``, ``solution`` and the optimisation's parameters, value and effort."""
    out: dict[str, dict[str, float]] = {}
    for node_id, outputs in statistics.items():
        flat: dict[str, float] = {}
        _numbers("", outputs, flat)
        for key in ("metrics", "solution"):
            _numbers(f"{key}.", outputs.get(key), flat)
        opt = outputs.get("optimization")
        if isinstance(opt, Mapping):
            _numbers("optimization.parameters.", opt.get("parameters"), flat)
            keep = ("objective_value", "iterations", "evaluations", "seconds")
            _numbers("optimization.", {k: opt.get(k) for k in keep}, flat)
        if flat:
            out[node_id] = flat
    return out


def _numbers(prefix: str, values: Any, flat: dict[str, float]) -> None:
    if isinstance(values, Mapping):
        for k, v in values.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                flat[f"{prefix}{k}"] = float(v)


def _charts(
    datasets: Mapping[str, Any],
    statistics: Mapping[str, Mapping[str, Any]],
    timeline: list[dict[str, Any]],
) -> dict[str, Any]:
    from livecalc.ops.charts import chart_data

    try:
        return chart_data(datasets, statistics, timeline)
    except Exception as exc:  # the report's charts must never cost the run its record
        _log.warning("chart_data_failed", error=f"{type(exc).__name__}: {exc}")
        return {"timeline": timeline}
