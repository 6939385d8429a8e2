"""Credentials for the Assumptions Manager (AM): the URL, a JWT and a cache folder.

``CredentialManager`` finds them (explicit > ``LIVECALC_AM_*`` environment >
``~/.livecalc/credentials.json``, refused when others can read it), checks them, reads the
token's expiry and swaps it for a fresh one through the AM's refresh endpoint.

Tokens are ``pydantic.SecretStr`` and are unwrapped only where they are sent, so no repr,
error message or log line can show one; ``mask_secret`` shows at most 1/8 of a secret. A
token with spaces or control characters (a trailing newline) is refused as malformed, a URL
with ``user:password@`` as soon as it is given, and the URL and TLS rules of
``livecalc.assumptions._transport`` before any token is sent (its public names are re-exported
here).
"""

from __future__ import annotations

import enum
import json
import os
import re
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, SecretStr

from livecalc.assumptions._transport import (
    ENV_ALLOW_HTTP,
    ENV_CA_BUNDLE,
    check_am_url,
    safe_url,
    ssl_context,
    why_unreachable,
)
from livecalc.assumptions.ratelimit import AMRateLimit
from livecalc.errors import ConfigurationError, InitializationError
from livecalc.masking import mask_secret

__all__ = [
    "ENV_ALLOW_HTTP",
    "ENV_CA_BUNDLE",
    "AMCredentials",
    "CredentialManager",
    "CredentialSource",
    "TokenInfo",
    "auth_header",
    "check_am_url",
    "default_config_path",
    "mask_secret",
    "ssl_context",
    "why_unreachable",
]


