"""Masking of secrets: the one place that decides what a secret looks like in text.

``mask_secret`` gives the seed's masked form; ``mask_value`` masks a log field by its key
(``token``, ``password``, ``authorization``, ...) and scrubs JWTs, ``Bearer`` values and
registered secrets out of any other text. Logging, reprs and error messages all use it.
This module imports nothing of LiveCalc's: every layer may use it.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

__all__ = ["mask_secret", "mask_value", "redact_urls", "register_secret", "scrub_text"]

# Key fragments that make a field credential-like, matched on the lower-cased key with
# dashes as underscores ("X-Api-Key" -> "x_api_key").
_SECRET_KEY_PARTS = (
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "api_key",
    "apikey",
    "private_key",
    "access_key",
    "cookie",
    "credential",
)
# Three base64url segments, the first opening a JSON object ("eyJ" is '{"' encoded).
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]+)")
# A URL in running text (a repr, a message): scheme, user info, host and path, query,
# fragment. It ends at white space or a quote, as a URL in a repr or a sentence does.
_URL_RE = re.compile(
    r"(?i)([a-z][a-z0-9+.-]*://)([^\s/?#'\"]*@)?([^\s?#'\"]*)(\?[^\s#'\"]*)?(#[^\s'\"]*)?"
)
# "user:password@" without a scheme before it (a URL written without one).
_USERINFO_RE = re.compile(r"([^\s/?#'\":@]+):([^\s/?#'\"@]+)@")


class _Registry:
    """Secrets registered for masking wherever they appear (tokens that are no JWT)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: set[str] = set()
        self.pattern: re.Pattern[str] | None = None


_REGISTRY = _Registry()


def mask_secret(secret: str | SecretStr | None) -> str:
    """A secret's masked form: a few characters of each end, never more than 1/8 of it.

    ``k`` characters of each end with ``k = min(4, len // 16)``: a JWT (100+ characters)
    shows ``eyJh...a2Vu``, a 16-31 character secret one character of each end, and anything
    under 16 characters only ``***``.
    """
    if secret is None:
        return ""
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    shown = min(4, len(text) // 16)
    if shown == 0:
        return "***"
    return f"{text[:shown]}...{text[-shown:]}"


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    """Whether a field name says its value is a credential (cached: keys repeat)."""
    normalized = key.lower().replace("-", "_")
    return any(part in normalized for part in _SECRET_KEY_PARTS)


def scrub_text(text: str) -> str:
    """``text`` with JWTs, ``Bearer`` values and registered secrets masked."""
    secrets_re = _REGISTRY.pattern
    if secrets_re is not None:
        text = secrets_re.sub(lambda m: mask_secret(m.group(0)), text)
    # The substring tests are much cheaper than the regexes and almost always false.
    if "eyJ" in text:
        text = _JWT_RE.sub(lambda m: mask_secret(m.group(0)), text)
    if "earer" in text or "EARER" in text:
        text = _BEARER_RE.sub(lambda m: m.group(1) + mask_secret(m.group(2)), text)
    return text


def redact_urls(text: str, *, whole: bool = False) -> str:
    """``text`` with every URL's user info (``user:password@``) and query string masked, and
    its fragment dropped: ``https://***@host/hook?...``. A ``user:password@`` written without
    a scheme is masked too.

    A URL in running text ends at white space or a quote. With ``whole``, ``text`` is one
    value (a config field): a URL in it runs to its end, spaces and quotes included, so a
    malformed one (``https://h/a b?token=...``) cannot keep its query out of the mask.
    """
    if "@" not in text and "://" not in text:
        return text  # the common case, without the regexes' cost
    if whole and "://" in text:
        before, _, rest = text.partition("://")
        cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        netloc, tail = rest[:cut], rest[cut:]
        if "@" in netloc:
            netloc = "***@" + netloc.rpartition("@")[2]
        path, query, _ = tail.partition("#")[0].partition("?")
        return redact_urls(before) + "://" + netloc + path + ("?..." if query else "")

    def one(match: re.Match[str]) -> str:
        scheme, userinfo, rest, query = match.group(1, 2, 3, 4)
        return scheme + ("***@" if userinfo else "") + rest + ("?..." if query else "")

    text = _URL_RE.sub(one, text)
    return _USERINFO_RE.sub(lambda m: f"{m.group(1)}:***@", text)


_PLAIN = (bool, int, float, type(None))


def mask_value(key: str, value: Any) -> Any:
    """The loggable form of ``value`` under field ``key``: secrets masked, recursively."""
    if type(value) in _PLAIN:  # the common case first, without isinstance's cost
        return value
    if isinstance(value, str | bytes):
        # str.__str__ gives a str subclass's (a StrEnum's) own text, as JSON renders it.
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str.__str__(value)
        if not _is_secret_key(key):
            return scrub_text(text)
        # An "Authorization: Bearer x" header keeps its scheme word readable.
        match = _BEARER_RE.fullmatch(text)
        return match.group(1) + mask_secret(match.group(2)) if match else mask_secret(text)
    if isinstance(value, SecretStr):
        return mask_secret(value)
    if isinstance(value, dict | Mapping):
        return {str(k): mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(key, item) for item in value]
    if isinstance(value, bool | int | float):  # IntEnum, numpy float64
        return value
    # numpy.int64 and friends: the number, not its text (numpy is not imported for this test:
    # logging stays light for the command line).
    if (
        type(value).__module__ == "numpy"
        and hasattr(value, "item")
        and getattr(value, "ndim", 1) == 0
    ):
        return mask_value(key, value.item())
    # Anything else is rendered by its str(), which may embed a secret: scrub that text.
    return scrub_text(str(value))


def register_secret(secret: str | SecretStr | None) -> None:
    """Mask this exact text wherever it appears in a log line (a token that is no JWT)."""
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    # Very short strings would mask ordinary words; mask_secret shows them as *** anyway.
    if text and len(text) >= 8:
        with _REGISTRY.lock:
            _REGISTRY.secrets.add(text)
            # One alternation, longest first, so one pass masks every registered secret.
            ordered = sorted(_REGISTRY.secrets, key=len, reverse=True)
            _REGISTRY.pattern = re.compile("|".join(map(re.escape, ordered)))
