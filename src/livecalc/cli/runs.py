"""``livecalc runs ...``, ``check``, ``report`` and ``resume``: the run store from the shell.

``register(app)`` mounts them on the main command. Every command reads the store given by
``--store DIR`` (default ``$LIVECALC_HOME``); a run id may be shortened to a unique prefix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from livecalc.cli._tables import FormatOption, ListTable, chosen_format, out_console, print_tables

__all__ = ["register", "runs_app"]

runs_app = typer.Typer(
    help="The run store: list, show, compare, delete runs.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)

StoreDir = Annotated[
    Path | None, typer.Option("--store", help="run store folder (default: $LIVECALC_HOME)")
]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


# The main command's helpers, given by ``register`` (this module must not import app.py,
# which imports it): user errors as one line and an exit code, progress bars, the summary.
_HELPERS: dict[str, Callable[..., Any]] = {}


def _errors() -> Any:
    return _HELPERS["user_errors"](False)


def _store(store: Path | None) -> Any:
    from livecalc.ops.store import RunStore

    return RunStore(store)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.2f}"
    return str(value)


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(min=1, help="newest N runs")] = 20,
    status: Annotated[
        str | None,
        typer.Option(help="succeeded, failed, check_failed, running, dead, interrupted"),
    ] = None,
    store: StoreDir = None,
    as_json: AsJson = False,
    fmt: FormatOption = None,
) -> None:
    """List recorded runs, newest first."""
    from livecalc.ops.labels import format_value

    with _errors():
        form = chosen_format(fmt, as_json)
        frame = _store(store).list(limit=limit, status=status)
    rows = json.loads(frame.to_json(orient="records", date_format="iso"))
    table = ListTable(
        f"runs ({len(rows)})",
        ("run_id", "started_at", "status", "seconds", "source", "checks", "sla", "config"),
    )
    table.whole |= {"run_id", "started_at", "status"}
    table.right.add("seconds")
    colours = {"succeeded": "green", "failed": "red", "check_failed": "yellow", "dead": "red"}
    for r in rows:
        table.add(
            r["run_id"],
            str(r["started_at"] or "")[:19].replace("T", " "),
            _status_text(r),
            format_value(r["seconds"], "seconds"),
            r["source"],
            _verdict(r, r["failed_checks"], "failed", bool(r.get("checks"))),
            _verdict(r, r["sla_breaches"], "breached", True),
            Path(r["config_path"]).name if r["config_path"] else "(python)",
            styles=("", "", colours.get(r["status"], "dim")),
        )
    print_tables(form, [table], rows)


_FINISHED = ("succeeded", "check_failed")
"""Statuses of a run whose checks and SLA were evaluated."""


def _status_text(r: dict[str, Any]) -> str:
    """The status column: a dead run says whether it can be resumed."""
    if r["status"] == "dead":
        return "dead (resumable)" if r.get("resumable") else "dead"
    return str(r["status"])


def _verdict(r: dict[str, Any], bad: int, word: str, evaluated: bool) -> str:
    """``ok``, ``N failed`` or ``-`` (not evaluated: the run did not get that far)."""
    if bad:
        return f"{bad} {word}"
    return "ok" if r["status"] in _FINISHED and evaluated else "-"


@runs_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="run id (or a unique prefix)")],
    store: StoreDir = None,
    as_json: AsJson = False,
    fmt: FormatOption = None,
) -> None:
    """Show one run's record: provenance, nodes, metrics, checks, SLA, outputs."""
    from livecalc.ops.labels import currency_of, describe_metrics, format_value, unit_of

    with _errors():
        form = chosen_format(fmt, as_json)
        record = _store(store).get(run_id)
    if form in ("json", "csv"):
        # One record is not one table: csv gives its metrics, json the whole record.
        metrics = ListTable("metrics", ("node", "metric", "label", "value", "unit"))
        for m in describe_metrics(record):
            metrics.add(
                m.node,
                m.key,
                m.label,
                "" if m.value is None else repr(m.value),
                unit_of(m.kind, currency_of(record)),
            )
        print_tables(form, [metrics], record)
        return
    console = out_console() if form == "table" else Console(width=100_000, no_color=True)
    prov = record["provenance"]
    if record["finished_at"] is None:
        owner = record.get("owner") or {}
        who = f"pid {owner.get('pid', prov['pid'])} on host {owner.get('host', prov['host'])}"
        console.print(
            f"run [bold]{record['run_id']}[/]: {_status_text(record)} ({record['source']}), "
            f"started {record['started_at']}, "
            + (f"not finished: {escape(record['liveness'])}" if "liveness" in record else who),
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"run [bold]{record['run_id']}[/]: {record['status']} ({record['source']}), "
            f"{record['started_at']} -> {record['finished_at']}, {_fmt(record['seconds'])} s",
            highlight=False,
        )
    for a in record.get("attempts") or []:
        console.print(
            f"attempt {a['started_at']} -> {a['finished_at'] or '?'}: {a['status']}, "
            f"{_fmt(a['seconds']) or '?'} s (pid {a['pid']} on host {a['host']})",
            highlight=False,
        )
    console.print(
        f"config {escape(str(prov['config_path']))} sha256 {prov['config_hash']}", highlight=False
    )
    console.print(
        f"host {prov['host']}, executor {prov['executor']}, "
        + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        highlight=False,
    )
    for item in prov["inputs"]:
        console.print(f"input {escape(item['path'])} sha256 {item['sha256']}", highlight=False)
    selection = record.get("selection")
    if selection:
        only = selection.get("initialised_only") or []
        console.print(
            f"nodes run: {', '.join(selection['nodes'])}"
            + (f" (initialised, not run: {', '.join(only)})" if only else ""),
            highlight=False,
        )
        for name, path in (selection.get("datasets") or {}).items():
            console.print(
                f"dataset {escape(name)} from {escape(path)}", highlight=False, soft_wrap=True
            )
    for name, path in (record.get("datasets") or {}).items():
        console.print(
            f"kept dataset {escape(name)}: {escape(path)}", highlight=False, soft_wrap=True
        )
    nodes = ListTable("nodes", ("node", "status", "seconds", "chunks", "rows", "error"))
    nodes.right |= {"seconds", "chunks", "rows"}
    for n in record["nodes"]:
        nodes.add(
            n["node_id"],
            n["status"],
            format_value(n["seconds"], "seconds"),
            format_value(n["chunks"], "count"),
            format_value(n["rows_processed"], "count"),
            n["error"] or "",
        )
    tables = [nodes]
    metrics = ListTable("metrics", ("metric", "value", "unit", "stored as"))
    metrics.right.add("value")
    for m in describe_metrics(record):
        metrics.add(
            m.label, format_value(m.value, m.kind), unit_of(m.kind, currency_of(record)), m.name
        )
    if metrics.rows:
        tables.append(metrics)
    checks = ListTable("checks", ("check", "severity", "result", "message", "description"))
    for c in record["checks"]:
        checks.add(
            c["name"],
            c["severity"],
            "passed" if c["passed"] else "FAILED",
            c["message"] or "",
            c.get("description") or "",
            styles=("", "", "green" if c["passed"] else "red"),
        )
    if checks.rows:
        tables.append(checks)
    if form == "plain":
        console.print(escape("\n\n".join(t.plain() for t in tables)), highlight=False)
    else:
        for t in tables:
            console.print(t.rich())
    for s in record["sla"]:
        state = "[red]BREACHED[/]" if s["breached"] else "[green]met[/]"
        console.print(f"sla {s['target']}: {_fmt(s['seconds'])} s of {s['limit_seconds']} {state}")
    for o in record["outputs"]:
        console.print(
            f"output {o['name']}: {escape(o['path'])} sha256 {o['sha256']}", highlight=False
        )


