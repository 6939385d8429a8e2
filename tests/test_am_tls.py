"""The AM over TLS: certificates from a test CA made at test time (trustme).

A real uvicorn server with ``--tls-cert``/``--tls-key`` on loopback, and LiveCalc's own client
verifying it: against the CA given as ``ca_bundle`` or ``LIVECALC_AM_CA_BUNDLE``, refusing a
certificate for another host name or from a CA it does not trust, with a clear message that
never holds the token.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from pydantic import SecretStr
from typer.testing import CliRunner

from livecalc.assumptions.client import AssumptionResolutionError, AssumptionsClient
from livecalc.assumptions.credentials import AMCredentials, CredentialManager
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.cli.am import am_app
from livecalc.errors import ConfigurationError

SECRET = "tls-secret-of-at-least-thirty-two-characters"
REF = "am://mortality-standard@v1"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tls_root")
    (root / "mortality-standard").mkdir()
    (root / "mortality-standard" / "v1.csv").write_text("age,q\n30,0.001\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CA's PEM, a certificate for this machine, one for another host, and their keys."""
    folder = tmp_path_factory.mktemp("pki")
    files = {"ca": folder / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for label, names in (("local", ["127.0.0.1", "localhost"]), ("other", ["am.example.com"])):
        cert = ca.issue_cert(*names)
        files[f"{label}_cert"] = folder / f"{label}.pem"
        files[f"{label}_key"] = folder / f"{label}.key"
        cert.private_key_and_cert_chain_pem.write_to_path(str(files[f"{label}_cert"]))
        cert.private_key_pem.write_to_path(str(files[f"{label}_key"]))
    return files


@pytest.fixture(scope="module")
def server(root: Path, pki: dict[str, Path]) -> Iterator[BackgroundServer]:
    app = create_app(root, SECRET)
    with BackgroundServer(app, tls_cert=pki["local_cert"], tls_key=pki["local_key"]) as running:
        yield running


@pytest.fixture(scope="module")
def wrong_host_server(root: Path, pki: dict[str, Path]) -> Iterator[BackgroundServer]:
    app = create_app(root, SECRET)
    with BackgroundServer(app, tls_cert=pki["other_cert"], tls_key=pki["other_key"]) as running:
        yield running


def _client(url: str, token: str, cache: Path, ca_bundle: Path | None) -> AssumptionsClient:
    creds = AMCredentials(
        am_url=url,
        am_token=SecretStr(token),
        cache_dir=str(cache),
        ca_bundle=str(ca_bundle) if ca_bundle else None,
    )
    return AssumptionsClient(CredentialManager(creds, env={}))


class TestVerifiedServer:
    """A certificate from the trusted CA, for the host in the URL, works."""

    def test_url_is_https(self, server: BackgroundServer) -> None:
        assert server.url.startswith("https://127.0.0.1:")

    def test_table_is_resolved_with_the_ca_bundle_field(
        self, server: BackgroundServer, pki: dict[str, Path], tmp_path: Path
    ) -> None:
        token = issue_token(SECRET, "alice")
        with _client(server.url, token, tmp_path, pki["ca"]) as client:
            resolved = client.resolve(REF)

        assert (resolved.version, resolved.table.num_rows) == ("v1", 1)

    def test_the_ca_bundle_environment_variable_is_used(
        self, server: BackgroundServer, pki: dict[str, Path], tmp_path: Path
    ) -> None:
        env = {
            "LIVECALC_AM_URL": server.url,
            "LIVECALC_AM_TOKEN": issue_token(SECRET, "alice"),
            "LIVECALC_AM_CACHE_DIR": str(tmp_path),
            "LIVECALC_AM_CA_BUNDLE": str(pki["ca"]),
        }
        manager = CredentialManager(env=env)

        with AssumptionsClient(manager) as client:
            assert client.resolve(REF).table.num_rows == 1
        assert manager.validate(check_connectivity=True)

    def test_refresh_goes_over_tls(
        self, server: BackgroundServer, pki: dict[str, Path], tmp_path: Path
    ) -> None:
        creds = AMCredentials(
            am_url=server.url,
            am_token=SecretStr(issue_token(SECRET, "alice", ttl_seconds=60)),
            ca_bundle=str(pki["ca"]),
        )
        manager = CredentialManager(creds, env={})

        assert manager.refresh_if_needed() is True


class TestRefusedServer:
    """A certificate for another name, or from an untrusted CA, is refused clearly."""

    def test_wrong_host_name_is_refused(
        self, wrong_host_server: BackgroundServer, pki: dict[str, Path], tmp_path: Path
    ) -> None:
        token = issue_token(SECRET, "alice")
        with (
            _client(wrong_host_server.url, token, tmp_path, pki["ca"]) as client,
            pytest.raises(AssumptionResolutionError) as caught,
        ):
            client.resolve(REF)

        message = str(caught.value)
        assert "TLS certificate was refused" in message
        assert "mismatch" in message or "match" in message
        assert token not in message

    def test_untrusted_ca_is_refused(
        self, server: BackgroundServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The system trust store does not know the test CA.
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        token = issue_token(SECRET, "alice")
        with (
            _client(server.url, token, tmp_path, None) as client,
            pytest.raises(AssumptionResolutionError) as caught,
        ):
            client.resolve(REF)

        message = str(caught.value)
        assert "TLS certificate was refused" in message
        assert "LIVECALC_AM_CA_BUNDLE" in message
        assert token not in message

    def test_a_refused_certificate_is_not_replaced_by_the_cache(
        self, server: BackgroundServer, pki: dict[str, Path], tmp_path: Path
    ) -> None:
        token = issue_token(SECRET, "alice")
        with _client(server.url, token, tmp_path, pki["ca"]) as client:
            client.resolve(REF)  # warm the cache
        with (
            _client(server.url, token, tmp_path, None) as client,
            pytest.raises(AssumptionResolutionError, match="certificate was refused"),
        ):
            client.resolve(REF)

    def test_check_reports_the_refusal_without_the_token(
        self, server: BackgroundServer, tmp_path: Path
    ) -> None:
        token = issue_token(SECRET, "alice")
        creds = AMCredentials(am_url=server.url, am_token=SecretStr(token))
        problems = CredentialManager(creds, env={}).validation_errors(check_connectivity=True)

        assert len(problems) == 1
        assert "TLS certificate was refused" in problems[0]
        assert token not in problems[0]

    def test_refresh_refusal_names_tls(self, server: BackgroundServer) -> None:
        token = issue_token(SECRET, "alice", ttl_seconds=60)
        manager = CredentialManager(
            AMCredentials(am_url=server.url, am_token=SecretStr(token)), env={}
        )

        with pytest.raises(Exception, match="certificate was refused") as caught:
            manager.refresh_if_needed()

        assert token not in str(caught.value)

    def test_missing_ca_bundle_is_a_clear_error(self, tmp_path: Path) -> None:
        creds = AMCredentials(
            am_url="https://127.0.0.1:1",
            am_token=SecretStr(issue_token(SECRET, "a")),
            ca_bundle=str(tmp_path / "nope.pem"),
        )

        with pytest.raises(ConfigurationError, match=r"CA bundle .*nope\.pem"):
            AssumptionsClient(CredentialManager(creds, env={}))


class TestServeCommand:
    """``livecalc am serve --tls-cert --tls-key``."""

    def test_serve_speaks_https(self, root: Path, pki: dict[str, Path]) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "livecalc.cli.am", "serve", "--root", str(root)]
        command += ["--port", str(port), "--tls-cert", str(pki["local_cert"])]
        command += ["--tls-key", str(pki["local_key"])]
        env = {"LIVECALC_AM_SECRET": SECRET, "PATH": "/usr/bin:/bin", "HOME": str(root)}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        context = ssl.create_default_context(cafile=str(pki["ca"]))
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    response = httpx.get(f"https://127.0.0.1:{port}/health", verify=context)
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
        finally:
            process.terminate()
            process.wait(timeout=30)

        assert response.json() == {"status": "ok"}

    @pytest.mark.parametrize(
        ("which", "message"),
        [("cert_only", "go together"), ("missing", "no such file"), ("mismatch", "cannot be used")],
    )
    def test_bad_certificate_options_exit_2(
        self,
        root: Path,
        pki: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch,
        which: str,
        message: str,
    ) -> None:
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)
        options = {
            "cert_only": ["--tls-cert", str(pki["local_cert"])],
            "missing": ["--tls-cert", str(root / "x.pem"), "--tls-key", str(pki["local_key"])],
            "mismatch": ["--tls-cert", str(pki["local_cert"]), "--tls-key", str(pki["other_key"])],
        }[which]

        result = CliRunner().invoke(am_app, ["serve", "--root", str(root), *options])

        assert (result.exit_code, message in result.output) == (2, True)
        assert "Traceback" not in result.output
