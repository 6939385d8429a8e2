"""The end-of-run tables of a nested valuation: the distribution at t, the capital, the proxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

from livecalc.cli._common import console

__all__ = ["print_nested"]


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"


def print_nested(node_id: str, outputs: Mapping[str, Any]) -> bool:
    """Print a nested engine's statistics as tables; False when ``outputs`` are not its."""
    nested = outputs.get("nested")
    if not isinstance(nested, Mapping) or "value_t" not in nested:
        return False
    title = (
        f"{node_id}: value at year {nested['valuation_year']} ({nested['outer']:,} outer x "
        f"{nested['inner']:,} inner paths, {nested['model']})"
    )
    table = Table(title=escape(title))
    for column in ("figure", "value", "MC error (inner)", "MC error (outer)"):
        table.add_column(column, justify="right" if column != "figure" else "left")
    value_t = nested["value_t"]
    table.add_row("value at t: mean", _n(value_t["mean"]), _n(value_t["mean_se"]), "")
    for q in value_t["quantiles"]:
        table.add_row(
            f"value at t: {100 * q['level']:g}%", _n(q["value"]), _n(q["se"]), _n(q["se_outer"])
        )
    table.add_row("value at 0 (same flows)", _n(nested["value_0"]), "", "")
    for name in ("var_99_5", "cte_99_5"):
        table.add_row(
            f"{name} (loss of value)",
            _n(nested[name]),
            _n(nested[f"{name}_se"]),
            _n(nested[f"{name}_se_outer"]),
        )
    console.print(table)
    check = nested.get("closed_form")
    if isinstance(check, Mapping):
        console.print(
            f"closed form (Hull-White): max |z| {check['max_abs_z']:.2f} over "
            f"{nested['outer']:,} outer paths, mean z {check['mean_z']:.2f}, "
            f"std z {check['std_z']:.2f}",
            highlight=False,
        )
    lsmc = outputs.get("lsmc")
    if isinstance(lsmc, Mapping):
        _print_lsmc(node_id, lsmc)
    return True


def _print_lsmc(node_id: str, lsmc: Mapping[str, Any]) -> None:
    title = (
        f"{node_id}: LSMC proxy ({lsmc['basis']} degree {lsmc['degree']}, fitted on "
        f"{lsmc['fit_outer']:,} x {lsmc['fit_inner']:,} paths, {lsmc['cost_ratio']:.2g} of the "
        "nested paths)"
    )
    fit = Table(title=escape(title), show_header=False)
    fit.add_column("name")
    fit.add_column("value", justify="right")
    rows = [
        ("R^2 (fit set)", lsmc["r2"]),
        ("R^2 out of sample", lsmc["r2_oos"]),
        ("max |rel. error| out of sample (central 99%)", lsmc["max_abs_rel_error_oos"]),
        ("RMSE out of sample", lsmc["rmse_oos"]),
        (f"var_99_5 on {lsmc['proxy_outer']:,} proxy paths", lsmc["var_99_5"]),
        ("  minus the nested var_99_5", lsmc["var_99_5_vs_nested"]),
    ]
    if isinstance(lsmc.get("closed_form"), Mapping):
        rows.append(
            ("max |rel. error| vs closed form (central)", lsmc["closed_form"][
                "max_abs_rel_error_central"
            ])
        )  # fmt: skip
    for name, value in rows:
        fit.add_row(escape(name), _n(value))
    console.print(fit)
    quantiles = Table(title=escape(f"{node_id}: proxy against the validation set, by quantile"))
    for column in ("level", "nested", "proxy", "rel. error"):
        quantiles.add_column(column, justify="right")
    for q in lsmc["by_quantile"]:
        quantiles.add_row(
            f"{100 * q['level']:g}%", _n(q["nested"]), _n(q["proxy"]), f"{q['rel_error']:+.2%}"
        )
    console.print(quantiles)
