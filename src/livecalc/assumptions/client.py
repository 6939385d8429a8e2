"""The Assumptions Manager client: ``am://name@version`` references to pyarrow tables.

``resolve_reference("am://mortality-standard@v2.1")`` asks the AM for the table, with the
token from ``CredentialManager`` (explicit > environment > file), and keeps a copy under the
cache folder (``<cache_dir>/<server>/<name>/<version>.arrows``, written atomically).

- Every resolution asks the server, sending the cached copy's ETag, so the server stays the
  authority on who may read what; an unchanged table answers 304 and is read from the cache.
- Within a run (``run_id`` bound), ``resolve_reference`` resolves each reference once per
  process: later engines and chunks, and threads asking at the same moment, get that table.
- The URL is checked before a token is sent: no ``user:password@``, and ``http://`` only to
  this machine unless ``LIVECALC_AM_ALLOW_HTTP=1``; ``https://`` servers are verified against
  the system trust store or ``ca_bundle`` / ``LIVECALC_AM_CA_BUNDLE``, and a refused
  certificate is an error (no cached copy stands in for a server that is not who it says).
- ``@latest`` resolves to the server's newest version; the cache remembers which that was.
- Server unreachable (or failing with 5xx): the cached copy is used and a ``warning`` event
  says so; with nothing cached, ``AssumptionResolutionError``.
- Every request first asks the client's ``RateLimiter`` (``livecalc.ports``; by default the
  process's ``TokenBucket`` for the credentials' ``rate_limit``, i.e. the run's
  ``run.am_rate_limit``). A 429 or 503 answer is retried after the delay the limiter gives
  (exponential backoff, or the server's ``Retry-After`` when longer), logged as ``am_backoff``;
  when the limiter gives up, a 429 raises ``AssumptionResolutionError`` naming the status, the
  attempts and the fix, and a 503 counts as unreachable (the cached copy stands in).
- 401 for an expired token: the token is refreshed through the AM once and the request
  retried; a forged token, 403, 404 and unknown versions raise ``AssumptionResolutionError``
  (an ``InitializationError`` and a ``ConfigurationError``: ``livecalc run`` exits 2) naming
  the reference and the fix. No message or log line ever contains the token.

Plain file paths (CSV, Parquet, Arrow) are read as they are, so configs may mix both. The
HTTP exchange (pacing, retries, token refresh, errors) is in ``_am_http.py``, the cache folder
in ``_am_cache.py``; this module resolves references with them.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import structlog

from livecalc.assumptions._am_cache import AssumptionCache, default_cache_dir
from livecalc.assumptions._am_http import AMTransport, AssumptionResolutionError, Unavailable
from livecalc.assumptions.credentials import AMCredentials, CredentialManager
from livecalc.assumptions.ratelimit import limiter_for
from livecalc.errors import ConfigurationError, InitializationError
from livecalc.log import ENV_RUN_ID, get_logger
from livecalc.ports import RateLimiter

__all__ = [
    "AMReference",
    "AssumptionCache",
    "AssumptionResolutionError",
    "AssumptionsClient",
    "ResolvedAssumption",
    "default_cache_dir",
    "is_am_reference",
    "parse_reference",
    "resolve_reference",
]

AM_SCHEME = "am://"
_WORD = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_REFERENCE = re.compile(rf"^am://(?P<name>{_WORD})@(?P<version>{_WORD})$")
_log = get_logger()


_MANAGERS: dict[tuple[str, str, str | None], CredentialManager] = {}


@dataclass(frozen=True)
class AMReference:
    """A parsed ``am://name@version`` reference (``version`` may be ``latest``)."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{AM_SCHEME}{self.name}@{self.version}"


@dataclass(frozen=True)
class ResolvedAssumption:
    """A table resolved from a reference, with the version it resolved to."""

    name: str
    version: str
    table: pa.Table
    from_cache: bool


def is_am_reference(ref: str) -> bool:
    """Whether ``ref`` is an ``am://`` reference (rather than a file path)."""
    return ref.startswith(AM_SCHEME)


def parse_reference(ref: str) -> AMReference:
    """``am://name@version`` as an ``AMReference``.

    Raises:
        ConfigurationError: not of that form (the message shows it).
    """
    match = _REFERENCE.match(ref)
    if match is None:
        raise ConfigurationError(
            f"{ref!r} is not an assumption reference: write am://NAME@VERSION "
            "(e.g. am://mortality-standard@v2.1 or am://mortality-standard@latest)"
        )
    return AMReference(match["name"], match["version"])


