"""The ``livecalc`` command line: typer over the public API, rich for progress and tables.

Exit codes: 0 success, 1 a run failed, 2 bad usage or a bad config or input, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM). User errors get one line on stderr, never a traceback
(``--debug`` shows one).
"""

from __future__ import annotations

import contextlib
import json
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
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

from livecalc.cli.am import am_app
from livecalc.cli.esg import esg_app
from livecalc.cli.runs import register as register_runs
from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import LoggerConfig, configure_logging, scrub_text

if TYPE_CHECKING:
    from livecalc.pipeline.api import RunResult

__all__ = ["app", "main"]

app = typer.Typer(
    name="livecalc",
    help="Run actuarial calculation pipelines (ESG -> projection -> solver) as a DAG.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
generate_app = typer.Typer(help="Generate realistic, seeded sample data.", no_args_is_help=True)
app.add_typer(generate_app, name="generate")

console = Console()
err_console = Console(stderr=True)

ExecutorName = Literal["local", "processes", "ray"]
StoreOption = Annotated[
    Path | None, typer.Option("--store", help="run store folder (default: $LIVECALC_HOME)")
]
NoStoreOption = Annotated[bool, typer.Option("--no-store", help="record nothing in the store")]
ReportOption = Annotated[
    Path | None, typer.Option("--report", help="write the HTML run report to this file")
]


@contextlib.contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    """Turn LiveCalc's errors into one line and an exit code (a traceback with --debug)."""
    try:
        yield
    except ConfigurationError as exc:
        _print_error(exc, debug)
        raise typer.Exit(2) from None
    except CalcEngineError as exc:
        _print_error(exc, debug)
        raise typer.Exit(1) from None
    except OSError as exc:
        # A path the user gave cannot be created or written (a file where a folder should
        # be, no permission, a full disk): their input to fix, not a bug to trace.
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file is where a folder is needed"
        _print_error(f"{where}{reason}; check the path and its permissions", debug)
        raise typer.Exit(2) from None
    except KeyboardInterrupt as exc:
        # Worker processes are killed at once; inline nodes stop after their running chunk.
        # Unfinished outputs are not written and their temporary files are removed.
        terminated = isinstance(exc, _Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        err_console.print(f"[red]{what}:[/] unfinished outputs were not written")
        raise typer.Exit(EXIT_SIGTERM if terminated else EXIT_SIGINT) from None


EXIT_SIGINT = 130
"""Exit code after Ctrl-C (SIGINT): 128 + 2, as a shell reports it."""
EXIT_SIGTERM = 143
"""Exit code after SIGTERM: 128 + 15, as a shell reports a process ended by it."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the run stops and cleans up as on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a run goes, SIGTERM stops it like Ctrl-C: workers killed, temp files removed."""

    def _raise(signum: int, frame: object) -> None:
        # Once: a second SIGTERM during the clean-up must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread (an embedding app): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_error(exc: BaseException | str, debug: bool) -> None:
    if debug:
        err_console.print(scrub_text(traceback.format_exc()), markup=False, highlight=False)
    # soft_wrap: the message stays one line (greppable), whatever the terminal width.
    # escape: a message like "[projection] engine failed" is text, not rich markup.
    # scrub_text: a token pasted into the wrong place is quoted back masked, never whole.
    message = escape(scrub_text(str(exc)))
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)


def _configure_logging(log_file: Path | None, log_json: bool, debug: bool) -> None:
    level = "DEBUG" if debug else ("INFO" if log_file or log_json else "WARNING")
    configure_logging(
        LoggerConfig(
            min_level=level,
            enable_console=log_file is None or log_json,
            enable_file=log_file is not None,
            log_file_path=log_file,
            enable_json=log_json or log_file is not None,
            # The plain console: the CLI prints every failure itself, once (one line per error).
            console_errors=debug or log_json,
        )
    )


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


def _run_with_progress(show: bool, start: Callable[[Any], RunResult]) -> RunResult:
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
    console.print(table)
    for node_id, outputs in result.statistics.items():
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
        console.print(stats)
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


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="pipeline config (JSON)")],
    executor: Annotated[
        ExecutorName | None, typer.Option(help="where engines run (default: the config's)")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override an engine's config: ENGINE_ID.KEY=VALUE"),
    ] = None,
    chunk_size: Annotated[int | None, typer.Option(min=1, help="policies per chunk")] = None,
    parallelism: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="engine replicas per chunked node (default: CPUs for processes, cluster "
            "CPUs for ray, 1 for local)",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join with --executor ray (default: RAY_ADDRESS)"),
    ] = None,
    log_file: Annotated[Path | None, typer.Option(help="write JSON log lines here")] = None,
    log_json: Annotated[bool, typer.Option(help="JSON log lines on stderr")] = False,
    debug: Annotated[bool, typer.Option(help="debug logs and tracebacks")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    store: StoreOption = None,
    no_store: NoStoreOption = False,
    report: ReportOption = None,
    node: Annotated[
        list[str] | None,
        typer.Option("--node", help="run only this node (repeat for several); others are not run"),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            help="NAME=PATH: a dataset a selected node reads, from the file a node not "
            "selected kept (Parquet records, JSON statistics)",
        ),
    ] = None,
    keep_datasets: Annotated[
        bool,
        typer.Option(
            "--keep-datasets",
            help="also write every dataset the run produces to "
            "$LIVECALC_HOME/runs/RUN_ID/datasets/",
        ),
    ] = False,
) -> None:
    """Run a pipeline config; exit 1 when a node or an error check fails, 2 on bad input."""
    from livecalc.ops.session import run as ops_run

    with _user_errors(debug), _sigterm_interrupts():
        _configure_logging(log_file, log_json, debug)
        datasets = _dataset_options(dataset or [])
        result = _run_with_progress(
            progress,
            lambda bars: ops_run(
                config,
                overrides=set_ or [],
                executor=executor,
                chunk_size=chunk_size,
                progress=bars,
                parallelism=parallelism,
                address=address,
                store=False if no_store else store,
                report=report,
                source="cli",
                nodes=node,
                datasets=datasets or None,
                keep_datasets=keep_datasets,
            ),
        )
    finish_run(result)