class AMCredentials(BaseModel):
    """What an engine needs to reach the Assumptions Manager."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    am_url: str
    am_token: SecretStr
    cache_dir: str | None = None
    ca_bundle: str | None = None
    """PEM file of the CA(s) that signed the AM's certificate (a private CA); None for the
    system trust store (or ``LIVECALC_AM_CA_BUNDLE``)."""
    rate_limit: AMRateLimit | None = None
    """Pacing and 429/503 retries of requests to the AM (a run's ``run.am_rate_limit``);
    None for the defaults (unpaced, 5 retries)."""

    def __repr__(self) -> str:
        return (
            f"AMCredentials(am_url={safe_url(self.am_url)!r}, "
            f"am_token={mask_secret(self.am_token)!r}, cache_dir={self.cache_dir!r}, "
            f"ca_bundle={self.ca_bundle!r}, rate_limit={self.rate_limit!r})"
        )

    __str__ = __repr__

    def as_legacy_dict(self) -> dict[str, Any]:
        """The seed's dict form, for engines written against the original interface."""
        return {
            "am_url": self.am_url,
            "am_token": self.am_token.get_secret_value(),
            "cache_dir": self.cache_dir or "",
        }


ENV_URL = "LIVECALC_AM_URL"
ENV_TOKEN = "LIVECALC_AM_TOKEN"
ENV_CACHE_DIR = "LIVECALC_AM_CACHE_DIR"
REFRESH_THRESHOLD_SECONDS = 300.0
"""A token closer than this to its expiry is refreshed (the seed's 5 minutes)."""

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_FIX_HINT = (
    f"set {ENV_URL} and {ENV_TOKEN}, or write ~/.livecalc/credentials.json "
    '({"am_url": ..., "am_token": ..., "cache_dir": ...}) with mode 600'
)
_FILE_KEYS = ("am_url", "am_token", "cache_dir", "ca_bundle")


def _check_token_text(token: SecretStr, source: str) -> None:
    """Refuse a token with spaces or control characters (a trailing newline, typically).

    Such a token cannot go in an HTTP header: httpx would refuse to send it, and the run
    would report the server unreachable instead of the token malformed.
    """
    text = token.get_secret_value()
    if text and all("!" <= ch <= "~" for ch in text):
        return
    if not text:
        where = "is empty"
    elif text != text.rstrip():
        where = "ends with a newline or space"
    elif text != text.lstrip():
        where = "starts with a space or newline"
    else:
        where = "holds a space, control or non-ASCII character"
    raise ConfigurationError(
        f"am_token from {source} is malformed: it {where}; a token is one line of printable "
        "characters (copy it again, without the line break)"
    )


class CredentialSource(enum.Enum):
    """Where a ``CredentialManager`` found its credentials, as in the seed."""

    EXPLICIT = "explicit"
    ENVIRONMENT = "environment"
    CONFIG_FILE = "config_file"
    NONE = "none"


@dataclass(frozen=True)
class TokenInfo:
    """What a JWT says about itself, read without verifying its signature.

    Only the server can verify a token; the client reads ``exp`` to refresh in time.
    """

    is_valid: bool
    subject: str | None = None
    issued_at: datetime | None = None
    expires_at: datetime | None = None

    def seconds_until_expiry(self, now: datetime | None = None) -> float | None:
        """Seconds left before ``expires_at`` (negative once expired; None without ``exp``)."""
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether ``exp`` has passed."""
        left = self.seconds_until_expiry(now)
        return left is not None and left <= 0

    def needs_refresh(
        self, threshold_seconds: float = REFRESH_THRESHOLD_SECONDS, now: datetime | None = None
    ) -> bool:
        """Whether the token expires within ``threshold_seconds`` (5 minutes by default)."""
        left = self.seconds_until_expiry(now)
        return left is not None and left < threshold_seconds

    @classmethod
    def from_token(cls, token: str | SecretStr) -> TokenInfo:
        """Read ``sub``, ``iat`` and ``exp`` from a JWT; ``is_valid`` False when malformed."""
        text = token.get_secret_value() if isinstance(token, SecretStr) else token
        if not _JWT_SHAPE.fullmatch(text):
            return cls(is_valid=False)
        try:
            claims = jwt.decode(text, options={"verify_signature": False})
        except jwt.PyJWTError:
            return cls(is_valid=False)

        def stamp(key: str) -> datetime | None:
            value = claims.get(key)
            return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else None

        subject = claims.get("sub")
        return cls(
            is_valid=True,
            subject=str(subject) if subject is not None else None,
            issued_at=stamp("iat"),
            expires_at=stamp("exp"),
        )


def default_config_path() -> Path:
    """``~/.livecalc/credentials.json`` (``HOME`` decides where ``~`` is)."""
    return Path.home() / ".livecalc" / "credentials.json"


def _read_config_file(path: Path) -> AMCredentials | None:
    """Credentials from a JSON file, refused when others may read it."""
    if not path.is_file():
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigurationError(
            f"{path}: refusing a credentials file that others can read (mode {mode:03o}); "
            f"fix with: chmod 600 {path}"
        )
    folder = path.resolve().parent
    folder_mode = stat.S_IMODE(folder.stat().st_mode)
    # Anyone may rename or replace a file in a world-writable folder (in a sticky one like
    # /tmp, anyone may still plant the file before you write it): its 0600 proves nothing.
    if folder_mode & 0o002:
        raise ConfigurationError(
            f"{path}: refusing a credentials file in a folder anyone can write to ({folder}, "
            f"mode {folder_mode:03o}); move it to ~/.livecalc (chmod 700) or fix with: "
            f"chmod o-w {folder}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot read the credentials file ({exc})") from None
    except json.JSONDecodeError as exc:
        # The decoder's message quotes no content, only the position: safe to show.
        raise ConfigurationError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: expected a JSON object with am_url and am_token")
    missing = [key for key in ("am_url", "am_token") if not data.get(key)]
    if missing:
        raise ConfigurationError(f"{path}: missing {', '.join(missing)}; {_FIX_HINT}")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(_FILE_KEYS)}"
        )
    ca_bundle = data.get("ca_bundle")
    if ca_bundle:
        # A relative bundle path is relative to the credentials file's folder.
        ca_bundle = str(path.parent / str(ca_bundle))
    return AMCredentials(
        am_url=str(data["am_url"]),
        am_token=SecretStr(str(data["am_token"])),
        cache_dir=str(data["cache_dir"]) if data.get("cache_dir") else None,
        ca_bundle=ca_bundle or None,
    )


def _from_environment(env: Mapping[str, str]) -> AMCredentials | None:
    """Credentials from ``LIVECALC_AM_*``; a half-set pair is an error, not a fallback."""
    url, token = env.get(ENV_URL, ""), env.get(ENV_TOKEN, "")
    if not url and not token:
        return None
    if not url or not token:
        missing, present = (ENV_URL, ENV_TOKEN) if not url else (ENV_TOKEN, ENV_URL)
        raise ConfigurationError(f"{present} is set but {missing} is not: set both (or neither)")
    return AMCredentials(
        am_url=url, am_token=SecretStr(token), cache_dir=env.get(ENV_CACHE_DIR) or None
    )


class CredentialManager:
    """Finds, checks and refreshes the AM credentials: explicit > environment > file.

    Args:
        credentials: explicit credentials, used as given.
        env: the environment to read (``os.environ`` when None).
        config_path: the credentials file (``~/.livecalc/credentials.json`` when None).

    Raises:
        ConfigurationError: a half-set environment, or a credentials file that others can
            read or that is malformed (the message names the fix).
    """

    def __init__(
        self,
        credentials: AMCredentials | None = None,
        *,
        env: Mapping[str, str] | None = None,
        config_path: Path | str | None = None,
    ) -> None:
        self._config_path = Path(config_path) if config_path else default_config_path()
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._credentials: AMCredentials | None = None
        self._source = CredentialSource.NONE
        if credentials is not None:
            self._set(credentials, CredentialSource.EXPLICIT)
            return
        found = _from_environment(self._env)
        if found is not None:
            self._set(found, CredentialSource.ENVIRONMENT)
            return
        found = _read_config_file(self._config_path)
        if found is not None:
            self._set(found, CredentialSource.CONFIG_FILE)

    def _set(self, credentials: AMCredentials, source: CredentialSource) -> None:
        # Registered before anything can log it, so even a non-JWT token is masked.
        from livecalc.masking import register_secret

        register_secret(credentials.am_token)
        where = {
            CredentialSource.ENVIRONMENT: ENV_TOKEN,
            CredentialSource.CONFIG_FILE: str(self._config_path),
        }.get(source, "the explicit credentials")
        _check_token_text(credentials.am_token, where)
        if "@" in urlsplit(credentials.am_url).netloc:
            check_am_url(credentials.am_url, self._env)  # refuses it, password hidden
        self._credentials, self._source = credentials, source

    def checked_url(self) -> str:
        """The AM URL, checked before any token is sent to it (see ``check_am_url``).

        Raises:
            InitializationError: no credentials.
            ConfigurationError: the URL would leak the token.
        """
        url = self.get_credentials().am_url
        check_am_url(url, self._env)
        return url

    def ca_bundle(self) -> str | None:
        """The private CA bundle to trust: ``ca_bundle`` of the credentials, else
        ``LIVECALC_AM_CA_BUNDLE``, else None (the system trust store)."""
        creds = self._credentials
        return (creds.ca_bundle if creds else None) or self._env.get(ENV_CA_BUNDLE) or None

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context that verifies the AM (see ``ssl_context``)."""
        return ssl_context(self.ca_bundle())

    def get_source(self) -> CredentialSource:
        """Where the current credentials came from (NONE when there are none)."""
        return self._source

    def has_credentials(self) -> bool:
        """Whether any source gave credentials."""
        return self._credentials is not None

    def get_credentials(self) -> AMCredentials:
        """The current credentials.

        Raises:
            InitializationError: no source gave any (the message says how to set them).
        """
        if self._credentials is None:
            raise InitializationError(f"no Assumptions Manager credentials: {_FIX_HINT}")
        return self._credentials

    def get_token_info(self) -> TokenInfo | None:
        """The current token's claims (expiry, subject), or None without credentials."""
        if self._credentials is None:
            return None
        return TokenInfo.from_token(self._credentials.am_token)

    def validation_errors(self, check_connectivity: bool = False) -> list[str]:
        """Every problem with the credentials (empty when valid); never shows the token."""
        if self._credentials is None:
            return [f"no credentials: {_FIX_HINT}"]
        problems = []
        try:
            check_am_url(self._credentials.am_url, self._env)
            self.ssl_context()
        except ConfigurationError as exc:
            problems.append(str(exc))
        info = self.get_token_info()
        if info is None or not info.is_valid:
            problems.append("am_token is not a JWT (three base64url parts separated by dots)")
        elif info.is_expired():
            problems.append(
                f"am_token expired at {info.expires_at:%Y-%m-%d %H:%M:%S} UTC; a run refreshes "
                "it within the server's refresh window, else issue a new one "
                "(livecalc am token --user NAME)"
            )
        if check_connectivity and not problems:
            problems.extend(self._connectivity_problems())
        return problems

    def validate(self, check_connectivity: bool = False) -> bool:
        """Whether the URL and the token's JWT shape are valid (and the server accepts it)."""
        return not self.validation_errors(check_connectivity)

    def _connectivity_problems(self) -> list[str]:
        """Ask the server whether it accepts the token."""
        creds = self.get_credentials()
        try:
            response = httpx.get(
                f"{self.checked_url().rstrip('/')}/v1/whoami",
                headers=auth_header(creds.am_token),
                timeout=5.0,
                verify=self.ssl_context(),
            )
        except httpx.HTTPError as exc:
            return [
                f"cannot reach the Assumptions Manager at {creds.am_url} "
                f"({why_unreachable(exc)}); start the server or check the URL"
            ]
        if response.status_code != 200:
            fixes = {
                401: "; issue a new token (livecalc am token --user NAME) and set it",
                403: "; ask for a token whose scope covers what you read",
            }
            return [
                f"the Assumptions Manager at {creds.am_url} answered {response.status_code}"
                f" ({_detail(response)}){fixes.get(response.status_code, '')}"
            ]
        return []

    def refresh_if_needed(
        self, force: bool = False, threshold_seconds: float = REFRESH_THRESHOLD_SECONDS
    ) -> bool:
        """Swap the token for a fresh one from the AM when it is about to expire.

        Returns True when the token was replaced. The new token lives in this manager only:
        the environment or file it came from is left as it is.

        Raises:
            InitializationError: the server refused the refresh or could not be reached.
        """
        info = self.get_token_info()
        if info is None or not (force or info.needs_refresh(threshold_seconds)):
            return False
        creds = self.get_credentials()
        url = f"{self.checked_url().rstrip('/')}/v1/token/refresh"
        try:
            response = httpx.post(
                url, headers=auth_header(creds.am_token), timeout=10.0, verify=self.ssl_context()
            )
        except httpx.HTTPError as exc:
            raise InitializationError(
                f"cannot refresh the AM token: {creds.am_url} unreachable ({why_unreachable(exc)})"
            ) from None
        if response.status_code != 200:
            raise InitializationError(
                f"the Assumptions Manager at {creds.am_url} refused to refresh the token "
                f"({response.status_code}: {_detail(response)}); issue a new one "
                f"(livecalc am token --user NAME) and set {ENV_TOKEN}"
            )
        token = str(response.json()["access_token"])
        self._set(creds.model_copy(update={"am_token": SecretStr(token)}), self._source)
        from livecalc.log import get_logger  # log imports this module

        new_info = self.get_token_info()
        get_logger().info(
            "token_refreshed",
            am_url=creds.am_url,
            subject=new_info.subject if new_info else None,
            expires_in_seconds=new_info.seconds_until_expiry() if new_info else None,
        )
        return True

    def clear(self) -> None:
        """Forget the credentials (a logout); the source becomes NONE."""
        self._credentials, self._source = None, CredentialSource.NONE

    def update_credentials(self, credentials: AMCredentials) -> None:
        """Replace the credentials (after a manual refresh); the source becomes EXPLICIT."""
        self._set(credentials, CredentialSource.EXPLICIT)

    def to_string(self) -> str:
        """The seed's one-line summary, token masked."""
        if self._credentials is None:
            return f"CredentialManager{{source={self._source.name}}}"
        creds, info = self._credentials, self.get_token_info()
        left = info.seconds_until_expiry() if info else None
        expires = f"{left:.0f}s" if left is not None else "unknown"
        return (
            f"CredentialManager{{source={self._source.name}, url={creds.am_url}, "
            f"token={mask_secret(creds.am_token)}, cache_dir={creds.cache_dir}, "
            f"expires_in={expires}}}"
        )

    __repr__ = __str__ = to_string


def auth_header(token: SecretStr) -> dict[str, str]:
    """The ``Authorization`` header: the one place a token is unwrapped to be sent."""
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


def _detail(response: httpx.Response) -> str:
    """The server's short ``detail`` text of an error response."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.reason_phrase
    if isinstance(detail, dict):
        return str(detail.get("message", detail))
    return str(detail)
