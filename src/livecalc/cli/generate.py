"""``livecalc generate``: seeded, realistic sample policies and interest-rate scenarios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from livecalc.cli._common import console, user_errors
from livecalc.errors import ConfigurationError

__all__ = ["generate_app"]

generate_app = typer.Typer(help="Generate realistic, seeded sample data.", no_args_is_help=True)


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

    with user_errors(debug):
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
    with user_errors(debug):
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