def _dataset_options(texts: list[str]) -> dict[str, Path]:
    """The ``NAME=PATH`` values of ``run --dataset``, by name."""
    datasets: dict[str, Path] = {}
    for text in texts:
        name, sep, path = text.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ConfigurationError(
                f"--dataset {text!r}: give NAME=PATH, the dataset's name and its file "
                "(--dataset scenarios=runs/RUN_ID/datasets/scenarios.parquet)"
            )
        if name in datasets:
            raise ConfigurationError(f"--dataset {name}: given twice; give each dataset once")
        datasets[name] = Path(path)
    return datasets


def finish_run(result: RunResult) -> None:
    """Print the summary, the report and store problems; exit 1 or 2 when needed."""
    print_summary(result)
    error = result.summary.extras.get("store_error")
    if error:
        _print_error(error, False)
        raise typer.Exit(2)
    if not result.success:
        raise typer.Exit(1)


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="pipeline config (JSON)")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override: ENGINE_ID.KEY=VALUE")
    ] = None,
    engines: Annotated[
        bool, typer.Option(help="also initialise each engine (its config, its assumptions)")
    ] = True,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Check a pipeline config without running it."""
    from livecalc.pipeline.api import check_engines
    from livecalc.pipeline.loading import load_config

    with _user_errors(debug):
        if engines:
            parsed = check_engines(config, overrides=set_ or [])
        else:
            parsed = load_config(config, set_ or [])
    order = " -> ".join(n.id for n in parsed.engines)
    console.print(
        f"[green]ok:[/] {escape(str(config))}: {len(parsed.engines)} engines ({order})",
        soft_wrap=True,
    )


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="write to this file instead of stdout")] = None,
) -> None:
    """Print the config's JSON Schema (for editors)."""
    from livecalc.pipeline.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        with _user_errors(False):
            out.write_text(text, encoding="utf-8")


@app.command()
def engines() -> None:
    """List the engine types, their aliases and their info."""
    from livecalc.runtime.factory import BUILTIN_ALIASES, EngineFactory

    factory = EngineFactory()
    table = Table(title="engine types")
    for column in ("type", "aliases", "name", "version", "AM"):
        table.add_column(column)
    for engine_type in factory.list_engine_types():
        aliases = ", ".join(a for a, t in BUILTIN_ALIASES.items() if t == engine_type)
        try:
            info = factory.create_engine(engine_type).get_info()
            name, version = escape(info.name), escape(info.version)
            am = str(info.supports_assumptions_manager)
        except CalcEngineError:
            # Some engines (native libraries) only know their info once initialised.
            name, version, am = "[dim](described once initialised)[/]", "", ""
        table.add_row(engine_type, aliases, name, version, am)
    console.print(table)


