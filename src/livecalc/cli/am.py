"""``livecalc am``: run the Assumptions Manager server, issue its tokens, check credentials."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from livecalc.assumptions import tokens as am_tokens
from livecalc.errors import ConfigurationError
from livecalc.log import scrub_text

__all__ = ["am_app"]

am_app = typer.Typer(
    name="am",
    help="The Assumptions Manager: serve versioned tables, issue tokens, check credentials.",
    no_args_is_help=True,
)
_err_console = Console(stderr=True)


def _fail(exc: ConfigurationError) -> typer.Exit:
    _err_console.print(
        f"[red]error:[/] {escape(scrub_text(str(exc)))}", highlight=False, soft_wrap=True
    )
    return typer.Exit(2)


@am_app.command()
def serve(
    root: Annotated[
        Path, typer.Option("--root", help="Folder of <name>/<version>.csv|parquet tables.")
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8765,
    workers: Annotated[
        int, typer.Option(help="Processes sharing the port (one per core is a good start).")
    ] = 1,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: serve HTTPS (with --tls-key).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    token_ttl_seconds: Annotated[
        float, typer.Option(help="Lifetime of the tokens it issues and refreshes (max 30 days).")
    ] = 3600.0,
    refresh_window_seconds: Annotated[
        float, typer.Option(help="How long after expiry a token may still be refreshed.")
    ] = 7 * 24 * 3600.0,
    max_session_seconds: Annotated[
        float,
        typer.Option(help="How long a chain of refreshes may last from its first token."),
    ] = am_tokens.MAX_SESSION_SECONDS,
    access_log: Annotated[
        bool, typer.Option(help="Log one line per request (off behind a proxy that logs).")
    ] = True,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            help="Requests per client address, e.g. 100/s or 600/min (429 with Retry-After "
            "past it; per worker process)."
        ),
    ] = None,
    rate_limit_burst: Annotated[
        int | None,
        typer.Option(help="Requests an address may send at once (default: the rate per second)."),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(help="Requests answered at once per worker (503 with Retry-After past it)."),
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="IP address or network of a reverse proxy whose X-Forwarded-For names the "
            "client (repeatable; default: none, the client is the TCP peer).",
        ),
    ] = None,
) -> None:
    """Serve ROOT's tables over HTTP(S) behind tokens signed with LIVECALC_AM_SECRET."""
    from livecalc.assumptions import server as am_server

    try:
        am_server.serve(
            root,
            host,
            port,
            token_ttl_seconds=token_ttl_seconds,
            refresh_window_seconds=refresh_window_seconds,
            max_session_seconds=max_session_seconds,
            workers=workers,
            tls_cert=tls_cert,
            tls_key=tls_key,
            access_log=access_log,
            rate_limit=rate_limit,
            rate_limit_burst=rate_limit_burst,
            max_in_flight=max_in_flight,
            trusted_proxies=trusted_proxy or (),
        )
    except ConfigurationError as exc:
        raise _fail(exc) from None


@am_app.command()
def token(
    user: Annotated[str, typer.Option("--user", help="Who the token is for (its subject).")],
    ttl_seconds: Annotated[float, typer.Option(help="How long the token is valid.")] = 3600.0,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Assumption names it may read (globs; repeatable)."),
    ] = None,
) -> None:
    """Print a token for USER signed with LIVECALC_AM_SECRET (export it as LIVECALC_AM_TOKEN)."""
    from livecalc.assumptions import server as am_server

    try:
        secret = am_server.secret_from_env(os.environ)
        ttl = am_tokens.check_lifetime(
            "--ttl-seconds", ttl_seconds, maximum=am_tokens.MAX_TOKEN_TTL_SECONDS
        )
        text = am_server.issue_token(secret, user, ttl_seconds=ttl, scope=scope or ["*"])
    except ConfigurationError as exc:
        raise _fail(exc) from None
    typer.echo(text)


@am_app.command()
def check(
    connect: Annotated[
        bool, typer.Option(help="Also ask the server whether it accepts the token.")
    ] = True,
) -> None:
    """Show where the AM credentials come from (token masked) and whether they work."""
    from livecalc.assumptions.credentials import CredentialManager

    try:
        manager = CredentialManager()
    except ConfigurationError as exc:
        raise _fail(exc) from None
    typer.echo(manager.to_string())
    problems = manager.validation_errors(check_connectivity=connect)
    for problem in problems:
        _err_console.print(
            f"[red]error:[/] {escape(scrub_text(str(problem)))}", highlight=False, soft_wrap=True
        )
    if problems:
        raise typer.Exit(2)
    typer.echo("ok")


if __name__ == "__main__":
    am_app()
