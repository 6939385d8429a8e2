"""Serving the Assumptions Manager: the listening socket, uvicorn, worker processes and TLS.

``livecalc.am_server`` builds the app; this module puts it on the network:

- ``listening_socket`` binds the port with ``TCP_NODELAY`` on every connection (see there
  for the 40 ms keep-alive delay it removes);
- ``BodyLimit`` answers 413 to a request body over ``MAX_BODY_BYTES`` without reading it;
- ``BackgroundServer`` runs an app in a thread (tests, notebooks, the benchmark);
- ``serve`` runs ``livecalc am serve``: one process, or ``workers`` processes sharing the
  port (each builds the same app from the same settings, so tokens and tables behave the
  same whichever answers), over plain HTTP or TLS (``tls_cert``/``tls_key``).

uvicorn runs on uvloop (a dependency where it builds; asyncio elsewhere) with the httptools
parser, its request head capped at ``MAX_HEADER_BYTES``.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
import ssl
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from livecalc._am_tokens import (
    ENV_CLIENTS,
    ENV_SECRET,
    MAX_SESSION_SECONDS,
    parse_clients,
    secret_from_env,
)
from livecalc._am_transport import is_loopback
from livecalc.errors import ConfigurationError
from livecalc.log import get_logger

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "BackgroundServer",
    "BodyLimit",
    "ServeSettings",
    "listening_socket",
    "serve",
    "worker_app",
]

MAX_BODY_BYTES = 64 * 1024
"""The largest request body any endpoint reads (token requests are a few hundred bytes)."""
MAX_HEADER_BYTES = 16 * 1024
"""The largest request head (request line and headers) the server buffers."""
MAX_WORKERS = 64
_ENV_SETTINGS = "LIVECALC_AM_WORKER_SETTINGS"
_log = get_logger(component="am_server")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413, never read whole.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked
    body is read up to the limit, then refused. Anything under it is handed on unchanged.
    Without it, an unauthenticated ``POST /v1/token`` of 256 MB was read whole (990 MB RSS).
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        detail = {
            "error": "request_too_large",
            "message": f"request bodies are limited to {self.max_bytes} bytes",
        }
        payload = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request head (431 past it).

    h11 caps an unfinished head itself (``h11_max_incomplete_event_size``); httptools keeps
    an endless header line in its own buffer, so the bytes that arrive before a head ends are
    counted here. At module level, so worker processes can unpickle uvicorn's config.
    """

    _in_head = True
    _head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still inside the same head after this piece, and past the cap: cut it off.
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()


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


@dataclass(frozen=True)
class ServeSettings:
    """What every worker needs to build the same app (the secret comes from the environment)."""

    root: str
    token_ttl_seconds: float
    refresh_window_seconds: float
    max_session_seconds: float


def _build(settings: ServeSettings, secret: str) -> FastAPI:
    from livecalc.am_server import create_app  # am_server imports this module

    return create_app(
        settings.root,
        secret,
        token_ttl_seconds=settings.token_ttl_seconds,
        refresh_window_seconds=settings.refresh_window_seconds,
        max_session_seconds=settings.max_session_seconds,
        clients=parse_clients(os.environ.get(ENV_CLIENTS, "")),
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
    )


class BackgroundServer:
    """Runs an app with uvicorn on a loopback port in a thread (tests, notebooks).

    ``port=0`` picks a free port; ``url`` says which (``https`` with ``tls_cert``/``tls_key``).
    ``loop`` and ``http`` choose uvicorn's event loop and parser (``auto`` for the fastest
    installed). Use as a context manager.
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
    ) -> None:
        check_tls(tls_cert, tls_key)
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
) -> None:
    """Run the AM in the foreground until interrupted (``livecalc am serve``).

    With ``workers`` > 1, that many processes accept connections on the one port; uvicorn's
    supervisor restarts a worker that dies.

    Raises:
        ConfigurationError: no usable secret, a bad ``--root``, lifetime, worker count,
            certificate or key, a bad client list, or a port that cannot be bound.
    """
    if isinstance(workers, bool) or not 1 <= workers <= MAX_WORKERS:
        raise ConfigurationError(
            f"--workers must be from 1 to {MAX_WORKERS}; got {workers} (one per core is a good "
            "start)"
        )
    check_tls(tls_cert, tls_key)
    secret = secret or secret_from_env()
    settings = ServeSettings(
        str(Path(root).resolve()),
        token_ttl_seconds,
        refresh_window_seconds,
        MAX_SESSION_SECONDS if max_session_seconds is None else max_session_seconds,
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
                app, host, port, quiet=False, tls_cert=tls_cert, tls_key=tls_key
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
        )
        config.access_log = access_log
        _supervisor(Multiprocess, config, sock).run()
    finally:
        sock.close()
