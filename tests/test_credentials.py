"""Tests of livecalc.assumptions.credentials: sources, validation, token expiry and refresh."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from livecalc.assumptions.credentials import (
    AMCredentials,
    CredentialManager,
    CredentialSource,
    TokenInfo,
    mask_secret,
)
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.errors import ConfigurationError, InitializationError

SECRET = "test-secret-of-at-least-thirty-two-characters"
NOW = 1_900_000_000.0


def _token(ttl_seconds: float = 3600.0, secret: str = SECRET, now: float | None = None) -> str:
    return issue_token(secret, "alice", ttl_seconds=ttl_seconds, now=now)


def _creds(token: str, url: str = "https://am.example.com") -> AMCredentials:
    return AMCredentials(am_url=url, am_token=SecretStr(token), cache_dir="/tmp/cache")


def _write_file(path: Path, mode: int, data: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A real AM server on a loopback port, serving an empty root."""
    root = tmp_path_factory.mktemp("am_root")
    with BackgroundServer(create_app(root, SECRET)) as running:
        yield running


class TestMaskSecret:
    """mask_secret, the seed's masked form."""

    def test_long_secret_shows_its_ends(self) -> None:
        """A JWT-sized secret shows first 4 ... last 4; a 28-character one 1 ... 1."""
        assert mask_secret("x" * 60 + "very_long_secret_token_12345") == "xxxx...2345"
        assert mask_secret("very_long_secret_token_12345") == "v...5"

    @pytest.mark.parametrize("secret", ["abcd1234", "abcdefgh12345", "0123456789abcde"])
    def test_short_secret_is_never_revealed(self, secret: str) -> None:
        """Issue 9 #24: an 8-character token showed all 8 characters (abcd...1234)."""
        assert mask_secret(secret) == "***"

    @pytest.mark.parametrize("length", [16, 17, 31, 32, 63, 64, 200])
    def test_at_most_an_eighth_is_shown(self, length: int) -> None:
        secret = "".join(chr(ord("a") + i % 26) for i in range(length))
        assert len(mask_secret(secret)) - 3 <= length / 8

    def test_short_secret_is_stars(self) -> None:
        """A secret under 8 characters is ***."""
        assert mask_secret(SecretStr("1234567")) == "***"


class TestTokenInfo:
    """TokenInfo, read from a JWT without verifying it."""

    def test_reads_subject_and_expiry(self) -> None:
        """sub, iat and exp come from the token's claims."""
        info = TokenInfo.from_token(_token(ttl_seconds=600, now=NOW))

        expected = TokenInfo(
            is_valid=True,
            subject="alice",
            issued_at=datetime.fromtimestamp(NOW, UTC),
            expires_at=datetime.fromtimestamp(NOW + 600, UTC),
        )
        assert info == expected

    @pytest.mark.parametrize(("left", "needs"), [(299.0, True), (301.0, False), (-5.0, True)])
    def test_needs_refresh_within_five_minutes(self, left: float, needs: bool) -> None:
        """A token needs refreshing when it expires within 300 seconds (or has expired)."""
        now = datetime.fromtimestamp(NOW, UTC)
        info = TokenInfo(is_valid=True, expires_at=now + timedelta(seconds=left))

        assert (info.seconds_until_expiry(now), info.needs_refresh(now=now)) == (left, needs)

    @pytest.mark.parametrize("text", ["not-a-jwt", "a.b", "abc.def.ghi", ""])
    def test_malformed_token_is_not_valid(self, text: str) -> None:
        """Text that is not a decodable JWT gives is_valid False."""
        assert TokenInfo.from_token(text).is_valid is False

    @settings(max_examples=20, deadline=None)
    @given(ttl=st.integers(min_value=-10_000, max_value=30 * 24 * 3600))  # up to the cap
    def test_expiry_matches_the_ttl_it_was_issued_with(self, ttl: int) -> None:
        """For any lifetime, seconds_until_expiry at issue time equals that lifetime."""
        info = TokenInfo.from_token(_token(ttl_seconds=ttl, now=NOW))

        assert info.seconds_until_expiry(datetime.fromtimestamp(NOW, UTC)) == ttl


