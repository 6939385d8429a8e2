"""``livecalc esg``: scenario set tools (mounted by ``livecalc.cli.app`` as a typer sub-app)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from livecalc.engines.esg_check import ESGCheckReport

from livecalc.errors import ConfigurationError

__all__ = ["esg_app"]

# The default of ``esg check --z``; livecalc.engines.esg_check.DEFAULT_Z_THRESHOLD (a test
# keeps the two equal) is not imported here so that ``livecalc --help`` loads no kernel.
DEFAULT_Z_THRESHOLD = 4.0

esg_app = typer.Typer(no_args_is_help=True, add_completion=False)


@esg_app.callback()
def _esg() -> None:
    """Economic scenario generator tools."""


@esg_app.command()
def check(
    file: Path,
    z: float = typer.Option(
        DEFAULT_Z_THRESHOLD, "--z", min=0.0, help="Largest |z| (standard errors) that passes."
    ),
    flat_rate: float | None = typer.Option(
        None, "--flat-rate", help="Test against a flat annual rate instead of the file's curve."
    ),
    curve_file: Annotated[
        Path | None,
        typer.Option(
            "--curve",
            help="Test against this curve file (CSV/Parquet: maturity and rate or "
            "discount_factor) instead of the file's curve.",
        ),
    ] = None,
    curve_kind: str = typer.Option(
        "spot", "--curve-kind", help="What --curve holds: 'spot' rates or 'discount' factors."
    ),
    group_size: int | None = typer.Option(
        None,
        "--group-size",
        min=1,
        help="Consecutive scenarios forming one independent unit "
        "(default from the file's metadata: inner paths when nested, 2 when antithetic, else 1).",
    ),
) -> None:
    """Martingale test and moment checks of a scenario Parquet file (exit 0 pass, 1 fail).

    Scenario files written by LiveCalc carry their curve; for other files give one with
    --flat-rate or --curve.
    """
    from livecalc.assumptions.curves import ZeroCurve
    from livecalc.engines.esg_check import check_scenarios

    console, err_console = Console(), Console(stderr=True)
    try:
        if flat_rate is not None and curve_file is not None:
            raise ConfigurationError("give --flat-rate or --curve, not both")
        curve = None
        if flat_rate is not None:
            curve = ZeroCurve.flat(flat_rate)
        elif curve_file is not None:
            if curve_kind not in ("spot", "discount"):
                raise ConfigurationError(f"--curve-kind {curve_kind!r}: use 'spot' or 'discount'")
            curve = ZeroCurve.from_file(curve_file, curve_kind)  # type: ignore[arg-type]
        report = check_scenarios(file, curve=curve, z_threshold=z, group_size=group_size)
    except ConfigurationError as exc:
        err_console.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(_table(report))
    verdict = "[green]PASS[/]" if report.passed else "[red]FAIL[/]"
    console.print(
        f"{verdict}: {len(report.rows) - len(report.failures)}/{len(report.rows)} checks within "
        f"{report.z_threshold:g} standard errors ({report.scenarios:,} scenarios, "
        f"{report.independent_units:,} independent units, model {report.model or 'unknown'})"
    )
    raise typer.Exit(0 if report.passed else 1)


def _table(report: ESGCheckReport) -> Table:
    table = Table(title="ESG check: mean discount factor vs curve; log-return moments")
    for name in ("check", "year", "expected", "observed", "std error", "z", ""):
        table.add_column(name, justify="left" if name in ("check", "") else "right")
    for row in report.rows:
        table.add_row(
            row.check,
            str(row.maturity),
            f"{row.expected:.6g}",
            f"{row.observed:.6g}",
            f"{row.std_error:.2g}",
            f"{row.z:+.2f}",
            "ok" if row.passed else "[red]FAIL[/]",
        )
    return table
