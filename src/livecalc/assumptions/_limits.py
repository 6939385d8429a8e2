"""Request limits of the Assumptions Manager: no request makes the server hold much.

- ``BodyLimit`` (ASGI middleware) answers 413 to a body over ``MAX_BODY_BYTES`` without
  reading it whole (an unauthenticated ``POST /v1/token`` of 256 MB once took the server to
  990 MB RSS), and 408 to a body not received within ``BODY_TIMEOUT_SECONDS``;
- ``BoundedHttpTools`` (uvicorn's httptools protocol) answers 431 to a request head that has
  not ended after ``MAX_HEADER_BYTES`` (httptools keeps an unfinished header in its own
  buffer; h11 has the same cap through ``h11_max_incomplete_event_size``), and closes a
  connection whose head has not ended ``HEAD_TIMEOUT_SECONDS`` after it began;
- ``RateLimit`` (``livecalc am serve --rate-limit 100/s``) answers 429 with ``Retry-After``
  to a client address past its token bucket: the TCP peer's address, unless the operator
  names trusted proxies (``--trusted-proxy``), whose ``X-Forwarded-For`` then counts;
- ``InFlightLimit`` (``--max-in-flight N``) answers 503 with ``Retry-After`` while N requests
  are being answered already, so a crowd of clients queues at their end, not in the server.
  A request counts once its body has been read: clients that send a head, or part of a
  body, and then nothing hold a connection (until the timeouts above), never a slot.

``/health`` passes both, so a load balancer's checks neither count nor get refused.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from livecalc.errors import ConfigurationError
from livecalc.log import get_logger

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "HEAD_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "BodyLimit",
    "BoundedHttpTools",
    "InFlightLimit",
    "RateLimit",
    "parse_rate",
]

MAX_BODY_BYTES = 64 * 1024
"""The largest request body any endpoint reads (token requests are a few hundred bytes)."""
MAX_HEADER_BYTES = 16 * 1024
"""The largest request head (request line and headers) the server buffers."""
BODY_TIMEOUT_SECONDS = 10.0
"""The longest a request's body may take to arrive (408 past it): 64 KiB at most."""
HEAD_TIMEOUT_SECONDS = 10.0
"""The longest a request's head may take to arrive once it began (the connection is closed)."""

_log = get_logger(component="am_server")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413, never read whole,
    and one that has not arrived ``timeout_seconds`` after the head 408.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked
    body is read up to the limit, then refused. Anything under it is read here, whole, and
    handed on: the middlewares inside (``InFlightLimit``) only see requests ready to answer.
    Without it, an unauthenticated ``POST /v1/token`` of 256 MB was read whole (990 MB RSS),
    and N clients sending a head and then nothing held all N slots of ``--max-in-flight N``.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int = MAX_BODY_BYTES,
        timeout_seconds: float = BODY_TIMEOUT_SECONDS,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

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
        with anyio.move_on_after(self.timeout_seconds) as waited:
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
        if waited.cancelled_caught:
            message_text = f"the request body did not arrive within {self.timeout_seconds:g} s"
            _log.debug("am_body_timeout", client=_client_of(scope), received=size)
            await _answer(send, 408, "request_timeout", message_text, [(b"connection", b"close")])
            return
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
        message = f"request bodies are limited to {self.max_bytes} bytes"
        await _answer(send, 413, "request_too_large", message, [(b"connection", b"close")])


async def _answer(
    send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """An error answer in the app's own shape: ``{"detail": {"error", "message"}}``."""
    payload = json.dumps({"detail": {"error": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


_RATE = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*/\s*(?P<unit>s|sec|second|m|min|minute)\s*$")
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}


def parse_rate(text: str) -> float:
    """Requests per second of ``"100/s"`` or ``"600/min"``.

    Raises:
        ConfigurationError: another form, or a rate that is not above 0.
    """
    match = _RATE.match(text)
    rate = float(match["n"]) / _UNIT_SECONDS[match["unit"]] if match else 0.0
    if not rate > 0:
        raise ConfigurationError(
            f"--rate-limit {text!r}: write REQUESTS/s or REQUESTS/min with REQUESTS above 0, "
            "e.g. 100/s or 600/min"
        )
    return rate


def _client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimit:
    """ASGI middleware: each client address gets ``rate`` requests per second on average and
    bursts of ``burst``; a request past that is answered 429 with ``Retry-After`` (whole
    seconds until the next request would pass), without reaching the app.

    Buckets of addresses idle long enough to be full again are dropped when more than
    ``max_clients`` are kept, so a crowd of addresses cannot grow the table without end.
    """

    def __init__(
        self,
        app: ASGIApp,
        rate: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/health":
            await self.app(scope, receive, send)
            return
        wait = self._take(_client_of(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        message = (
            f"more than {self.rate:g} requests per second (bursts of {self.burst}) from this "
            f"address; retry after {retry_after} s"
        )
        _log.debug("am_rate_limited", client=_client_of(scope), retry_after=retry_after)
        await _answer(send, 429, "rate_limited", message, [(b"retry-after", b"%d" % retry_after)])

    def _take(self, client: str) -> float:
        """0 when ``client`` may send now (a token is taken), else seconds until it may."""
        # One event loop per process runs this with no await inside: no lock needed.
        now = self._clock()
        tokens, when = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_clients:
                self._forget_idle(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {c: b for c, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) > self.max_clients:
            # Still too many active addresses: keep the most recent half.
            recent = sorted(self._buckets.items(), key=lambda item: item[1][1])
            self._buckets = dict(recent[len(recent) // 2 :])


class InFlightLimit:
    """ASGI middleware: while ``max_in_flight`` requests are being answered, another is
    answered 503 with ``Retry-After: 1`` instead of queueing inside the server."""

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/health":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            message = f"the server is answering {self.max_in_flight} requests; retry shortly"
            _log.debug("am_overloaded", client=_client_of(scope), in_flight=self.in_flight)
            await _answer(send, 503, "overloaded", message, [(b"retry-after", b"1")])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request head: 431 past
    ``MAX_HEADER_BYTES``, the connection closed when the head has not ended
    ``head_timeout_seconds`` after its first byte (or after the connection was opened).

    h11 caps an unfinished head itself (``h11_max_incomplete_event_size``); httptools keeps
    an endless header line in its own buffer, so the bytes that arrive before a head ends are
    counted here. uvicorn times out only idle keep-alive connections: without the head
    timeout, a client that opens connections and sends part of a head holds them for ever.
    At module level, so worker processes can unpickle uvicorn's config.
    """

    head_timeout_seconds = HEAD_TIMEOUT_SECONDS
    _in_head = True
    _head_bytes = 0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_head_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._in_head, self._head_bytes = False, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