class TestCredentialSources:
    """CredentialManager's sources: explicit > environment > file."""

    def test_explicit_wins_over_environment(self, tmp_path: Path) -> None:
        """Explicit credentials are used even when the environment has others."""
        env = {"LIVECALC_AM_URL": "http://env", "LIVECALC_AM_TOKEN": _token()}
        manager = CredentialManager(_creds(_token()), env=env, config_path=tmp_path / "none.json")

        assert (manager.get_source(), manager.get_credentials().am_url) == (
            CredentialSource.EXPLICIT,
            "https://am.example.com",
        )

    def test_environment_wins_over_file(self, tmp_path: Path) -> None:
        """The LIVECALC_AM_* variables are used before the credentials file."""
        path = _write_file(tmp_path / "c.json", 0o600, {"am_url": "http://file", "am_token": "t"})
        env = {
            "LIVECALC_AM_URL": "http://env",
            "LIVECALC_AM_TOKEN": _token(),
            "LIVECALC_AM_CACHE_DIR": "/cache",
        }
        manager = CredentialManager(env=env, config_path=path)

        creds = manager.get_credentials()
        assert (manager.get_source(), creds.am_url, creds.cache_dir) == (
            CredentialSource.ENVIRONMENT,
            "http://env",
            "/cache",
        )

    def test_file_in_home_is_the_last_source(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without explicit or environment credentials, ~/.livecalc/credentials.json is read."""
        monkeypatch.setenv("HOME", str(tmp_path))
        _write_file(
            tmp_path / ".livecalc" / "credentials.json",
            0o600,
            {"am_url": "http://file", "am_token": _token(), "cache_dir": "/c"},
        )
        manager = CredentialManager(env={})

        assert (manager.get_source(), manager.get_credentials().am_url) == (
            CredentialSource.CONFIG_FILE,
            "http://file",
        )

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
    def test_file_readable_by_others_is_refused_with_the_fix(
        self, tmp_path: Path, mode: int
    ) -> None:
        """A credentials file that group or others can read is refused, naming chmod 600."""
        path = _write_file(tmp_path / "c.json", mode, {"am_url": "http://f", "am_token": "t"})

        with pytest.raises(ConfigurationError) as caught:
            CredentialManager(env={}, config_path=path)

        assert f"chmod 600 {path}" in str(caught.value)

    def test_half_set_environment_names_the_missing_variable(self, tmp_path: Path) -> None:
        """A token without a URL in the environment is an error naming LIVECALC_AM_URL."""
        env = {"LIVECALC_AM_TOKEN": _token()}

        with pytest.raises(ConfigurationError, match="LIVECALC_AM_URL is not"):
            CredentialManager(env=env, config_path=tmp_path / "none.json")

    def test_malformed_file_names_file_and_line(self, tmp_path: Path) -> None:
        """A credentials file that is not JSON is reported with its path and line."""
        path = tmp_path / "c.json"
        path.write_text('{\n"am_url": }', encoding="utf-8")
        path.chmod(0o600)

        with pytest.raises(ConfigurationError, match=r"c\.json: not valid JSON at line 2"):
            CredentialManager(env={}, config_path=path)

    def test_no_source_means_no_credentials(self, tmp_path: Path) -> None:
        """Without any source, has_credentials is False and get_credentials says what to set."""
        manager = CredentialManager(env={}, config_path=tmp_path / "none.json")

        with pytest.raises(InitializationError, match="LIVECALC_AM_TOKEN"):
            manager.get_credentials()
        assert (manager.get_source(), manager.has_credentials()) == (CredentialSource.NONE, False)


class TestCredentialManager:
    """CredentialManager's validation, masking and updates."""

    def test_valid_credentials_validate(self) -> None:
        """An http(s) URL and an unexpired JWT are valid."""
        assert CredentialManager(_creds(_token())).validate() is True

    @pytest.mark.parametrize(
        ("url", "token", "problem"),
        [
            ("am.example.com", _token(), "is not an http(s) URL"),
            ("https://am.example.com", "opaque-token", "is not a JWT"),
            ("https://am.example.com", _token(ttl_seconds=-60), "expired at"),
        ],
    )
    def test_invalid_credentials_are_explained(self, url: str, token: str, problem: str) -> None:
        """A bad URL, a non-JWT or an expired token make validate False, with a reason."""
        manager = CredentialManager(_creds(token, url))

        assert (manager.validate(), problem in " ".join(manager.validation_errors())) == (
            False,
            True,
        )

    def test_to_string_masks_the_token(self) -> None:
        """to_string and repr show the seed's summary with the token masked."""
        token = _token()
        manager = CredentialManager(_creds(token))

        text = manager.to_string()
        assert (text.startswith("CredentialManager{source=EXPLICIT"), token in text) == (
            True,
            False,
        )
        assert f"token={mask_secret(token)}" in repr(manager)

    def test_clear_forgets_credentials(self) -> None:
        """clear leaves no credentials and source NONE."""
        manager = CredentialManager(_creds(_token()))

        manager.clear()

        assert (manager.has_credentials(), manager.get_source()) == (False, CredentialSource.NONE)

    def test_update_credentials_replaces_them(self) -> None:
        """update_credentials swaps in new credentials as an explicit source."""
        manager = CredentialManager(_creds(_token()))

        manager.update_credentials(_creds(_token(), "https://other.example.com"))

        assert manager.get_credentials().am_url == "https://other.example.com"

    def test_connectivity_check_against_a_live_server(self, server: BackgroundServer) -> None:
        """validate(check_connectivity=True) is True when the server accepts the token."""
        assert CredentialManager(_creds(_token(), server.url)).validate(True) is True

    def test_connectivity_check_fails_for_a_forged_token(self, server: BackgroundServer) -> None:
        """A token signed with another secret fails the connectivity check with 401, the
        server's reason and the fix."""
        forged = _token(secret="another-secret-of-at-least-32-characters")
        manager = CredentialManager(_creds(forged, server.url))

        (problem,) = manager.validation_errors(check_connectivity=True)

        assert problem.startswith(f"the Assumptions Manager at {server.url} answered 401 (")
        assert problem.endswith("; issue a new token (livecalc am token --user NAME) and set it")
        assert forged not in problem


class TestRefresh:
    """refresh_if_needed against a real AM server."""

    def test_fresh_token_is_kept(self, server: BackgroundServer) -> None:
        """A token far from expiry is not refreshed."""
        token = _token()
        manager = CredentialManager(_creds(token, server.url))

        assert (manager.refresh_if_needed(), manager.get_credentials().am_token) == (
            False,
            SecretStr(token),
        )

    def test_expiring_token_is_swapped_for_a_fresh_one(self, server: BackgroundServer) -> None:
        """A token within 5 minutes of expiry is replaced by one valid for an hour."""
        manager = CredentialManager(_creds(_token(ttl_seconds=120), server.url))

        refreshed = manager.refresh_if_needed()

        info = manager.get_token_info()
        assert info is not None
        left = info.seconds_until_expiry()
        assert (refreshed, left is not None and left > 3000) == (True, True)

    def test_expired_token_is_refreshed(self, server: BackgroundServer) -> None:
        """A token that expired recently is still swapped (within the refresh window)."""
        manager = CredentialManager(_creds(_token(ttl_seconds=-30), server.url))

        manager.refresh_if_needed()

        assert manager.validate() is True

    def test_forged_token_cannot_be_refreshed(self, server: BackgroundServer) -> None:
        """A forged token's refresh is refused with 401, without the token in the message."""
        forged = _token(ttl_seconds=-30, secret="another-secret-of-at-least-32-characters")
        manager = CredentialManager(_creds(forged, server.url))

        with pytest.raises(InitializationError, match="refused to refresh") as caught:
            manager.refresh_if_needed()

        assert forged not in str(caught.value)

    def test_unreachable_server_is_an_initialization_error(self) -> None:
        """Refreshing against a closed port raises InitializationError naming the URL."""
        manager = CredentialManager(_creds(_token(ttl_seconds=10), "http://127.0.0.1:9"))

        with pytest.raises(InitializationError, match=r"127\.0\.0\.1:9 unreachable"):
            manager.refresh_if_needed()


class TestUrlPolicy:
    """Issue 9 #23 and issue 13 #4: what an AM URL may be before a token is sent to it."""

    @pytest.mark.parametrize(
        "url",
        [
            "http://bob:hunter2-password@127.0.0.1:8765",
            "https://bob:hunter2-password@am.example.com",
            "https://hunter2-password@am.example.com",
        ],
    )
    def test_userinfo_in_the_url_is_refused_without_showing_it(self, url: str) -> None:
        # It was logged, named the cache folder, and replaced the Bearer token.
        with pytest.raises(ConfigurationError, match="user name or password") as caught:
            CredentialManager(_creds(_token(), url))

        assert "hunter2" not in str(caught.value)

    def test_userinfo_from_the_environment_is_refused(self) -> None:
        env = {"LIVECALC_AM_URL": "https://u:hunter2-password@am", "LIVECALC_AM_TOKEN": _token()}

        with pytest.raises(ConfigurationError, match="user name or password") as caught:
            CredentialManager(env=env)

        assert "hunter2" not in str(caught.value)

    def test_credentials_repr_hides_userinfo(self) -> None:
        creds = _creds(_token(), "https://u:hunter2-password@am.example.com")

        assert "hunter2" not in repr(creds)

    @pytest.mark.parametrize("url", ["http://am.example.com", "http://10.0.0.5:8765"])
    def test_plain_http_to_another_host_is_refused_with_the_reason(self, url: str) -> None:
        manager = CredentialManager(_creds(_token(), url), env={})

        with pytest.raises(ConfigurationError, match=r"clear text.*LIVECALC_AM_ALLOW_HTTP=1"):
            manager.checked_url()
        assert any("clear text" in p for p in manager.validation_errors())

    @pytest.mark.parametrize(
        "url", ["http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:2", "http://127.9.0.1"]
    )
    def test_plain_http_to_this_machine_is_accepted(self, url: str) -> None:
        assert CredentialManager(_creds(_token(), url), env={}).checked_url() == url

    def test_plain_http_to_another_host_is_accepted_when_opted_in(self) -> None:
        env = {"LIVECALC_AM_ALLOW_HTTP": "1"}
        manager = CredentialManager(_creds(_token(), "http://am.example.com"), env=env)

        assert manager.checked_url() == "http://am.example.com"

    def test_the_client_refuses_plain_http_before_sending_anything(self, tmp_path: Path) -> None:
        from livecalc.assumptions.client import AssumptionsClient

        creds = AMCredentials(
            am_url="http://am.example.com", am_token=SecretStr(_token()), cache_dir=str(tmp_path)
        )

        with pytest.raises(ConfigurationError, match="clear text"):
            AssumptionsClient(CredentialManager(creds, env={}))


class TestCredentialsFolder:
    """Issue 9 #25: a 0600 file in a folder anyone can write to is refused."""

    @pytest.mark.parametrize("folder_mode", [0o777, 0o1777, 0o703])
    def test_world_writable_folder_is_refused(self, tmp_path: Path, folder_mode: int) -> None:
        folder = tmp_path / "shared"
        path = _write_file(folder / "c.json", 0o600, {"am_url": "http://f", "am_token": "t"})
        folder.chmod(folder_mode)
        try:
            with pytest.raises(ConfigurationError, match="folder anyone can write to") as caught:
                CredentialManager(env={}, config_path=path)
        finally:
            folder.chmod(0o700)

        assert f"chmod o-w {folder}" in str(caught.value)

    def test_private_folder_is_accepted(self, tmp_path: Path) -> None:
        folder = tmp_path / "private"
        path = _write_file(folder / "c.json", 0o600, {"am_url": "http://f", "am_token": _token()})
        folder.chmod(0o700)

        assert CredentialManager(env={}, config_path=path).has_credentials()


class TestMalformedToken:
    """Issue 9 #26: a token with a trailing newline was reported as 'cannot reach'."""

    @pytest.mark.parametrize("suffix", ["\n", " ", "\r\n", "\t"])
    def test_trailing_whitespace_in_the_environment_is_malformed(self, suffix: str) -> None:
        env = {"LIVECALC_AM_URL": "http://127.0.0.1:1", "LIVECALC_AM_TOKEN": _token() + suffix}

        with pytest.raises(ConfigurationError, match="LIVECALC_AM_TOKEN is malformed") as caught:
            CredentialManager(env=env)

        assert "cannot reach" not in str(caught.value)

    def test_trailing_newline_in_the_file_is_malformed(self, tmp_path: Path) -> None:
        token = _token()
        path = _write_file(
            tmp_path / "c" / "c.json", 0o600, {"am_url": "http://f", "am_token": token + "\n"}
        )

        with pytest.raises(ConfigurationError, match="malformed: it ends with a newline") as e:
            CredentialManager(env={}, config_path=path)

        assert (str(path) in str(e.value), token in str(e.value)) == (True, False)

    def test_check_says_malformed_not_unreachable(
        self, server: BackgroundServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        from typer.testing import CliRunner

        from livecalc.cli.am import am_app

        token = _token()
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("LIVECALC_AM_URL", server.url)
        monkeypatch.setenv("LIVECALC_AM_TOKEN", token + "\n")

        result = CliRunner().invoke(am_app, ["check"])

        assert (result.exit_code, "malformed" in result.output) == (2, True)
        assert ("cannot reach" in result.output, token in result.output) == (False, False)

    def test_jwt_with_trailing_newline_is_not_a_valid_jwt_shape(self) -> None:
        assert TokenInfo.from_token(_token() + "\n").is_valid is False