@generate_app.command("policies")
def generate_policies_cmd(
    out: Annotated[Path, typer.Argument(help="output file (.parquet or .csv)")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="number of policies")] = 10_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    in_force_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share already in force")
    ] = 0.0,
    max_term: Annotated[int, typer.Option(min=1, help="longest term in years")] = 50,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Write seeded, realistic sample policies."""
    from livecalc.io.generate import generate_policies, write_policies

    with _user_errors(debug):
        out.parent.mkdir(parents=True, exist_ok=True)
        data = generate_policies(
            n, seed=seed, in_force_fraction=in_force_fraction, max_term=max_term
        )
        rows = write_policies(out, data)
    console.print(f"wrote {rows:,} policies to {escape(str(out))}", highlight=False)


@generate_app.command("scenarios")
def generate_scenarios_cmd(
    out: Annotated[Path, typer.Argument(help="output file (.parquet or .csv)")],
    n: Annotated[
        int | None, typer.Option("--n", "-n", min=1, help="scenarios (split into outer x inner)")
    ] = None,
    outer: Annotated[int | None, typer.Option(min=1, help="outer (real-world) paths")] = None,
    inner: Annotated[int | None, typer.Option(min=1, help="inner paths per outer path")] = None,
    years: Annotated[int, typer.Option(min=1, help="projection years")] = 50,
    model: Annotated[str, typer.Option(help="hull_white, vasicek, cir, ...")] = "hull_white",
    seed: Annotated[int, typer.Option(help="random seed")] = 42,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="an ESG config key, KEY=VALUE (value as JSON): --set a=0.05 --set sigma=0.02",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="show tracebacks")] = False,
) -> None:
    """Write seeded interest-rate scenarios from the ESG (with its metadata)."""
    from livecalc.io.generate import generate_scenarios, write_scenarios

    if n is None and outer is None and inner is None:
        n = 1_000
    with _user_errors(debug):
        options = dict(_esg_option(text) for text in set_ or [])
        out.parent.mkdir(parents=True, exist_ok=True)
        data = generate_scenarios(n, years, seed, model=model, outer=outer, inner=inner, **options)
        rows = write_scenarios(out, data)
    console.print(f"wrote {rows:,} scenario rows to {escape(str(out))}", highlight=False)


def _esg_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``generate scenarios --set``; the value is JSON, else a string."""
    key, sep, raw = text.partition("=")
    reserved = ("model", "outer", "inner", "years", "seed")
    if not sep or not key.isidentifier() or key in reserved:
        raise ConfigurationError(
            f"--set {text!r}: give KEY=VALUE with an ESG config key (a, sigma, b, r0, curve, "
            f"antithetic, ...; docs/engines/esg.md); {', '.join(reserved)} have their own options"
        )
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for the data, config and results")] = Path(
        "demo_output"
    ),
    policies: Annotated[int, typer.Option(min=1, help="number of sample policies")] = 10_000,
    executor: Annotated[ExecutorName, typer.Option(help="where engines run")] = "local",
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    debug: Annotated[bool, typer.Option(help="debug logs and tracebacks")] = False,
    seed: Annotated[int, typer.Option(help="seed of the policies and the ESG")] = 42,
    store: StoreOption = None,
    no_store: NoStoreOption = False,
    report: Annotated[
        Path | None, typer.Option(help="HTML run report (default: report.html in --out)")
    ] = None,
) -> None:
    """Generate sample data and run the full pipeline: ESG -> projection -> solver."""
    from livecalc.cli.demo import write_demo
    from livecalc.ops.session import run as ops_run

    _configure_logging(None, False, debug)
    report_path = report if report is not None else out / "report.html"
    with _user_errors(debug), _sigterm_interrupts():
        config_path = write_demo(out, policies, seed=seed)
        console.print(
            f"demo data and config in {escape(str(out))} ({escape(config_path.name)})",
            highlight=False,
        )
        result = _run_with_progress(
            progress,
            lambda bars: ops_run(
                config_path,
                executor=executor,
                progress=bars,
                store=False if no_store else store,
                report=report_path,
                source="demo",
            ),
        )
    console.print(f"report: {escape(str(report_path.resolve()))}", highlight=False)
    finish_run(result)


@app.command()
def warmup(
    debug: Annotated[bool, typer.Option(help="debug logs and tracebacks")] = False,
) -> None:
    """Compile every numba kernel the engines use into numba's cache (once per install)."""
    from livecalc.pipeline.warmup import warm_up

    # The warm-up data trips the engines' advice (e.g. annual steps for policies in force):
    # not the user's business.
    configure_logging(LoggerConfig(min_level="DEBUG" if debug else "ERROR", console_errors=debug))
    with _user_errors(debug):
        report = warm_up(lambda message: err_console.print(message, highlight=False))
    table = Table(title="numba kernels")
    for column in ("kernel", "signatures", "compiled", "from cache"):
        table.add_column(column, justify="left" if column == "kernel" else "right")
    for k in report.kernels:
        table.add_row(k.name, str(k.signatures), str(k.compiled), str(k.from_cache))
    console.print(table)
    console.print(
        f"compiled {report.compiled} signatures, loaded {report.from_cache} from the cache; "
        f"compiling took {report.compile_seconds:.1f} s, warm-up {report.seconds:.1f} s",
        highlight=False,
    )


app.add_typer(esg_app, name="esg")
app.add_typer(am_app, name="am")
register_runs(
    app,
    user_errors=_user_errors,
    run_with_progress=_run_with_progress,
    finish_run=finish_run,
)


def main() -> None:
    """The ``livecalc`` console script."""
    app()
