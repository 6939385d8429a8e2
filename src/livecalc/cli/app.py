"""The ``livecalc`` command line: typer over the public API, rich for progress and tables.

This module holds the main command and its ``run``, ``validate``, ``schema``, ``engines``,
``demo`` and ``warmup`` commands, and mounts the groups: ``generate`` (``generate.py``),
``esg`` (``esg.py``), ``am`` (``am.py``) and ``runs`` (``runs.py``). A run's progress bars
and summary are in ``_summary.py``; the consoles, option types, user errors and signals in
``_common.py``.

Exit codes: 0 success, 1 a run failed, 2 bad usage or a bad config or input, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM). User errors get one line on stderr, never a traceback
(``--debug`` shows one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from livecalc._version import __version__
from livecalc.cli._common import (
    ExecutorName,
    NoStoreOption,
    ReportOption,
    StoreOption,
    configure_cli_logging,
    console,
    err_console,
    sigterm_interrupts,
    user_errors,
)
from livecalc.cli._summary import (
    _ProgressBars,  # noqa: F401 (tests/test_ports.py)
    finish_run,
    run_with_progress,
)
from livecalc.cli._tables import FormatOption, ListTable, print_tables
from livecalc.cli.am import am_app
from livecalc.cli.esg import esg_app
from livecalc.cli.generate import generate_app
from livecalc.cli.runs import register as register_runs
from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import LoggerConfig, configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="livecalc",
    help="Run actuarial calculation pipelines (ESG -> projection -> solver) as a DAG.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(generate_app, name="generate")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"livecalc {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Run actuarial calculation pipelines (ESG -> projection -> solver) as a DAG."""


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

    with user_errors(debug), sigterm_interrupts():
        configure_cli_logging(log_file, log_json, debug)
        datasets = _dataset_options(dataset or [])
        result = run_with_progress(
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
    from livecalc.pipeline.api import check_engines, no_effect_warnings
    from livecalc.pipeline.loading import load_config
    from livecalc.runtime.factory import EngineFactory

    with user_errors(debug):
        if engines:
            parsed = check_engines(config, overrides=set_ or [])
        else:
            parsed = load_config(config, set_ or [])
    for warning in no_effect_warnings(parsed, EngineFactory(discover=False)):
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
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
        with user_errors(False):
            out.write_text(text, encoding="utf-8")


@app.command()
def engines(fmt: FormatOption = None) -> None:
    """List the engine types, their aliases and their info."""
    from livecalc.runtime.factory import BUILTIN_ALIASES, EngineFactory

    factory = EngineFactory()
    table = ListTable("engine types", ("type", "aliases", "name", "version", "AM"))
    data = []
    for engine_type in factory.list_engine_types():
        aliases = [a for a, t in BUILTIN_ALIASES.items() if t == engine_type]
        try:
            info = factory.create_engine(engine_type).get_info()
            name, version, am = info.name, info.version, info.supports_assumptions_manager
        except CalcEngineError:
            # Some engines (native libraries) only know their info once initialised.
            name, version, am = "(described once initialised)", None, None
        table.add(engine_type, ", ".join(aliases), name, version, am)
        data.append(
            {"type": engine_type, "aliases": aliases, "name": name, "version": version, "am": am}
        )
    print_tables(fmt or "table", [table], data)


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

    configure_cli_logging(None, False, debug)
    report_path = report if report is not None else out / "report.html"
    with user_errors(debug), sigterm_interrupts():
        config_path = write_demo(out, policies, seed=seed)
        console.print(
            f"demo data and config in {escape(str(out))} ({escape(config_path.name)})",
            highlight=False,
        )
        result = run_with_progress(
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
    with user_errors(debug):
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
    user_errors=user_errors,
    run_with_progress=run_with_progress,
    finish_run=finish_run,
)


def main() -> None:
    """The ``livecalc`` console script."""
    app()
