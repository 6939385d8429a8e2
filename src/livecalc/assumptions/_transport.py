"""How an AM client talks to the server safely: which URLs it accepts, which TLS it trusts.

- ``check_am_url`` refuses, before any token is sent, a URL with a user name or password
  (it would be logged, name the cache folder and replace the token) and plain ``http://`` to
  another machine (the token would cross the network in clear text) unless
  ``LIVECALC_AM_ALLOW_HTTP=1``;
- ``ssl_context`` verifies the server's certificate and host name against the system's trust
  store, or a private CA's PEM bundle (``ca_bundle`` / ``LIVECALC_AM_CA_BUNDLE``);
- ``why_unreachable`` says why a request failed, naming the certificate check that refused
  the server.

``livecalc.assumptions.credentials`` re-exports the public names here.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from livecalc.errors import ConfigurationError

__all__ = [
    "ENV_ALLOW_HTTP",
    "ENV_CA_BUNDLE",
    "check_am_url",
    "is_loopback",
    "safe_url",
    "ssl_context",
    "why_unreachable",
]

ENV_CA_BUNDLE = "LIVECALC_AM_CA_BUNDLE"
ENV_ALLOW_HTTP = "LIVECALC_AM_ALLOW_HTTP"
_ENV_TOKEN = "LIVECALC_AM_TOKEN"


def safe_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for messages and reprs)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_am_url(url: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse an AM URL that would leak the token: a password in it, or clear text off-host.

    ``http://`` is accepted to this machine only (``localhost``, ``127.0.0.0/8``, ``::1``);
    to another host the token would cross the network in clear text, so it takes
    ``LIVECALC_AM_ALLOW_HTTP=1`` to accept that.

    Raises:
        ConfigurationError: not http(s), a user name or password in the URL, or plain HTTP to
            another host without the opt-in (the message never shows a password).
    """
    parts = urlsplit(url)
    shown = safe_url(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"am_url {shown!r} is not an http(s) URL (e.g. https://am.example.com)"
        )
    if "@" in parts.netloc:
        raise ConfigurationError(
            f"am_url {shown!r} holds a user name or password: remove it (it would be logged "
            f"and sent instead of the token); the AM takes its token from am_token or {_ENV_TOKEN}"
        )
    allowed = (os.environ if env is None else env).get(ENV_ALLOW_HTTP, "") == "1"
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allowed:
        raise ConfigurationError(
            f"am_url {shown!r} is plain HTTP to another machine: the token would cross the "
            "network in clear text. Use https:// (livecalc am serve --tls-cert/--tls-key, or "
            f"a TLS reverse proxy), or set {ENV_ALLOW_HTTP}=1 to accept the risk on a "
            "network you trust"
        )


_SSL_LOCK = threading.Lock()
_SSL_CONTEXTS: dict[str | None, ssl.SSLContext] = {}


def ssl_context(ca_bundle: str | Path | None = None) -> ssl.SSLContext:
    """The TLS context that verifies the AM's certificate and host name, built once per
    process for each CA bundle.

    ``ca_bundle`` None trusts the system's store (certifi's bundle where the system has
    none); a PEM file trusts the CA(s) in it instead (a private CA). Building a context
    loads the bundle, which costs tens of milliseconds: far more than a request to the AM,
    so every client shares one.

    Raises:
        ConfigurationError: the bundle is missing or holds no usable certificate.
    """
    key = None if ca_bundle is None else str(ca_bundle)
    with _SSL_LOCK:
        found = _SSL_CONTEXTS.get(key)
        if found is not None:
            return found
        if key is None:
            context = ssl.create_default_context()
            if not context.cert_store_stats()["x509_ca"]:
                import certifi  # httpx depends on it

                context.load_verify_locations(cafile=certifi.where())
        else:
            try:
                context = ssl.create_default_context(cafile=key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"CA bundle {key}: cannot be used ({getattr(exc, 'strerror', None) or exc});"
                    f" point ca_bundle or {ENV_CA_BUNDLE} at the PEM file of the CA that signed "
                    "the AM's certificate"
                ) from None
        _SSL_CONTEXTS[key] = context
        return context


def why_unreachable(exc: httpx.HTTPError) -> str:
    """A short reason for a failed request; a refused certificate says which check failed.

    httpx's messages quote no header, so no token can show; the text is scrubbed anyway by
    whoever logs it.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = str(cause.verify_message).rstrip(".")
            return (
                f"the server's TLS certificate was refused: {why}; check the host name in the "
                f"URL, or trust its CA with ca_bundle or {ENV_CA_BUNDLE}"
            )
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or cause}); is the server speaking HTTPS?"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__
