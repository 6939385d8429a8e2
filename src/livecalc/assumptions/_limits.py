"""Request limits of the Assumptions Manager: no request makes the server hold much.

- ``BodyLimit`` (ASGI middleware) answers 413 to a body over ``MAX_BODY_BYTES`` without
  reading it whole: an unauthenticated ``POST /v1/token`` of 256 MB once took the server to
  990 MB RSS;
- ``BoundedHttpTools`` (uvicorn's httptools protocol) answers 431 to a request head that has
  not ended after ``MAX_HEADER_BYTES``: httptools keeps an unfinished header in its own
  buffer. h11 has the same cap through ``h11_max_incomplete_event_size``.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_BODY_BYTES", "MAX_HEADER_BYTES", "BodyLimit", "BoundedHttpTools"]

MAX_BODY_BYTES = 64 * 1024
"""The largest request body any endpoint reads (token requests are a few hundred bytes)."""
MAX_HEADER_BYTES = 16 * 1024
"""The largest request head (request line and headers) the server buffers."""


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
