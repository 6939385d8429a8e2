"""Tests of livecalc.assumptions.server: tokens, the table store and the live HTTP server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import HTTPException
from typer.testing import CliRunner

from livecalc.assumptions.server import (
    ARROW_STREAM_MEDIA_TYPE,
    AssumptionStore,
    BackgroundServer,
    TokenError,
    create_app,
    issue_token,
    secret_from_env,
    verify_token,
)
from livecalc.cli.am import am_app
from livecalc.errors import ConfigurationError

SECRET = "test-secret-of-at-least-thirty-two-characters"
OTHER_SECRET = "another-secret-of-at-least-32-characters"


def _make_root(root: Path) -> Path:
    """A root with mortality v1, v2, v10 (CSV and Parquet) and a lapse table."""
    mortality = root / "mortality-standard"
    mortality.mkdir(parents=True)
    (mortality / "v1.csv").write_text("age,q\n30,0.001\n31,0.0011\n", encoding="utf-8")
    (mortality / "v2.csv").write_text("age,q\n30,0.002\n31,0.0021\n32,0.0022\n", encoding="utf-8")
    table = pa.table({"age": [30, 31, 32, 33], "q": [0.003, 0.0031, 0.0032, 0.0033]})
    pq.write_table(table, mortality / "v10.parquet")
    (root / "lapse").mkdir()
    (root / "lapse" / "v1.csv").write_text("policy_year,rate\n1,0.05\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of versioned tables, plus a secret file outside it and a symlink to it."""
    base = tmp_path_factory.mktemp("am")
    root = _make_root(base / "root")
    (base / "outside.csv").write_text("secret,data\n1,2\n", encoding="utf-8")
    (root / "mortality-standard" / "v99.csv").symlink_to(base / "outside.csv")
    (root / "escape").symlink_to(base, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[BackgroundServer]:
    """The AM app served for real by uvicorn on a loopback port."""
    app = create_app(root, SECRET, clients={"ci": "ci-client-secret"})
    with BackgroundServer(app) as running:
        yield running


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _get(server: BackgroundServer, path: str, token: str | None = None) -> httpx.Response:
    headers = _auth(token or issue_token(SECRET, "alice"))
    return httpx.get(server.url + path, headers=headers)


class TestTokens:
    """issue_token and verify_token."""

    def test_issued_token_verifies_with_its_claims(self) -> None:
        """A token issued with the secret verifies and carries subject and scope."""
        claims = verify_token(SECRET, issue_token(SECRET, "alice", scope=["mort*"]))

        assert (claims["sub"], claims["scope"], claims["exp"] - claims["iat"]) == (
            "alice",
            ["mort*"],
            3600,
        )

    def test_expired_token_is_rejected_as_expired(self) -> None:
        """A token past its exp raises TokenError with reason expired."""
        with pytest.raises(TokenError) as caught:
            verify_token(SECRET, issue_token(SECRET, "alice", ttl_seconds=-1))

        assert caught.value.reason == "expired"

    def test_forged_token_is_rejected_as_invalid(self) -> None:
        """A token signed with another secret raises TokenError with reason invalid."""
        with pytest.raises(TokenError) as caught:
            verify_token(SECRET, issue_token(OTHER_SECRET, "mallory"))

        assert caught.value.reason == "invalid"

    def test_grace_accepts_a_recently_expired_token(self) -> None:
        """With expired_grace_seconds, a token expired within that time still verifies."""
        token = issue_token(SECRET, "alice", ttl_seconds=-60)

        assert verify_token(SECRET, token, expired_grace_seconds=120)["sub"] == "alice"

    def test_refreshed_tokens_differ_within_one_second(self) -> None:
        """Two tokens issued in the same second are different (unique jti)."""
        assert issue_token(SECRET, "a", now=1e9) != issue_token(SECRET, "a", now=1e9)


class TestSecretFromEnv:
    """secret_from_env: the server refuses to run without a usable secret."""

    @pytest.mark.parametrize(("env", "state"), [({}, "is not set"), ({"X": "1"}, "is not set")])
    def test_missing_secret_is_refused_with_how_to_make_one(
        self, env: dict[str, str], state: str
    ) -> None:
        """Without LIVECALC_AM_SECRET, the error says it is not set and how to generate one."""
        with pytest.raises(ConfigurationError, match=f"LIVECALC_AM_SECRET {state}.*token_hex"):
            secret_from_env(env)

    def test_short_secret_is_refused(self) -> None:
        """A secret under 32 characters is refused."""
        with pytest.raises(ConfigurationError, match="shorter than 32"):
            secret_from_env({"LIVECALC_AM_SECRET": "short"})

    def test_long_secret_is_returned(self) -> None:
        """A secret of 32+ characters is returned as is."""
        assert secret_from_env({"LIVECALC_AM_SECRET": SECRET}) == SECRET


class TestAssumptionStore:
    """AssumptionStore: versions in order, confined to the root."""

    def test_versions_sort_naturally(self, root: Path) -> None:
        """v10 sorts after v2, and symlinks leaving the root are not versions."""
        assert AssumptionStore(root).versions("mortality-standard") == ["v1", "v2", "v10"]

    def test_latest_is_the_newest_version(self, root: Path) -> None:
        """latest resolves to the last version in natural order."""
        version, path = AssumptionStore(root).path("mortality-standard", "latest")

        assert (version, path.name) == ("v10", "v10.parquet")

    @pytest.mark.parametrize("name", ["..", "../etc", "/etc", "a/b", ".hidden", "a..b"])
    def test_names_that_could_leave_the_root_are_refused(self, root: Path, name: str) -> None:
        """Names with path separators, leading dots or '..' answer 400."""
        with pytest.raises(HTTPException) as caught:
            AssumptionStore(root).versions(name)

        assert caught.value.status_code == 400

    def test_symlinked_folder_leaving_the_root_is_absent(self, root: Path) -> None:
        """A name that is a symlink to a folder outside the root answers 404."""
        with pytest.raises(HTTPException) as caught:
            AssumptionStore(root).versions("escape")

        assert caught.value.status_code == 404

    def test_names_lists_only_real_folders_inside(self, root: Path) -> None:
        """names() lists the assumption folders, not symlinks that leave the root."""
        assert AssumptionStore(root).names() == ["lapse", "mortality-standard"]


class TestServer:
    """The AM over HTTP, served by uvicorn on a loopback port."""

    def test_health_needs_no_token(self, server: BackgroundServer) -> None:
        """GET /health answers ok without a token."""
        assert httpx.get(server.url + "/health").json() == {"status": "ok"}

    def test_table_is_an_arrow_stream_with_its_version(self, server: BackgroundServer) -> None:
        """A pinned version comes back as an Arrow IPC stream with its rows and headers."""
        response = _get(server, "/v1/assumptions/mortality-standard/v2")

        table = pa.ipc.open_stream(response.content).read_all()
        assert (
            response.headers["content-type"],
            response.headers["x-assumption-version"],
            table.column("q").to_pylist(),
        ) == (ARROW_STREAM_MEDIA_TYPE, "v2", [0.002, 0.0021, 0.0022])

    def test_latest_resolves_to_the_newest(self, server: BackgroundServer) -> None:
        """latest answers the newest version's table and names it."""
        response = _get(server, "/v1/assumptions/mortality-standard/latest")

        assert (
            response.headers["x-assumption-version"],
            response.headers["x-assumption-rows"],
        ) == (
            "v10",
            "4",
        )

    def test_unchanged_table_answers_304(self, server: BackgroundServer) -> None:
        """A request with the table's ETag in If-None-Match answers 304 with no body."""
        etag = _get(server, "/v1/assumptions/lapse/v1").headers["etag"]

        response = httpx.get(
            server.url + "/v1/assumptions/lapse/v1",
            headers={**_auth(issue_token(SECRET, "alice")), "If-None-Match": etag},
        )

        assert (response.status_code, response.content) == (304, b"")

    def test_versions_and_names_are_listed(self, server: BackgroundServer) -> None:
        """The listing endpoints give names and versions with latest."""
        assert (
            _get(server, "/v1/assumptions").json(),
            _get(server, "/v1/assumptions/mortality-standard").json(),
        ) == (
            {"assumptions": ["lapse", "mortality-standard"]},
            {"name": "mortality-standard", "versions": ["v1", "v2", "v10"], "latest": "v10"},
        )

    def test_unknown_version_lists_the_available_ones(self, server: BackgroundServer) -> None:
        """An unknown version answers 404 unknown_version with the available versions."""
        response = _get(server, "/v1/assumptions/mortality-standard/v3")

        detail = response.json()["detail"]
        assert (response.status_code, detail["error"], detail["available"]) == (
            404,
            "unknown_version",
            ["v1", "v2", "v10"],
        )

    def test_unknown_assumption_is_404(self, server: BackgroundServer) -> None:
        """An unknown name answers 404 unknown_assumption."""
        response = _get(server, "/v1/assumptions/nope/v1")

        assert (response.status_code, response.json()["detail"]["error"]) == (
            404,
            "unknown_assumption",
        )

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/v1/assumptions/%2E%2E/v1", 400),
            ("/v1/assumptions/mortality-standard/%2E%2E", 400),
            ("/v1/assumptions/..%2F..%2Fetc/passwd", 404),
            ("/v1/assumptions/mortality-standard/v99", 404),
            ("/v1/assumptions/escape/outside", 404),
        ],
    )
    def test_paths_leaving_the_root_are_refused(
        self, server: BackgroundServer, path: str, status: int
    ) -> None:
        """Encoded '..', slashes and symlinks out of the root answer 400 or 404, never data."""
        assert _get(server, path).status_code == status

    @pytest.mark.parametrize(
        ("token", "code"),
        [
            (issue_token(SECRET, "alice", ttl_seconds=-5), "token_expired"),
            (issue_token(OTHER_SECRET, "mallory"), "token_invalid"),
            ("not.a.jwt", "token_invalid"),
        ],
    )
    def test_expired_and_forged_tokens_are_401(
        self, server: BackgroundServer, token: str, code: str
    ) -> None:
        """Expired, forged and malformed tokens answer 401 with a reason code."""
        response = _get(server, "/v1/assumptions/lapse/v1", token)

        assert (response.status_code, response.json()["detail"]["error"]) == (401, code)

    def test_missing_token_is_401(self, server: BackgroundServer) -> None:
        """A request without Authorization answers 401 token_missing."""
        response = httpx.get(server.url + "/v1/assumptions")

        assert (response.status_code, response.json()["detail"]["error"]) == (401, "token_missing")

    def test_scope_limits_what_a_token_reads(self, server: BackgroundServer) -> None:
        """A token scoped to lapse* gets 403 for mortality and sees only lapse."""
        token = issue_token(SECRET, "bob", scope=["lapse*"])

        assert (
            _get(server, "/v1/assumptions/mortality-standard/v1", token).status_code,
            _get(server, "/v1/assumptions", token).json(),
        ) == (403, {"assumptions": ["lapse"]})

    def test_refresh_swaps_a_recently_expired_token(self, server: BackgroundServer) -> None:
        """POST /v1/token/refresh turns an expired token into a valid one for the same user."""
        old = issue_token(SECRET, "alice", ttl_seconds=-60, scope=["lapse"])

        response = httpx.post(server.url + "/v1/token/refresh", headers=_auth(old))

        claims = verify_token(SECRET, response.json()["access_token"])
        assert (claims["sub"], claims["scope"]) == ("alice", ["lapse"])

    def test_refresh_refuses_a_forged_token(self, server: BackgroundServer) -> None:
        """A forged token cannot be refreshed into a real one."""
        forged = issue_token(OTHER_SECRET, "mallory")

        response = httpx.post(server.url + "/v1/token/refresh", headers=_auth(forged))

        assert (response.status_code, response.json()["detail"]["error"]) == (401, "token_invalid")

    def test_client_credentials_get_a_token(self, server: BackgroundServer) -> None:
        """A configured client id and secret get a token; a wrong secret gets 401."""
        good = httpx.post(
            server.url + "/v1/token",
            json={"client_id": "ci", "client_secret": "ci-client-secret"},
        )
        bad = httpx.post(
            server.url + "/v1/token", json={"client_id": "ci", "client_secret": "guess"}
        )

        assert (verify_token(SECRET, good.json()["access_token"])["sub"], bad.status_code) == (
            "ci",
            401,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "livecalc.cli.am", *args]


