"""The Assumptions Manager server: versioned tables from a folder, behind signed JWTs.

Tables live at ``ROOT/<name>/<version>.parquet`` (or ``.csv``) and are served as Arrow IPC
streams. Tokens are HS256 JWTs signed with ``LIVECALC_AM_SECRET`` (at least 32 characters);
the server refuses to start without one. A token carries ``sub`` (who), ``exp``, ``auth_time``
and ``scope`` (a list of glob patterns of the assumption names it may read; ``["*"]`` for
all). Tokens and secrets are made and checked in ``livecalc.assumptions.tokens``; the socket, worker
processes and TLS live in ``livecalc.assumptions._serving``, request limits in ``_limits``;
``livecalc.assumptions.server`` gathers the public names of all of them.

Endpoints (all but ``/health`` and token issuing need ``Authorization: Bearer <token>``):

- ``GET /health``: ``{"status": "ok"}``;
- ``POST /v1/token``: a token for ``{"client_id", "client_secret"}`` of a configured client;
- ``POST /v1/token/refresh``: a fresh token for a valid one, also up to
  ``refresh_window_seconds`` after it expired (so an expired token can still be swapped),
  while the chain of refreshes is younger than ``max_session_seconds``;
- ``GET /v1/whoami``: the token's subject, scope and expiry;
- ``GET /v1/assumptions``: the names the token may read;
- ``GET /v1/assumptions/{name}``: its versions, oldest first, and ``latest``;
- ``GET /v1/assumptions/{name}/{version}``: the table (``version`` may be ``latest``), with
  ``ETag``, ``X-Assumption-Version`` (the resolved one) and 304 for ``If-None-Match``.

Errors answer ``{"detail": {"error": code, "message": text}}``: 401 ``token_missing``,
``token_expired`` or ``token_invalid``; 403 ``forbidden``; 400 ``invalid_name``; 404
``unknown_assumption`` or ``unknown_version`` (with ``available``); 413
``request_too_large`` for a body over ``MAX_BODY_BYTES``; 429 ``rate_limited`` (with
``Retry-After``) past ``rate_limit`` requests per second from one address; 503 ``overloaded``
(``Retry-After: 1``) while ``max_in_flight`` requests are being answered. Names and versions are
plain words (letters, digits, ``.``, ``_``, ``-``; no ``..``), and a file whose real path
(symlinks followed) leaves the root is treated as absent.
"""

# No "from __future__ import annotations": FastAPI reads the endpoint annotations, which
# refer to dependencies local to create_app.
import asyncio
import fnmatch
import hashlib
import hmac
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from livecalc.assumptions._limits import MAX_BODY_BYTES, BodyLimit, InFlightLimit, RateLimit
from livecalc.assumptions.tokens import (
    ENV_CLIENTS,
    ENV_SECRET,
    MAX_SESSION_SECONDS,
    MAX_TOKEN_TTL_SECONDS,
    MIN_SECRET_LENGTH,
    TokenError,
    VerifiedTokens,
    check_lifetime,
    issue_token,
    secret_from_env,
    verify_token,
)
from livecalc.errors import ConfigurationError
from livecalc.log import get_logger

__all__ = [
    "ARROW_STREAM_MEDIA_TYPE",
    "ENV_CLIENTS",
    "ENV_SECRET",
    "MAX_BODY_BYTES",
    "MAX_SESSION_SECONDS",
    "MAX_TOKEN_TTL_SECONDS",
    "AssumptionStore",
    "BodyLimit",
    "TokenError",
    "create_app",
    "issue_token",
    "secret_from_env",
    "verify_token",
]

ARROW_STREAM_MEDIA_TYPE = "application/vnd.apache.arrow.stream"
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SUFFIXES = (".parquet", ".csv")
_MAX_ENCODED_TABLES = 32
_BODY_PIECE = 256 * 1024
"""A table larger than this is sent in pieces of this size, each written only once the
client has taken the one before (uvicorn waits on a full socket before the next write): a
client that does not read holds its request in flight (``--max-in-flight``) instead of the
server buffering the whole table for it in memory."""
_MAX_LISTED_NAMES = 4096
_log = get_logger(component="am_server")


def _version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Natural order, so v2.10 sorts after v2.9."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.findall(r"\d+|\D+", version)
    )


def _error(status: int, code: str, message: str, **extra: Any) -> HTTPException:
    """An HTTPException with the server's error body."""
    return HTTPException(status, detail={"error": code, "message": message, **extra})


