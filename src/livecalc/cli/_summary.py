"""A run on the command line: its progress bars while it goes, its summary tables after.

``run_with_progress`` feeds rich progress bars (one per chunked node) from the runner's
progress callback; ``finish_run`` prints the summary (per engine time, rows, throughput,
statistics, failures, checks, SLAs, written files) and exits 1 or 2 when needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from livecalc.cli._common import console, err_console, print_error
from livecalc.cli._nested import print_nested
from livecalc.cli._tables import out_console
from livecalc.log import scrub_text

if TYPE_CHECKING:
    from livecalc.pipeline.api import RunResult

__all__ = ["finish_run", "print_summary", "run_with_progress"]


class _ProgressBars:
    """Rich progress bars fed by the runner's progress callback (one bar per chunked node)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, event: str, node_id: str, **info: Any) -> None:
        if event == "node_started":
            self._tasks[node_id] = self._progress.add_task(node_id, total=info.get("chunks", 1))
        elif event == "chunk_finished" and node_id in self._tasks:
            self._progress.update(self._tasks[node_id], completed=info["chunk"] + 1)
        elif event == "node_finished" and node_id in self._tasks:
            status = info.get("status", "")
            colour = "green" if status == "succeeded" else "red"
            self._progress.update(
                self._tasks[node_id], description=f"[{colour}]{node_id}[/] {status}"
            )


def run_with_progress(show: bool, start: Callable[[Any], RunResult]) -> RunResult:
    if not show:
        return start(None)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        return start(_ProgressBars(progress))


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.2f}"
    if isinstance(value, dict | list):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def _count(n: float) -> str:
    """A count in at most 6 characters: 950, 12.3k, 10.0M."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e4)):
        if n >= size:
            return f"{n / (size if unit != 'k' else 1e3):.1f}{unit}"
    return f"{n:,.0f}"


def print_summary(result: RunResult) -> None:
    """The end-of-run tables: per engine time, rows, throughput; statistics; failures."""
    # Off a terminal (cron, CI logs) the tables are printed whole, never cut at 80 columns.
    out = out_console()
    table = Table(title=f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    table.add_column("engine", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("seconds", "compile s", "chunks", "rows", "rows/s", "records"):
        table.add_column(column, justify="right", no_wrap=True)
    colours = {"succeeded": "green", "failed": "red", "skipped": "yellow", "not_run": "dim"}
    for r in result.nodes.values():
        table.add_row(
            r.node_id,
            f"[{colours[r.status]}]{r.status}[/]",
            f"{r.seconds:.3f}",
            f"{r.compile_seconds:.3f}",
            str(r.chunks),
            _count(r.rows_processed),
            _count(r.throughput),
            _count(r.records),
        )
    out.print(table)
    for node_id, outputs in result.statistics.items():
        if print_nested(node_id, outputs):
            continue
        stats = Table(title=f"{node_id}: statistics", show_header=False)
        stats.add_column("name")
        stats.add_column("value", justify="right")
        for key, value in outputs.items():
            if isinstance(value, dict) and all(
                not isinstance(v, dict | list) for v in value.values()
            ):
                for sub, v in value.items():
                    stats.add_row(escape(f"{key}.{sub}"), escape(_format(v)))
            else:
                stats.add_row(escape(key), escape(_format(value)))
        out.print(stats)
    for r in result.nodes.values():
        if r.status in ("failed", "skipped"):
            colour = "red" if r.status == "failed" else "yellow"
            err_console.print(
                f"[{colour}]{r.node_id} {r.status}:[/] {escape(scrub_text(str(r.error)))}",
                highlight=False,
                soft_wrap=True,
            )
    for check in result.summary.extras.get("checks", []):
        if not check["passed"]:
            colour = "red" if check["severity"] == "error" else "yellow"
            err_console.print(
                f"[{colour}]check {escape(check['name'])} failed ({check['severity']}):[/] "
                f"{escape(str(check['message']))}",
                highlight=False,
                soft_wrap=True,
            )
    for sla in result.summary.extras.get("sla", []):
        if sla["breached"]:
            err_console.print(
                f"[yellow]SLA breached:[/] {escape(sla['target'])} took {sla['seconds']:.1f} s "
                f"(limit {sla['limit_seconds']:g} s)",
                highlight=False,
            )
    for name, path in result.written.items():
        console.print(f"wrote {name}: {escape(str(path))}", highlight=False)
    for name, path in result.summary.kept.items():
        console.print(
            f"kept dataset {escape(name)}: {escape(str(path))}", highlight=False, soft_wrap=True
        )
    compiled = sum(r.compile_seconds for r in result.nodes.values())
    note = f" (numba compiling: {compiled:.3f} s; `livecalc warmup` fills the cache)"
    console.print(
        f"total {result.seconds:.3f} s" + (note if compiled >= 0.05 else ""), highlight=False
    )


def finish_run(result: RunResult) -> None:
    """Print the summary, the report and store problems; exit 1 or 2 when needed."""
    print_summary(result)
    error = result.summary.extras.get("store_error")
    if error:
        print_error(error, False)
        raise typer.Exit(2)
    if not result.success:
        raise typer.Exit(1)