class TestCli:
    """``livecalc am serve`` and ``livecalc am token``."""

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECALC_")}
        return {**env, **extra}

    def test_serve_without_secret_exits_2_with_the_fix(
        self, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without LIVECALC_AM_SECRET, serve prints one error line and exits with 2."""
        monkeypatch.delenv("LIVECALC_AM_SECRET", raising=False)

        result = CliRunner().invoke(am_app, ["serve", "--root", str(root)])

        assert (result.exit_code, "LIVECALC_AM_SECRET is not set" in result.output) == (2, True)

    def test_serve_with_a_missing_root_exits_2(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A --root that is not a folder is refused with exit code 2, naming it."""
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)

        result = CliRunner().invoke(am_app, ["serve", "--root", str(tmp_path / "nope")])

        assert (result.exit_code, "not a folder" in result.output) == (2, True)

    def test_token_command_prints_a_verifiable_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """token --user prints a token for that user signed with the secret."""
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)

        result = CliRunner().invoke(am_app, ["token", "--user", "carol", "--scope", "mort*"])

        claims = verify_token(SECRET, result.stdout.strip())
        assert (claims["sub"], claims["scope"]) == ("carol", ["mort*"])

    def test_check_reports_working_credentials_masked(
        self, server: BackgroundServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """check prints the masked summary and ok when the server accepts the token."""
        token = issue_token(SECRET, "erin")
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("LIVECALC_AM_URL", server.url)
        monkeypatch.setenv("LIVECALC_AM_TOKEN", token)

        result = CliRunner().invoke(am_app, ["check"])

        output = result.output
        assert (result.exit_code, "source=ENVIRONMENT" in output, token in output) == (
            0,
            True,
            False,
        )

    def test_check_fails_with_exit_2_for_a_forged_token(
        self, server: BackgroundServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """check exits 2 and says the server answered 401 when the token is forged."""
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("LIVECALC_AM_URL", server.url)
        monkeypatch.setenv("LIVECALC_AM_TOKEN", issue_token(OTHER_SECRET, "mallory"))

        result = CliRunner().invoke(am_app, ["check"])

        assert (result.exit_code, "answered 401" in result.output) == (2, True)

    def test_serve_answers_over_http(self, root: Path) -> None:
        """serve --root --port starts a server that answers table requests until stopped."""
        port = _free_port()
        env = self._env(LIVECALC_AM_SECRET=SECRET)
        process = subprocess.Popen(
            _cli("serve", "--root", str(root), "--port", str(port)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(url + "/health")
                    break
                except httpx.ConnectError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.1)
            response = httpx.get(
                url + "/v1/assumptions/lapse/v1", headers=_auth(issue_token(SECRET, "dave"))
            )
        finally:
            process.terminate()
            process.wait(timeout=30)

        assert pa.ipc.open_stream(response.content).read_all().num_rows == 1


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class TestScopeClaim:
    """Issue 9 #20: a scope is a list of name patterns, never a string."""

    def test_issue_token_refuses_a_string_scope(self) -> None:
        # It signed ['l','a','p','s','e','-','*'], and that '*' granted every table.
        with pytest.raises(ConfigurationError, match="list of name patterns"):
            issue_token(SECRET, "bob", scope="lapse-*")

    @pytest.mark.parametrize("scope", [[1, 2], [None], [""]])
    def test_issue_token_refuses_non_string_patterns(self, scope: list[Any]) -> None:
        with pytest.raises(ConfigurationError, match="non-empty strings"):
            issue_token(SECRET, "bob", scope=scope)

    @pytest.mark.parametrize("scope", ["lapse-*", "*", {"a": 1}, [1], None])
    def test_a_token_whose_scope_is_not_a_list_of_strings_is_refused(
        self, server: BackgroundServer, scope: Any
    ) -> None:
        now = int(time.time())
        claims = {"iss": "livecalc-am", "sub": "bob", "iat": now, "exp": now + 60, "scope": scope}
        token = jwt.encode(claims, SECRET, algorithm="HS256")

        response = _get(server, "/v1/assumptions/mortality-standard/v1", token)

        assert (response.status_code, response.json()["detail"]["error"]) == (401, "token_invalid")
        with pytest.raises(TokenError, match="scope"):
            verify_token(SECRET, token)

    def test_a_token_without_scope_is_refused(self, server: BackgroundServer) -> None:
        now = int(time.time())
        claims = {"iss": "livecalc-am", "sub": "bob", "iat": now, "exp": now + 60}
        token = jwt.encode(claims, SECRET, algorithm="HS256")

        assert _get(server, "/v1/assumptions", token).status_code == 401


class TestRequestSizeLimits:
    """Issue 9 #21: no endpoint reads an unbounded request body."""

    def test_a_declared_huge_body_is_refused_before_it_is_read(
        self, server: BackgroundServer
    ) -> None:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 268435456\r\n\r\n{"
            )
            answer = sock.recv(4096)

        assert answer.startswith(b"HTTP/1.1 413")

    @pytest.mark.parametrize("path", ["/v1/token", "/v1/token/refresh", "/health"])
    def test_a_streamed_huge_body_is_refused_and_not_kept(
        self, server: BackgroundServer, path: str
    ) -> None:
        # 64 MB in 1 MB chunks, without Content-Length (chunked): 256 MB took the server to
        # 990 MB RSS. The server now stops reading at 64 KiB.
        chunk = b"x" * 2**20
        before = _rss_bytes()  # the server runs in this process

        def body() -> Iterator[bytes]:
            for _ in range(64):
                yield chunk

        try:
            response = httpx.post(server.url + path, content=body(), timeout=30)
            status = response.status_code
        except httpx.TransportError:
            status = 413  # the server answered and closed while the client was still sending

        assert (status, _rss_bytes() - before < 48 * 2**20) == (413, True)

    def test_a_small_body_still_works(self, server: BackgroundServer) -> None:
        response = httpx.post(
            server.url + "/v1/token", json={"client_id": "ci", "client_secret": "ci-client-secret"}
        )

        assert response.status_code == 200

    @pytest.mark.parametrize("parser", ["h11", "httptools"])
    def test_an_endless_header_is_cut_off(self, root: Path, parser: str) -> None:
        # 4 MB of one header line, sent in 64 KiB pieces: the server must stop reading.
        app = create_app(root, SECRET)
        piece = b"a" * 65536
        with (
            BackgroundServer(app, http=parser) as running,
            socket.create_connection((running.host, running.port), timeout=10) as sock,
        ):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(64):
                    sock.sendall(piece)
                answer = sock.recv(4096) or b"closed"
            except TimeoutError:  # still reading and waiting for more: not cut off
                answer = b"timeout"
            except OSError:  # reset by the server: it stopped reading
                answer = b"closed"

        assert answer == b"closed" or answer[9:12] in (b"400", b"431"), answer[:40]


class TestLifetimes:
    """Issue 9 #22: lifetimes finite and capped, refresh chains capped, keys named."""

    @pytest.mark.parametrize("ttl", [float("nan"), float("inf"), float("-inf"), 1e300, 0.0, -5.0])
    def test_create_app_refuses_a_bad_token_lifetime(self, root: Path, ttl: float) -> None:
        with pytest.raises(ConfigurationError, match="--token-ttl-seconds must be a number"):
            create_app(root, SECRET, token_ttl_seconds=ttl)

    @pytest.mark.parametrize("window", [float("nan"), float("inf"), -1.0, 1e300])
    def test_create_app_refuses_a_bad_refresh_window(self, root: Path, window: float) -> None:
        with pytest.raises(ConfigurationError, match="--refresh-window-seconds"):
            create_app(root, SECRET, refresh_window_seconds=window)

    @pytest.mark.parametrize("ttl", [float("nan"), float("inf"), float("-inf"), 1e300])
    def test_issue_token_refuses_an_endless_lifetime(self, ttl: float) -> None:
        with pytest.raises(ConfigurationError, match="ttl_seconds"):
            issue_token(SECRET, "alice", ttl_seconds=ttl)

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300", "0"])
    @pytest.mark.parametrize(
        "option", ["--token-ttl-seconds", "--refresh-window-seconds", "--max-session-seconds"]
    )
    def test_serve_refuses_bad_lifetimes_with_exit_2(
        self, root: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str
    ) -> None:
        if option == "--refresh-window-seconds" and value == "0":
            return  # no refresh after expiry: allowed
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)

        result = CliRunner().invoke(am_app, ["serve", "--root", str(root), option, value])

        assert (result.exit_code, f"{option} must be" in result.output) == (2, True)
        assert "Traceback" not in result.output

    @pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e300", "0", "-5"])
    def test_token_command_refuses_bad_lifetimes_with_exit_2(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)

        result = CliRunner().invoke(am_app, ["token", "--user", "u", "--ttl-seconds", value])

        assert (result.exit_code, "--ttl-seconds must be" in result.output) == (2, True)
        assert "Traceback" not in result.output

    def test_a_refresh_chain_ends_after_max_session_seconds(self, root: Path) -> None:
        app = create_app(root, SECRET, token_ttl_seconds=3600, max_session_seconds=600)
        now = int(time.time())
        young = issue_token(SECRET, "alice", ttl_seconds=60, auth_time=now - 500)
        old = issue_token(SECRET, "alice", ttl_seconds=60, auth_time=now - 700)
        with BackgroundServer(app) as running:
            renewed = httpx.post(running.url + "/v1/token/refresh", headers=_auth(young))
            refused = httpx.post(running.url + "/v1/token/refresh", headers=_auth(old))
            # The renewed token keeps the chain's start: it cannot outlive it either.
            claims = verify_token(SECRET, renewed.json()["access_token"])

        assert (claims["auth_time"], claims["exp"] <= now - 500 + 600) == (now - 500, True)
        assert (refused.status_code, "chain of refreshes" in refused.text) == (401, True)

    def test_an_expired_token_is_renewed_only_within_the_window(self, root: Path) -> None:
        app = create_app(root, SECRET, refresh_window_seconds=60)
        with BackgroundServer(app) as running:
            late = issue_token(SECRET, "alice", ttl_seconds=-120)
            response = httpx.post(running.url + "/v1/token/refresh", headers=_auth(late))

        assert (response.status_code, response.json()["detail"]["error"]) == (401, "token_expired")

    def test_a_token_of_a_rotated_key_names_the_key(self) -> None:
        token = issue_token(OTHER_SECRET, "alice")

        with pytest.raises(TokenError, match="was rotated") as caught:
            verify_token(SECRET, token)

        assert jwt.get_unverified_header(token)["kid"] in str(caught.value)


class TestServeOptions:
    """``livecalc am serve --workers``: a bad count is one clear error."""

    @pytest.mark.parametrize("workers", ["0", "-1", "65"])
    def test_bad_worker_count_exits_2(
        self, root: Path, monkeypatch: pytest.MonkeyPatch, workers: str
    ) -> None:
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)

        result = CliRunner().invoke(am_app, ["serve", "--root", str(root), "--workers", workers])

        assert (result.exit_code, "--workers must be from 1 to 64" in result.output) == (2, True)
