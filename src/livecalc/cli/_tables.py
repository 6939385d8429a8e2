"""How listing commands print: a table, or ``--format plain|csv|json`` for scripts and logs.

A table on a terminal fits the terminal; written to a pipe or a file (cron, CI logs) it is
never cut: every column is as wide as its longest value. ``plain`` is the same table with
no borders and no colour (columns padded with spaces), ``csv`` is RFC 4180 with a header
row, ``json`` is the data itself.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["Format", "FormatOption", "ListTable", "chosen_format", "out_console", "print_tables"]

Format = Literal["table", "plain", "csv", "json"]
FormatOption = Annotated[
    Format | None,
    typer.Option(
        "--format",
        help="table (default; never cut when not a terminal), plain, csv or json",
        case_sensitive=False,
    ),
]

_WIDE = 100_000
"""The console width off a terminal: wide enough that no table is cut or wrapped."""


def out_console() -> Console:
    """A console on stdout: the terminal's width on a terminal, no limit otherwise."""
    console = Console()
    return console if console.is_terminal else Console(width=_WIDE)


def chosen_format(fmt: Format | None, as_json: bool) -> Format:
    """``--format``, with the older ``--json`` flag meaning ``--format json``."""
    if as_json and fmt not in (None, "json"):
        raise typer.BadParameter(f"--json and --format {fmt} disagree: give one")
    return "json" if as_json else (fmt or "table")


class ListTable:
    """A titled table of plain values, printed in any format; ``styles`` colour a cell."""

    def __init__(self, title: str, columns: Sequence[str]) -> None:
        self.title = title
        self.columns = list(columns)
        self.rows: list[list[str]] = []
        self.styles: list[list[str]] = []
        self.right: set[str] = set()
        self.whole: set[str] = set()

    def add(self, *values: Any, styles: Sequence[str] = ()) -> None:
        """One row of values (None: empty); ``styles``: a rich style per cell ('' none)."""
        self.rows.append(["" if v is None else str(v) for v in values])
        self.styles.append(list(styles) + [""] * (len(values) - len(styles)))

    def rich(self) -> Table:
        """The table for a console: values escaped, styled cells coloured."""
        table = Table(title=self.title)
        for column in self.columns:
            table.add_column(
                column,
                justify="right" if column in self.right else "left",
                no_wrap=column in self.whole,
            )
        for row, styles in zip(self.rows, self.styles, strict=True):
            table.add_row(
                *(
                    f"[{s}]{escape(v)}[/]" if s else escape(v)
                    for v, s in zip(row, styles, strict=True)
                )
            )
        return table

    def plain(self) -> str:
        """The table as padded columns of text, with its title and a header line."""
        widths = [
            max([len(c), *(len(r[i]) for r in self.rows)]) for i, c in enumerate(self.columns)
        ]
        lines = [self.title]
        for row in [self.columns, *self.rows]:
            cells = [
                v.rjust(w) if c in self.right else v.ljust(w)
                for v, w, c in zip(row, widths, self.columns, strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def csv(self) -> str:
        """The table as CSV with a header row (no title)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()


def print_tables(fmt: Format, tables: Sequence[ListTable], data: Any) -> None:
    """Print ``tables`` in ``fmt`` (json prints ``data``; csv the first table only)."""
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2, default=str))
    elif fmt == "csv":
        typer.echo(tables[0].csv(), nl=False)
    elif fmt == "plain":
        typer.echo("\n\n".join(t.plain() for t in tables))
    else:
        console = out_console()
        for t in tables:
            console.print(t.rich())