@dataclass(frozen=True)
class _Encoded:
    """A table file's Arrow IPC bytes and ETag, valid while the file is unchanged."""

    stamp: tuple[int, int]
    etag: str
    body: bytes
    rows: int


class AssumptionStore:
    """The versioned tables under a root folder, confined to it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ConfigurationError(f"--root {root}: not a folder of <name>/<version>.csv")
        self._encoded: dict[Path, _Encoded] = {}
        self._lock = threading.Lock()
        # name -> (the folder's mtime, its versions): listed again only when it changes.
        self._listed: dict[str, tuple[int, list[str]]] = {}
        self._encoding: dict[Path, asyncio.Lock] = {}
        # (name, version asked) -> (the listing it was found in, version, file).
        self._found: dict[tuple[str, str], tuple[list[str], str, Path]] = {}

    def _inside(self, path: Path) -> bool:
        """Whether ``path``'s real location (symlinks followed) is under the root."""
        return path.resolve().is_relative_to(self.root)

    def _check_word(self, kind: str, value: str) -> None:
        if not _WORD.match(value) or ".." in value:
            raise _error(
                400,
                "invalid_name",
                f"{kind} {value!r} is not allowed: use letters, digits, '.', '_' and '-'",
            )

    def names(self) -> list[str]:
        """Every assumption name, sorted."""
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _WORD.match(p.name) and self._inside(p)
        )

    def versions(self, name: str) -> list[str]:
        """The versions of ``name``, oldest first (404 when unknown)."""
        self._check_word("assumption name", name)
        folder = self.root / name
        try:
            stamp = folder.stat().st_mtime_ns
        except OSError:
            stamp = None
        listed = self._listed.get(name)
        if stamp is not None and listed is not None and listed[0] == stamp:
            # Adding, removing or renaming a version (or a symlink) changes the folder's mtime.
            return listed[1]
        if stamp is None or not folder.is_dir() or not self._inside(folder):
            self._listed.pop(name, None)
            raise _error(404, "unknown_assumption", f"no assumption named {name!r}")
        found = {
            p.stem
            for p in folder.iterdir()
            if p.suffix in _SUFFIXES and _WORD.match(p.stem) and p.stem != "latest"
            if p.is_file() and self._inside(p)
        }
        versions = sorted(found, key=_version_key)
        if len(self._listed) >= _MAX_LISTED_NAMES:
            self._listed.clear()
        self._listed[name] = (stamp, versions)
        return versions

    def path(self, name: str, version: str) -> tuple[str, Path]:
        """The resolved version and its file (``latest`` is the newest version)."""
        self._check_word("version", version)
        available = self.versions(name)
        found = self._found.get((name, version))
        if found is not None and found[0] is available:  # the same listing: nothing changed
            return found[1], found[2]
        requested = version
        if version == "latest":
            if not available:
                raise _error(404, "unknown_version", f"{name!r} has no versions", available=[])
            version = available[-1]
        if version not in available:
            raise _error(
                404,
                "unknown_version",
                f"{name!r} has no version {version!r} (available: {', '.join(available)})",
                available=available,
            )
        for suffix in _SUFFIXES:
            candidate = self.root / name / f"{version}{suffix}"
            if candidate.is_file():
                if len(self._found) >= _MAX_LISTED_NAMES:
                    self._found.clear()
                self._found[(name, requested)] = (available, version, candidate)
                return version, candidate
        raise _error(404, "unknown_version", f"{name!r} has no version {version!r}")

    def cached(self, path: Path) -> _Encoded | None:
        """The file's encoded table when it is cached and the file unchanged, else None."""
        info = path.stat()
        with self._lock:
            cached = self._encoded.get(path)
        if cached is not None and cached.stamp == (info.st_mtime_ns, info.st_size):
            return cached
        return None

    async def encode_once(self, path: Path) -> _Encoded:
        """``encoded(path)`` in a thread, once however many requests ask at the same time."""
        lock = self._encoding.setdefault(path, asyncio.Lock())
        try:
            async with lock:
                found = self.cached(path)
                return found if found is not None else await asyncio.to_thread(self.encoded, path)
        finally:
            if not lock.locked():
                self._encoding.pop(path, None)

    def encoded(self, path: Path) -> _Encoded:
        """The file's table as Arrow IPC stream bytes, re-read only when the file changes."""
        cached = self.cached(path)
        if cached is not None:
            return cached
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
        raw = path.read_bytes()
        try:
            table = (
                pq.read_table(pa.BufferReader(raw))
                if path.suffix == ".parquet"
                else (pa_csv.read_csv(pa.BufferReader(raw)))
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise _error(
                500, "unreadable_table", f"{path.relative_to(self.root)} cannot be read: {exc}"
            ) from None
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
        encoded = _Encoded(stamp, etag, sink.getvalue().to_pybytes(), table.num_rows)
        with self._lock:
            self._encoded.pop(path, None)
            self._encoded[path] = encoded
            # Keep the most recently encoded tables only: memory stays bounded however many
            # versions the root holds (dicts keep insertion order, oldest first).
            while len(self._encoded) > _MAX_ENCODED_TABLES:
                del self._encoded[next(iter(self._encoded))]
        return encoded


def _days(seconds: float) -> str:
    return f"{seconds / 86400:.3g} days"


def create_app(
    root: Path | str,
    secret: str,
    *,
    token_ttl_seconds: float = 3600.0,
    refresh_window_seconds: float = 7 * 24 * 3600.0,
    max_session_seconds: float = MAX_SESSION_SECONDS,
    clients: Mapping[str, str] | None = None,
    rate_limit: float | None = None,
    rate_limit_burst: int | None = None,
    max_in_flight: int | None = None,
) -> FastAPI:
    """The AM as a FastAPI app serving ``root`` and signing with ``secret``.

    Args:
        clients: client id -> client secret allowed to ask ``POST /v1/token``.
        rate_limit: requests per second each client address may send on average (429
            past it); None: no limit.
        rate_limit_burst: requests an address may send at once (default: ``rate_limit``
            rounded up).
        max_in_flight: requests answered at once (503 past it); None: no limit.
        refresh_window_seconds: how long after expiry a token may still be refreshed.
        max_session_seconds: how long a chain of refreshes may last from its first token.

    Raises:
        ConfigurationError: a short secret, a bad root, a lifetime that is not finite,
            not positive or above its cap, or a limit that is not above 0.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(f"the AM secret must be at least {MIN_SECRET_LENGTH} characters")
    ttl = check_lifetime("--token-ttl-seconds", token_ttl_seconds, maximum=MAX_TOKEN_TTL_SECONDS)
    window = check_lifetime(
        "--refresh-window-seconds",
        refresh_window_seconds,
        maximum=MAX_TOKEN_TTL_SECONDS,
        allow_zero=True,
    )
    session = check_lifetime(
        "--max-session-seconds", max_session_seconds, maximum=MAX_SESSION_SECONDS
    )
    burst = _check_limits(rate_limit, rate_limit_burst, max_in_flight)
    store = AssumptionStore(root)
    known_clients = dict(clients or {})
    verified = VerifiedTokens(secret)
    app = FastAPI(title="LiveCalc Assumptions Manager", version="1")

    def token_of(authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _error(401, "token_missing", "send Authorization: Bearer <token>")
        return token.strip()

    # A coroutine reading the header itself: a plain function would run in a thread pool,
    # and a Header() parameter is validated by pydantic, both dearer than the check itself.
    async def claims(request: Request) -> dict[str, Any]:
        try:
            return verified.claims(token_of(request.headers.get("authorization")))
        except TokenError as exc:
            raise HTTPException(
                401,
                detail={"error": f"token_{exc.reason}", "message": str(exc)},
                headers={
                    "WWW-Authenticate": f'Bearer error="invalid_token", reason="{exc.reason}"'
                },
            ) from None

    Claims = Annotated[dict[str, Any], Depends(claims)]

    def allowed(token_claims: Mapping[str, Any], name: str) -> bool:
        # verify_token made sure the scope is a list of strings.
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in token_claims["scope"])

    def token_body(
        subject: str, scope: Iterable[str], lifetime: float, auth_time: int | None = None
    ) -> dict[str, Any]:
        token = issue_token(secret, subject, ttl_seconds=lifetime, scope=scope, auth_time=auth_time)
        return {"access_token": token, "token_type": "bearer", "expires_in": int(lifetime)}

    # Endpoints are coroutines: they do microseconds of work, which a thread pool would only
    # slow down. The one slow step, encoding a changed table, runs in a thread (see table).
    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/token")
    async def token(
        client_id: Annotated[str, Body()], client_secret: Annotated[str, Body()]
    ) -> dict[str, Any]:
        expected = known_clients.get(client_id)
        # Compared in constant time, so the answer's timing says nothing about the secret.
        if expected is None or not hmac.compare_digest(expected, client_secret):
            raise _error(401, "bad_client", "unknown client_id or wrong client_secret")
        _log.info("token_issued", subject=client_id)
        return token_body(client_id, ["*"], ttl)

    @app.post("/v1/token/refresh")
    async def refresh(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        try:
            old = verify_token(secret, token_of(authorization), expired_grace_seconds=window)
        except TokenError as exc:
            raise _error(401, f"token_{exc.reason}", str(exc)) from None
        auth_time = old.get("auth_time", old["iat"])
        if not isinstance(auth_time, int):
            raise _error(401, "token_invalid", "the token is not valid (bad auth_time)")
        # A chain of refreshes ends max_session_seconds after its first token: a stolen
        # token cannot be renewed forever.
        left = auth_time + session - time.time()
        if left < 1:
            raise _error(
                401,
                "token_expired",
                f"this token's chain of refreshes began {_days(session - left)} ago and may "
                f"last {_days(session)}; ask for a new token",
            )
        _log.info("token_refreshed", subject=old["sub"])
        return token_body(str(old["sub"]), old["scope"], min(ttl, left), auth_time)

    @app.get("/v1/whoami")
    async def whoami(token_claims: Claims) -> dict[str, Any]:
        return {
            "subject": token_claims["sub"],
            "scope": token_claims["scope"],
            "expires_at": token_claims["exp"],
        }

    @app.get("/v1/assumptions")
    async def list_assumptions(token_claims: Claims) -> dict[str, list[str]]:
        return {"assumptions": [n for n in store.names() if allowed(token_claims, n)]}

    def check_scope(token_claims: Mapping[str, Any], name: str) -> None:
        if not allowed(token_claims, name):
            raise _error(
                403, "forbidden", f"token of {token_claims['sub']!r} may not read {name!r}"
            )

    @app.get("/v1/assumptions/{name}")
    async def versions(name: str, token_claims: Claims) -> dict[str, Any]:
        check_scope(token_claims, name)
        found = store.versions(name)
        return {"name": name, "versions": found, "latest": found[-1] if found else None}

    # The hot path, as a plain Starlette route: FastAPI's dependency solving cost more than
    # the rest of the request. Errors still go through FastAPI's handlers (same bodies).
    async def table(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]
        token_claims = await claims(request)
        check_scope(token_claims, name)
        resolved, path = store.path(name, version)
        encoded = store.cached(path)
        if encoded is None:
            # A thundering herd on a changed table encodes it once: the others wait here.
            encoded = await store.encode_once(path)
        headers = {
            "ETag": encoded.etag,
            "X-Assumption-Name": name,
            "X-Assumption-Version": resolved,
            "X-Assumption-Rows": str(encoded.rows),
        }
        if request.headers.get("if-none-match") == encoded.etag:
            return Response(status_code=304, headers=headers)
        _log.info(
            "assumption_served",
            subject=token_claims["sub"],
            assumption_name=name,
            resolved_version=resolved,
            rows=encoded.rows,
        )
        body = encoded.body
        if len(body) <= _BODY_PIECE:
            return Response(body, media_type=ARROW_STREAM_MEDIA_TYPE, headers=headers)
        headers["Content-Length"] = str(len(body))

        async def pieces() -> AsyncIterator[bytes]:
            view = memoryview(body)
            for start in range(0, len(view), _BODY_PIECE):
                yield bytes(view[start : start + _BODY_PIECE])

        return StreamingResponse(pieces(), media_type=ARROW_STREAM_MEDIA_TYPE, headers=headers)

    app.add_route("/v1/assumptions/{name}/{version}", table, methods=["GET"])
    # Outermost last: a request is rate limited first, then its body is read (bounded in
    # size and time), and only then is it counted in flight: a client that sends a head and
    # then nothing holds no slot.
    if max_in_flight is not None:
        app.add_middleware(InFlightLimit, max_in_flight=max_in_flight)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    if rate_limit is not None:
        app.add_middleware(RateLimit, rate=rate_limit, burst=burst)
    return app


def _check_limits(rate_limit: float | None, burst: int | None, max_in_flight: int | None) -> int:
    """The burst to use; ConfigurationError for a limit that is not above 0."""
    if rate_limit is not None and not 0 < rate_limit < float("inf"):
        raise ConfigurationError(
            f"--rate-limit must be above 0 requests per second, not {rate_limit}"
        )
    if burst is not None and (isinstance(burst, bool) or burst < 1):
        raise ConfigurationError(f"--rate-limit-burst must be 1 or more, not {burst}")
    if max_in_flight is not None and (isinstance(max_in_flight, bool) or max_in_flight < 1):
        raise ConfigurationError(f"--max-in-flight must be 1 or more, not {max_in_flight}")
    if burst is not None:
        return burst
    return max(1, math.ceil(rate_limit)) if rate_limit is not None else 1