class AssumptionsClient(AMTransport):
    """Resolves references against one AM server, with a cache and token refresh.

    Args:
        credentials: the AM URL, token and cache folder, or a manager holding them (the
            manager's token is what gets refreshed).
        timeout_seconds: per request.
        transport: an httpx transport (a test's ``MockTransport``, a proxy); None for HTTP.
        rate_limiter: paces requests and says how long to back off on 429/503 (default:
            the process's ``TokenBucket`` for the credentials' ``rate_limit``).
        sleep: how a backoff waits (tests pass a fake clock's).
    """

    def __init__(
        self,
        credentials: AMCredentials | CredentialManager,
        *,
        timeout_seconds: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._manager = (
            credentials
            if isinstance(credentials, CredentialManager)
            else CredentialManager(credentials)
        )
        creds = self._manager.get_credentials()
        self.rate_limiter = (
            rate_limiter if rate_limiter is not None else limiter_for(creds.rate_limit)
        )
        self._sleep = sleep
        # Checked before anything is sent: no password in the URL, no clear text off-host.
        self.am_url = self._manager.checked_url()
        self.cache = AssumptionCache(creds.cache_dir or default_cache_dir(), creds.am_url)
        self._http = httpx.Client(
            base_url=creds.am_url,
            timeout=timeout_seconds,
            transport=transport,
            verify=self._manager.ssl_context(),
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> AssumptionsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def list_versions(self, name: str) -> list[str]:
        """The server's versions of ``name``, oldest first."""
        response = self._get(f"/v1/assumptions/{name}", {}, f"{AM_SCHEME}{name}")
        return [str(v) for v in response.json()["versions"]]

    def resolve(self, ref: str | AMReference) -> ResolvedAssumption:
        """The table ``ref`` names; logs ``assumption_resolved`` (and a ``warning`` offline).

        Raises:
            ConfigurationError: ``ref`` is not ``am://name@version``.
            AssumptionResolutionError: refused (401, 403), unknown (404), or unreachable with
                nothing cached.
        """
        ref = parse_reference(ref) if isinstance(ref, str) else ref
        is_latest = ref.version == "latest"
        cached_version = self.cache.latest(ref.name) if is_latest else ref.version
        cached = self.cache.load(ref.name, cached_version) if cached_version else None
        headers = {"If-None-Match": cached.etag} if cached and cached.etag else {}
        try:
            response = self._get(f"/v1/assumptions/{ref.name}/{ref.version}", headers, str(ref))
        except Unavailable as exc:
            if cached is None or cached_version is None:
                raise AssumptionResolutionError(
                    f"{ref}: cannot reach the Assumptions Manager at {self.am_url} ({exc}) and "
                    f"no copy is cached under {self.cache.folder}; start the server or check "
                    "LIVECALC_AM_URL"
                ) from None
            _log.warning(
                "warning",
                message="Assumptions Manager unreachable: using the cached copy",
                reason="am_unreachable",
                assumption_name=ref.name,
                requested_version=ref.version,
                resolved_version=cached_version,
                am_url=self.am_url,
                error=str(exc),
            )
            return self._resolved(ref, cached_version, cached.table, from_cache=True)
        version = response.headers.get("X-Assumption-Version", ref.version)
        if not re.fullmatch(_WORD, version) or ".." in version:
            # The version becomes a cache file name: never let an answer pick a path.
            raise AssumptionResolutionError(
                f"{ref}: the server named an invalid version {version!r}; check LIVECALC_AM_URL"
            )
        if response.status_code == 304 and cached is not None:
            return self._resolved(ref, version, cached.table, from_cache=True)
        body = response.content
        try:
            table = pa.ipc.open_stream(body).read_all()
        except pa.ArrowInvalid as exc:
            raise AssumptionResolutionError(
                f"{ref}: the server's answer is not an Arrow table ({exc})"
            ) from None
        self.cache.store(ref.name, version, body, response.headers.get("ETag"))
        if is_latest:
            self.cache.set_latest(ref.name, version)
        return self._resolved(ref, version, table, from_cache=False)

    def _resolved(
        self, ref: AMReference, version: str, table: pa.Table, *, from_cache: bool
    ) -> ResolvedAssumption:
        seen = RESOLVED.get()
        if seen is not None:
            seen.append((str(ref), ref.name, version))
        _log.info(
            "assumption_resolved",
            assumption_name=ref.name,
            requested_version=ref.version,
            resolved_version=version,
            rows_loaded=table.num_rows,
            from_cache=from_cache,
            am_url=self.am_url,
        )
        return ResolvedAssumption(ref.name, version, table, from_cache)


def _read_local(path: Path) -> pa.Table:
    """A CSV, Parquet or Arrow IPC file as a table."""
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        if path.suffix == ".csv":
            return pa_csv.read_csv(path)
        if path.suffix in (".arrow", ".feather"):
            return feather.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigurationError(f"{path}: cannot read the table ({exc})") from None
    raise ConfigurationError(f"{path}: expected a .csv, .parquet or .arrow file (or am://...)")


RESOLVED: contextvars.ContextVar[list[tuple[str, str, str]] | None] = contextvars.ContextVar(
    "livecalc_am_resolved", default=None
)
"""When set to a list, every resolution in this process appends (reference, name, version):
the run store records the versions a run used."""


def resolve_reference(ref: str, credentials: AMCredentials | None = None) -> ResolvedAssumption:
    """The table ``ref`` names: ``am://name@version`` from the AM, or a local file path.

    ``credentials`` None means the ``CredentialManager`` sources (explicit > environment >
    ``~/.livecalc/credentials.json``). A local path resolves to version ``"file"``.

    Raises:
        ConfigurationError: a malformed reference or an unreadable local file.
        AssumptionResolutionError: no credentials, refused, unknown, or unreachable with nothing
            cached.
    """
    if not is_am_reference(ref):
        path = Path(ref)
        table = _read_local(path)
        return ResolvedAssumption(path.stem, "file", table, from_cache=False)
    parse_reference(ref)  # a malformed reference is a config error, even without credentials
    try:
        found = CredentialManager(credentials).get_credentials()
    except InitializationError as exc:
        raise AssumptionResolutionError(f"{ref}: {exc}") from None
    key = (
        found.am_url,
        hashlib.sha256(found.am_token.get_secret_value().encode()).hexdigest(),
        found.cache_dir,
    )
    # One manager per token in this process, so a token refreshed for the first table is
    # reused for the next ones instead of being refreshed again.
    manager = _MANAGERS.setdefault(key, CredentialManager(found))
    return _RUN_TABLES.resolve((*key, ref), lambda: _resolve_now(manager, ref))


def _resolve_now(manager: CredentialManager, ref: str) -> ResolvedAssumption:
    with AssumptionsClient(manager) as client:
        return client.resolve(ref)


def _current_run_id() -> str | None:
    """The run this call belongs to: bound by ``run_context``, or inherited by a worker."""
    bound = structlog.contextvars.get_contextvars().get("run_id")
    return str(bound) if bound else os.environ.get(ENV_RUN_ID) or None


class _RunTables:
    """The tables resolved during the current run, so each reference is resolved once.

    Inside a run (a ``run_id`` is bound), the first engine or chunk that asks for a reference
    resolves it and every later one, in any thread of this process, gets the same table;
    callers asking at the same moment wait for that one resolution instead of each asking
    the server. Outside a run every call asks the server. Only the current run's tables are
    kept: a new run id empties the memory.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run_id: str | None = None
        self._tables: dict[tuple[str | None, ...], ResolvedAssumption] = {}
        self._pending: dict[tuple[str | None, ...], threading.Lock] = {}

    def resolve(
        self, key: tuple[str | None, ...], resolve: Callable[[], ResolvedAssumption]
    ) -> ResolvedAssumption:
        """The memory's table for ``key`` in this run, else ``resolve()`` (once)."""
        run_id = _current_run_id()
        if run_id is None:
            return resolve()
        with self._lock:
            if run_id != self._run_id:
                self._run_id, self._tables, self._pending = run_id, {}, {}
            found = self._tables.get(key)
            if found is not None:
                return found
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                found = self._tables.get(key) if run_id == self._run_id else None
            if found is not None:
                return found
            resolved = resolve()
            with self._lock:
                if run_id == self._run_id:
                    self._tables[key] = resolved
            return resolved


_RUN_TABLES = _RunTables()