@runs_app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(help="the first run")],
    run_b: Annotated[str, typer.Argument(help="the second run")],
    store: StoreDir = None,
    as_json: AsJson = False,
    fmt: FormatOption = None,
) -> None:
    """Compare two runs: metrics by the size of their move, config differences, timings."""
    from livecalc.ops.labels import currency_of, format_change, format_value, unit_of
    from livecalc.ops.report import compare_records

    with _errors():
        form = chosen_format(fmt, as_json)
        runs = _store(store)
        second = runs.get(run_b)
        diff = compare_records(runs.get(run_a), second)
    metrics = ListTable(
        "metrics (largest move first)",
        ("metric", "label", "unit", f"a {diff['a']}", f"b {diff['b']}", "difference", "relative"),
    )
    # The metric's name stays whole (greppable); the numbers give way first.
    metrics.whole.add("metric")
    metrics.right |= {f"a {diff['a']}", f"b {diff['b']}", "difference", "relative"}
    for m in diff["metrics"]:
        kind = m["kind"]
        metrics.add(
            m["metric"],
            m["label"],
            unit_of(kind, currency_of(second)),
            format_value(m["a"], kind),
            format_value(m["b"], kind),
            format_value(m["difference"], kind),
            format_change(m["relative"]),
        )
    config = ListTable("config differences", ("key", f"a {diff['a']}", f"b {diff['b']}"))
    config.whole.add("key")
    for c in diff["config"]:
        config.add(c["key"], _fmt(c["a"]), _fmt(c["b"]))
    timings = ListTable(
        "timings (seconds)", ("target", f"a {diff['a']}", f"b {diff['b']}", "ratio")
    )
    for t in diff["timings"]:
        timings.add(t["target"], _fmt(t["a"]), _fmt(t["b"]), _fmt(t["ratio"]))
    print_tables(form, [metrics, config, timings], diff)


@runs_app.command("delete")
def delete(
    run_id: Annotated[str, typer.Argument(help="the run to remove from the store")],
    store: StoreDir = None,
) -> None:
    """Delete a run's record (its output files are left where they are); refused while the
    run runs, and for a prefix of fewer than 4 characters."""
    with _errors():
        runs = _store(store)
        # An unset shell variable ("") or a slip of one character must not delete a run.
        record = runs.get(run_id, min_prefix=DELETE_MIN_PREFIX)
        runs.delete(record["run_id"])
    console.print(f"deleted run {record['run_id']}")


