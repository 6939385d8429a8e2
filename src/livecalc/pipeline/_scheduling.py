"""The run's order: nodes start once their inputs are ready; a failure skips its dependants.

Independent nodes run at the same time on threads (numba kernels release the GIL), each in a
copy of the caller's context so that it logs with the run's ``run_id``. A node that fails
fails alone: ``mark_failed`` records why and marks every node downstream of it skipped.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import graphlib
from collections.abc import Callable

from livecalc.log import get_logger
from livecalc.pipeline._summary import RunSummary
from livecalc.pipeline.graph import EngineGraph

__all__ = ["mark_failed", "run_when_ready"]

_log = get_logger()


def run_when_ready(
    sorter: graphlib.TopologicalSorter[str],
    max_parallel: int,
    run_node: Callable[[str], None],
    finished: Callable[[str], bool],
    interrupted: Callable[[], None],
) -> None:
    """Run each node ``sorter`` makes ready on a pool of ``max_parallel`` threads.

    Args:
        run_node: runs one node and records its outcome itself (it raises only for a bug).
        finished: whether a node already has its outcome (failed or skipped): it is not run.
        interrupted: called on the calling thread when anything (Ctrl-C) stops the loop,
            before the pool waits for the running nodes; the exception then goes on.
    """
    max_workers = max(1, max_parallel)
    with cf.ThreadPoolExecutor(max_workers, thread_name_prefix="livecalc-node") as pool:
        try:
            _run_ready(sorter, pool, run_node, finished)
        except BaseException:
            interrupted()
            raise


def _run_ready(
    sorter: graphlib.TopologicalSorter[str],
    pool: cf.ThreadPoolExecutor,
    run_node: Callable[[str], None],
    finished: Callable[[str], bool],
) -> None:
    running: dict[cf.Future[None], str] = {}
    while sorter.is_active():
        for node_id in sorter.get_ready():
            if finished(node_id):
                sorter.done(node_id)
                continue
            # Each node runs in a copy of this context, so it logs with the run_id.
            ctx = contextvars.copy_context()
            fut = pool.submit(ctx.run, run_node, node_id)
            running[fut] = node_id
        if not running:
            continue
        done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for fut in done:
            node_id = running.pop(fut)
            fut.result()  # run_node records failures itself; anything else is a bug
            sorter.done(node_id)


def mark_failed(
    summary: RunSummary, graph: EngineGraph, node_id: str, exc: BaseException, stage: str
) -> bool:
    """Record that ``node_id`` failed at ``stage`` and skip the selected nodes downstream.

    Returns whether ``node_id`` has a report of its own; a support node (initialised, not
    run) has none: the selected nodes that would re-run it fail in its place.
    """
    _log.error("node_failed", engine_id=node_id, stage=stage, error=str(exc))
    if node_id not in summary.nodes:
        for down in sorted(set(summary.nodes) & graph.descendants(node_id)):
            report = summary.nodes[down]
            report.status, report.error_type = "failed", type(exc).__name__
            report.error = f"{stage} of node {node_id!r} (which this node re-runs): {exc}"
        return False
    report = summary.nodes[node_id]
    report.status = "failed"
    report.error = f"{stage}: {exc}" if stage != "run" else str(exc)
    report.error_type = type(exc).__name__
    for down in sorted(set(summary.nodes) & graph.descendants(node_id)):
        skipped = summary.nodes[down]
        if skipped.status == "not_run":
            skipped.status = "skipped"
            skipped.error = f"not run: upstream node {node_id!r} failed"
            _log.warning("node_skipped", engine_id=down, failed_upstream=node_id)
    return True
