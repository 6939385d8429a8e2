"""Serving the Assumptions Manager: the listening socket, uvicorn, worker processes and TLS.

``livecalc.assumptions.server`` builds the app; this module puts it on the network:

- ``listening_socket`` binds the port with ``TCP_NODELAY`` on every connection (see there
  for the 40 ms keep-alive delay it removes);
- ``livecalc.assumptions._limits`` caps request bodies (413) and heads (431);
- ``BackgroundServer`` runs an app in a thread (tests, notebooks, the benchmark);
- ``serve`` runs ``livecalc am serve``: one process, or ``workers`` processes sharing the
  port (each builds the same app from the same settings, so tokens and tables behave the
  same whichever answers), over plain HTTP or TLS (``tls_cert``/``tls_key``).

uvicorn runs on uvloop (a dependency where it builds; asyncio elsewhere) with the httptools
parser, its request head capped at ``MAX_HEADER_BYTES``. uvicorn's proxy headers are off
unless proxies are named (``trusted_proxies``, ``--trusted-proxy``): by default uvicorn takes
``X-Forwarded-For`` from any client on 127.0.0.1 as the client's address, so a local client
rotating that header was a new client to the rate limit on every request.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from livecalc.assumptions._limits import (
    MAX_HEADER_BYTES,
    BoundedHttpTools,
    parse_rate,
)
from livecalc.assumptions._transport import is_loopback
from livecalc.assumptions.app import create_app
from livecalc.assumptions.tokens import (
    ENV_CLIENTS,
    ENV_SECRET,
    MAX_SESSION_SECONDS,
    parse_clients,
    secret_from_env,
)
from livecalc.errors import ConfigurationError
from livecalc.log import get_logger

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "BackgroundServer",
    "ServeSettings",
    "check_trusted_proxies",
    "listening_socket",
    "serve",
    "worker_app",
]

MAX_WORKERS = 64
_ENV_SETTINGS = "LIVECALC_AM_WORKER_SETTINGS"
_log = get_logger(component="am_server")


def _http_protocol(http: str) -> Any:
    """uvicorn's ``http`` setting: httptools with a cap on the request head, or h11."""
    return BoundedHttpTools if http in ("auto", "httptools") else http


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` whose connections send without delay.

    The protocol is named (``IPPROTO_TCP``, not the default 0): asyncio sets ``TCP_NODELAY``
    only on connections of a socket whose ``proto`` says TCP, and a connection accepted from a
    proto-0 socket kept Nagle's algorithm on. uvicorn writes a response's headers and body in
    two writes, so Nagle held the body back until the client's delayed ACK (about 40 ms):
    every request after the first on a keep-alive connection took 40-48 ms. ``TCP_NODELAY``
    on the listening socket is inherited by accepted connections on Linux as well.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def check_tls(cert: Path | str | None, key: Path | str | None) -> None:
    """Load the certificate chain and key once, so a bad pair is one clear error.

    Raises:
        ConfigurationError: only one of the two given, a file missing or unreadable, or a
            key that does not match the certificate.
    """
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise ConfigurationError("--tls-cert and --tls-key go together: give both, or neither")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise ConfigurationError(f"{option} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"--tls-cert {cert} --tls-key {key}: cannot be used ({exc.strerror or exc}); give a "
            "PEM certificate chain and the PEM private key that belongs to it"
        ) from None


def check_trusted_proxies(proxies: Sequence[str]) -> list[str]:
    """The ``--trusted-proxy`` values as uvicorn takes them: IP addresses or networks.

    Raises:
        ConfigurationError: a value that is neither (a host name, ``*``, a typo).
    """
    checked = []
    for proxy in proxies:
        try:
            checked.append(str(ipaddress.ip_network(proxy.strip(), strict=False)))
        except ValueError:
            raise ConfigurationError(
                f"--trusted-proxy {proxy!r}: not an IP address or network; give the address "
                "of the reverse proxy in front of the AM (e.g. 127.0.0.1 or 10.0.0.0/8)"
            ) from None
    return checked


@dataclass(frozen=True)
class ServeSettings:
    """What every worker needs to build the same app (the secret comes from the environment)."""

    root: str
    token_ttl_seconds: float
    refresh_window_seconds: float
    max_session_seconds: float
    rate_limit: float | None = None
    rate_limit_burst: int | None = None
    max_in_flight: int | None = None


def _build(settings: ServeSettings, secret: str) -> FastAPI:
    return create_app(
        settings.root,
        secret,
        token_ttl_seconds=settings.token_ttl_seconds,
        refresh_window_seconds=settings.refresh_window_seconds,
        max_session_seconds=settings.max_session_seconds,
        clients=parse_clients(os.environ.get(ENV_CLIENTS, "")),
        rate_limit=settings.rate_limit,
        rate_limit_burst=settings.rate_limit_burst,
        max_in_flight=settings.max_in_flight,
    )


def worker_app() -> FastAPI:
    """The app of one worker process of ``serve(workers=N)`` (a uvicorn factory)."""
    settings = ServeSettings(**json.loads(os.environ[_ENV_SETTINGS]))
    return _build(settings, secret_from_env())


def _uvicorn_config(
    app: FastAPI | str,
    host: str,
    port: int,
    *,
    quiet: bool,
    workers: int = 1,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    loop: str = "auto",
    http: str = "auto",
    trusted_proxies: Sequence[str] = (),
) -> uvicorn.Config:
    # No websockets or lifespan: the app needs neither, and fewer optional imports.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        factory=isinstance(app, str),
        workers=workers,
        loop=loop,
        http=_http_protocol(http),
        ws="none",
        lifespan="off",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        log_config=None if quiet else uvicorn.config.LOGGING_CONFIG,
        # Idle keep-alive connections are kept a while: clients reuse them between tables.
        timeout_keep_alive=30,
        # X-Forwarded-For names the client only when a named proxy sent it (the rate limit
        # keys on the client's address); uvicorn would trust any client on 127.0.0.1.
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies) or None,
    )


class BackgroundServer:
    """Runs an app with uvicorn on a loopback port in a thread (tests, notebooks).

    ``port=0`` picks a free port; ``url`` says which (``https`` with ``tls_cert``/``tls_key``).
    ``loop`` and ``http`` choose uvicorn's event loop and parser (``auto`` for the fastest
    installed); ``trusted_proxies`` as ``serve``'s. Use as a context manager.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        loop: str = "auto",
        http: str = "auto",
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        check_tls(tls_cert, tls_key)
        proxies = check_trusted_proxies(trusted_proxies)
        self._socket = listening_socket(host, port)
        self.host, self.port = self._socket.getsockname()[:2]
        self._scheme = "https" if tls_cert else "http"
        config = _uvicorn_config(
            app,
            host,
            self.port,
            quiet=True,
            tls_cert=tls_cert,
            tls_key=tls_key,
            loop=loop,
            http=http,
            trusted_proxies=proxies,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL clients use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}"

    def start(self) -> BackgroundServer:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 15.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the AM server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15.0)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _supervisor(multiprocess: Any, config: uvicorn.Config, sock: socket.socket) -> Any:
    """uvicorn's worker supervisor, across its two signatures (older ones take ``target``)."""
    if "target" in inspect.signature(multiprocess).parameters:
        return multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock])
    return multiprocess(config, sockets=[sock])


def serve(
    root: Path | str,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    secret: str | None = None,
    token_ttl_seconds: float = 3600.0,
    refresh_window_seconds: float = 7 * 24 * 3600.0,
    max_session_seconds: float | None = None,
    workers: int = 1,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    access_log: bool = True,
    rate_limit: str | None = None,
    rate_limit_burst: int | None = None,
    max_in_flight: int | None = None,
    trusted_proxies: Sequence[str] = (),
) -> None:
    """Run the AM in the foreground until interrupted (``livecalc am serve``).

    With ``workers`` > 1, that many processes accept connections on the one port; uvicorn's
    supervisor restarts a worker that dies. ``rate_limit`` (``"100/s"``, ``"600/min"``) and
    ``max_in_flight`` hold in each worker process. ``trusted_proxies`` (IP addresses or
    networks of reverse proxies) are the only peers whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed; without them the client is the TCP peer.

    Raises:
        ConfigurationError: no usable secret, a bad ``--root``, lifetime, worker count,
            certificate or key, a bad client list or proxy, or a port that cannot be bound.
    """
    if isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigurationError(
            f"--workers must be from 1 to {MAX_WORKERS}; got {workers} (one per core is a good "
            "start)"
        )
    check_tls(tls_cert, tls_key)
    proxies = check_trusted_proxies(trusted_proxies)
    secret = secret or secret_from_env()
    settings = ServeSettings(
        str(Path(root).resolve()),
        token_ttl_seconds,
        refresh_window_seconds,
        MAX_SESSION_SECONDS if max_session_seconds is None else max_session_seconds,
        parse_rate(rate_limit) if rate_limit is not None else None,
        rate_limit_burst,
        max_in_flight,
    )
    app = _build(settings, secret)  # every check, before anything listens
    # Bound here, not by uvicorn: a port in use is then one clear error (exit 2), not
    # uvicorn's log line and exit code 3.
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise ConfigurationError(
            f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); "
            "choose another port, or stop the server that holds it"
        ) from None
    scheme = "https" if tls_cert else "http"
    _log.info(
        "am_server_start",
        root=settings.root,
        host=host,
        port=port,
        workers=workers,
        tls=bool(tls_cert),
    )
    # The one line a person starting the server needs, whatever the log level.
    url_host = f"[{host}]" if sock.family == socket.AF_INET6 else host
    print(
        f"serving {settings.root} on {scheme}://{url_host}:{port}"
        + (f" with {workers} workers" if workers > 1 else ""),
        file=sys.stderr,
        flush=True,
    )
    if not tls_cert and not is_loopback(host):
        print(
            f"warning: plain HTTP on {host}: tokens cross the network in clear text; use "
            "--tls-cert/--tls-key, or listen on 127.0.0.1 behind a TLS reverse proxy",
            file=sys.stderr,
            flush=True,
        )
    try:
        if workers == 1:
            config = _uvicorn_config(
                app,
                host,
                port,
                quiet=False,
                tls_cert=tls_cert,
                tls_key=tls_key,
                trusted_proxies=proxies,
            )
            config.access_log = access_log
            uvicorn.Server(config).run(sockets=[sock])
            return
        from uvicorn.supervisors import Multiprocess

        # Worker processes start afresh (spawn) and build the app from these settings.
        os.environ[_ENV_SETTINGS] = json.dumps(asdict(settings))
        os.environ[ENV_SECRET] = secret
        config = _uvicorn_config(
            f"{__name__}:worker_app",
            host,
            port,
            quiet=False,
            workers=workers,
            tls_cert=tls_cert,
            tls_key=tls_key,
            trusted_proxies=proxies,
        )
        config.access_log = access_log
        _supervisor(Multiprocess, config, sock).run()
    finally:
        sock.close()