DELETE_MIN_PREFIX = 4
"""The fewest characters of a run id ``runs delete`` takes as a prefix."""


def _age(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw])\s*", text)
    if match is None:
        raise typer.BadParameter(f"{text!r}: write an age like 7d, 12h, 30m, 2w")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


@runs_app.command("gc")
def gc(
    older_than: Annotated[str, typer.Option(help="age of checkpoints to remove: 7d, 12h")] = "7d",
    store: StoreDir = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="checkpoint folder or URI (default: runs/ beside the store)")
    ] = None,
) -> None:
    """Remove run folders not touched for a while (aged by their newest file): checkpoints
    of runs killed and never resumed, and the datasets runs kept (--keep-datasets). A run
    still running and what is not a run folder are left alone."""
    from livecalc.ops.checkpoint import checkpoint_store
    from livecalc.ops.home import checkpoint_root
    from livecalc.ops.liveness import collect_garbage

    seconds = _age(older_than)
    with _errors():
        done = collect_garbage(
            checkpoint_store(checkpoint or checkpoint_root(store)),
            seconds,
            locks=checkpoint_root(store),
        )
    removed = done.removed
    console.print(
        f"removed {len(removed)} checkpoints" + (f": {', '.join(removed)}" if removed else ""),
        highlight=False,
    )
    if done.running:
        running = [f"{r} ({done.owners[r].describe()})" for r in done.running]
        console.print(
            f"left {len(running)} running: {', '.join(running)}", highlight=False, soft_wrap=True
        )


def check(
    run_id: Annotated[str, typer.Argument(help="the run whose outputs to check again")],
    store: StoreDir = None,
    as_json: AsJson = False,
    fmt: FormatOption = None,
) -> None:
    """Run a stored run's declared checks again on its written outputs; exit 1 on an error.

    Exit 2 when an output or input file changed since the run (its sha256 differs)."""
    from livecalc.ops.checks import recheck_run

    with _errors():
        form = chosen_format(fmt, as_json)
        record = _store(store).get(run_id)
        results = recheck_run(record)
    table = ListTable(
        f"checks of run {record['run_id']}", ("check", "severity", "result", "message")
    )
    for r in results:
        table.add(
            r.name,
            r.severity,
            "passed" if r.passed else "FAILED",
            r.message,
            styles=("", "", "green" if r.passed else "red"),
        )
    print_tables(form, [table], [r.to_dict() for r in results])
    if any(not r.passed and r.severity == "error" for r in results):
        raise typer.Exit(1)


def report(
    run_id: Annotated[str, typer.Argument(help="the run to report")],
    out: Annotated[
        Path | None, typer.Option(help="HTML file (default: report-RUN_ID.html)")
    ] = None,
    against: Annotated[str | None, typer.Option(help="compare with this run")] = None,
    store: StoreDir = None,
) -> None:
    """Write a run's self-contained HTML report (charts, checks, provenance)."""
    from livecalc.ops.report import write_report

    with _errors():
        runs = _store(store)
        record = runs.get(run_id)
        other = runs.get(against) if against is not None else None
        path = write_report(out or Path(f"report-{record['run_id']}.html"), record, other)
    console.print(f"report: {escape(str(path.resolve()))}", highlight=False)


def resume(
    run_id: Annotated[str, typer.Argument(help="the killed run to finish")],
    store: StoreDir = None,
    checkpoint: Annotated[
        str | None, typer.Option(help="checkpoint folder or URI (default: runs/ beside the store)")
    ] = None,
    report_file: Annotated[
        Path | None, typer.Option("--report", help="write the HTML report")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Finish a killed run: only the chunks not in its checkpoint are computed. RUN_ID may
    be a unique prefix; a run still running is refused."""
    from livecalc.ops.session import RunFinished
    from livecalc.ops.session import resume as ops_resume

    with _errors():
        try:
            result = _HELPERS["run_with_progress"](
                progress,
                lambda bars: ops_resume(
                    run_id, store=store, checkpoint=checkpoint, progress=bars, report=report_file
                ),
            )
        except RunFinished as done:
            if not done.completed:
                raise  # nothing to resume: exit 2
            # Killed after it finished, before its final record: the record is now complete.
            console.print(escape(str(done)), highlight=False, soft_wrap=True)
            return
    _HELPERS["finish_run"](result)


def register(app: typer.Typer, **helpers: Callable[..., Any]) -> None:
    """Mount ``runs``, ``check``, ``report`` and ``resume`` on the main command.

    ``helpers``: ``user_errors``, ``run_with_progress`` and ``finish_run`` of the main command.
    """
    _HELPERS.update(helpers)
    app.add_typer(runs_app, name="runs")
    app.command("check")(check)
    app.command("report")(report)
    app.command("resume")(resume)
