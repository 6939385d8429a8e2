"""What every ``livecalc`` command shares: the consoles, option types, user errors as one line
and an exit code, SIGTERM handled like Ctrl-C, and the logging set-up.
"""

from __future__ import annotations

import contextlib
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from livecalc.errors import CalcEngineError, ConfigurationError
from livecalc.log import LoggerConfig, configure_logging, scrub_text

__all__ = [
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "ExecutorName",
    "NoStoreOption",
    "ReportOption",
    "StoreOption",
    "configure_cli_logging",
    "console",
    "err_console",
    "print_error",
    "sigterm_interrupts",
    "user_errors",
]

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
def user_errors(debug: bool) -> Iterator[None]:
    """Turn LiveCalc's errors into one line and an exit code (a traceback with --debug)."""
    try:
        yield
    except ConfigurationError as exc:
        print_error(exc, debug)
        raise typer.Exit(2) from None
    except CalcEngineError as exc:
        print_error(exc, debug)
        raise typer.Exit(1) from None
    except OSError as exc:
        # A path the user gave cannot be created or written (a file where a folder should
        # be, no permission, a full disk): their input to fix, not a bug to trace.
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            reason = "a file is where a folder is needed"
        print_error(f"{where}{reason}; check the path and its permissions", debug)
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
def sigterm_interrupts() -> Iterator[None]:
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


def print_error(exc: BaseException | str, debug: bool) -> None:
    if debug:
        err_console.print(scrub_text(traceback.format_exc()), markup=False, highlight=False)
    # soft_wrap: the message stays one line (greppable), whatever the terminal width.
    # escape: a message like "[projection] engine failed" is text, not rich markup.
    # scrub_text: a token pasted into the wrong place is quoted back masked, never whole.
    message = escape(scrub_text(str(exc)))
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)


def configure_cli_logging(log_file: Path | None, log_json: bool, debug: bool) -> None:
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
