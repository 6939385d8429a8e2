"""Tests of livecalc.assumptions.client: references, the cache, and the client against a live AM."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from livecalc.assumptions.client import (
    AMReference,
    AssumptionCache,
    AssumptionResolutionError,
    parse_reference,
    resolve_reference,
)
from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.errors import ConfigurationError, InitializationError
from livecalc.log import LoggerConfig, configure_logging

SECRET = "test-secret-of-at-least-thirty-two-characters"
OTHER_SECRET = "another-secret-of-at-least-32-characters"
MORTALITY_V1 = "age,q\n30,0.001\n31,0.0011\n"
MORTALITY_V2 = "age,q\n30,0.002\n31,0.0021\n32,0.0022\n"


def _make_root(root: Path) -> Path:
    (root / "mortality-standard").mkdir(parents=True)
    (root / "mortality-standard" / "v1.csv").write_text(MORTALITY_V1, encoding="utf-8")
    (root / "mortality-standard" / "v2.csv").write_text(MORTALITY_V2, encoding="utf-8")
    (root / "lapse").mkdir()
    (root / "lapse" / "v1.csv").write_text("policy_year,rate\n1,0.05\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A real AM on a loopback port serving two mortality versions and a lapse table."""
    root = _make_root(tmp_path_factory.mktemp("am") / "root")
    with BackgroundServer(create_app(root, SECRET)) as running:
        yield running


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """JSON log lines of the test, in a file."""
    path = tmp_path / "test.log"
    configure_logging(
        LoggerConfig(enable_console=False, enable_file=True, log_file_path=path, min_level="DEBUG")
    )
    yield path
    configure_logging(LoggerConfig())


def _events(path: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line["event"] == event]


def _creds(url: str, cache: Path, token: str | None = None) -> AMCredentials:
    token = token or issue_token(SECRET, "alice")
    return AMCredentials(am_url=url, am_token=SecretStr(token), cache_dir=str(cache))


class TestParseReference:
    """parse_reference and AMReference."""

    def test_name_and_version(self) -> None:
        """am://name@version splits into its name and version."""
        assert parse_reference("am://mortality-standard@v2.1") == AMReference(
            "mortality-standard", "v2.1"
        )

    @pytest.mark.parametrize(
        "ref",
        ["am://mortality", "mortality@v1", "am://../x@v1", "am://a/b@v1", "am://a@", "am://@v1"],
    )
    def test_malformed_references_are_configuration_errors(self, ref: str) -> None:
        """A reference without a version, with a path or without a name says how to write it."""
        with pytest.raises(ConfigurationError, match="am://NAME@VERSION"):
            parse_reference(ref)

    @settings(max_examples=30, deadline=None)
    @given(
        name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
        version=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True),
    )
    def test_reference_round_trips(self, name: str, version: str) -> None:
        """Any valid name and version parse back from the reference's text."""
        assert parse_reference(str(AMReference(name, version))) == AMReference(name, version)


class TestAssumptionCache:
    """AssumptionCache: atomic copies of the server's answers."""

    def _stream(self, table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return bytes(sink.getvalue().to_pybytes())

    def test_stored_table_loads_back_with_its_etag(self, tmp_path: Path) -> None:
        """A stored answer loads back as the same table and ETag, leaving no temp files."""
        cache = AssumptionCache(tmp_path, "http://am:8765")
        table = pa.table({"age": [30, 31], "q": [0.1, 0.2]})

        cache.store("mortality", "v1", self._stream(table), '"abc"')

        loaded = cache.load("mortality", "v1")
        assert loaded is not None
        leftovers = [p.name for p in tmp_path.rglob("*.tmp")]
        assert (loaded.table.equals(table), loaded.etag, leftovers) == (True, '"abc"', [])

    def test_corrupt_copy_is_a_miss(self, tmp_path: Path) -> None:
        """A damaged cached file is treated as absent, not as an error."""
        cache = AssumptionCache(tmp_path, "http://am")
        cache.store("mortality", "v1", b"not arrow", None)

        assert cache.load("mortality", "v1") is None

    def test_each_server_has_its_own_folder(self, tmp_path: Path) -> None:
        """Two servers' caches do not share a folder."""
        assert (
            AssumptionCache(tmp_path, "http://a:1").folder
            != AssumptionCache(tmp_path, "http://a:2").folder
        )

    def test_latest_pointer_round_trips(self, tmp_path: Path) -> None:
        """set_latest is read back by latest; unknown names give None."""
        cache = AssumptionCache(tmp_path, "http://am")

        cache.set_latest("mortality", "v7")

        assert (cache.latest("mortality"), cache.latest("lapse")) == ("v7", None)


class TestResolveReference:
    """resolve_reference against a real AM server."""

    def test_pinned_version_is_fetched_then_revalidated(
        self, server: BackgroundServer, tmp_path: Path, log_file: Path
    ) -> None:
        """The first resolution downloads; the second is confirmed by the server (304)."""
        creds = _creds(server.url, tmp_path / "cache")

        first = resolve_reference("am://mortality-standard@v1", creds)
        second = resolve_reference("am://mortality-standard@v1", creds)

        assert (first.version, first.from_cache, second.from_cache, second.table.num_rows) == (
            "v1",
            False,
            True,
            2,
        )

    def test_assumption_resolved_is_logged_with_the_seed_fields(
        self, server: BackgroundServer, tmp_path: Path, log_file: Path
    ) -> None:
        """assumption_resolved names the assumption, the resolved version and the rows."""
        resolve_reference("am://mortality-standard@latest", _creds(server.url, tmp_path))

        (event,) = _events(log_file, "assumption_resolved")
        assert (event["assumption_name"], event["resolved_version"], event["rows_loaded"]) == (
            "mortality-standard",
            "v2",
            3,
        )

    def test_latest_is_revalidated_against_the_server(self, tmp_path: Path) -> None:
        """After a new version is published, @latest resolves to it, not to the cached one."""
        root = _make_root(tmp_path / "root")
        with BackgroundServer(create_app(root, SECRET)) as running:
            creds = _creds(running.url, tmp_path / "cache")
            before = resolve_reference("am://mortality-standard@latest", creds)
            (root / "mortality-standard" / "v3.csv").write_text("age,q\n30,0.5\n", "utf-8")
            after = resolve_reference("am://mortality-standard@latest", creds)

        assert (before.version, after.version, after.from_cache) == ("v2", "v3", False)

    def test_expired_token_is_refreshed_automatically(
        self, server: BackgroundServer, tmp_path: Path, log_file: Path
    ) -> None:
        """An expired token is swapped through the AM and the table still resolves."""
        expired = issue_token(SECRET, "alice", ttl_seconds=-30)

        resolved = resolve_reference("am://lapse@v1", _creds(server.url, tmp_path, expired))

        assert (resolved.table.num_rows, len(_events(log_file, "token_refreshed")) >= 1) == (
            1,
            True,
        )

    def test_token_past_the_refresh_window_is_a_clear_error(
        self, server: BackgroundServer, tmp_path: Path
    ) -> None:
        """A token expired weeks ago cannot be refreshed: the error says to issue a new one."""
        old = issue_token(SECRET, "alice", now=time.time() - 30 * 86400)

        with pytest.raises(InitializationError, match="livecalc am token") as caught:
            resolve_reference("am://lapse@v1", _creds(server.url, tmp_path, old))

        assert old not in str(caught.value)

    def test_forged_token_is_a_clear_401(self, server: BackgroundServer, tmp_path: Path) -> None:
        """A token signed by someone else gives a 401 error that says so, without the token."""
        forged = issue_token(OTHER_SECRET, "mallory")

        with pytest.raises(InitializationError, match=r"answered 401.*forged") as caught:
            resolve_reference("am://lapse@v1", _creds(server.url, tmp_path, forged))

        assert forged not in str(caught.value)

    def test_out_of_scope_assumption_is_a_clear_403(
        self, server: BackgroundServer, tmp_path: Path
    ) -> None:
        """A token not allowed to read an assumption gives a 403 error naming the fix."""
        token = issue_token(SECRET, "bob", scope=["lapse"])

        with pytest.raises(InitializationError, match=r"answered 403.*scope"):
            resolve_reference("am://mortality-standard@v1", _creds(server.url, tmp_path, token))

    def test_unknown_version_lists_the_available_ones(
        self, server: BackgroundServer, tmp_path: Path
    ) -> None:
        """An unknown version is an error listing the versions the server has."""
        with pytest.raises(InitializationError, match=r"no version 'v9' \(available: v1, v2\)"):
            resolve_reference("am://mortality-standard@v9", _creds(server.url, tmp_path))

    def test_unknown_assumption_is_named(self, server: BackgroundServer, tmp_path: Path) -> None:
        """An unknown name is an error naming the reference."""
        with pytest.raises(InitializationError, match="am://nope@v1: not found"):
            resolve_reference("am://nope@v1", _creds(server.url, tmp_path))

    def test_server_down_with_warm_cache_works_offline_and_says_so(
        self, tmp_path: Path, log_file: Path
    ) -> None:
        """With the server stopped, a cached table is used and a warning event is logged."""
        root = _make_root(tmp_path / "root")
        with BackgroundServer(create_app(root, SECRET)) as running:
            creds = _creds(running.url, tmp_path / "cache")
            resolve_reference("am://mortality-standard@v2", creds)

        offline = resolve_reference("am://mortality-standard@v2", creds)

        (warning,) = _events(log_file, "warning")
        assert (offline.from_cache, offline.table.num_rows, warning["reason"]) == (
            True,
            3,
            "am_unreachable",
        )

    def test_server_down_with_cold_cache_is_a_clear_error(self, tmp_path: Path) -> None:
        """Unreachable server and nothing cached: the error names the URL and the cache."""
        creds = _creds("http://127.0.0.1:9", tmp_path / "cache")

        with pytest.raises(InitializationError, match=r"cannot reach .*127\.0\.0\.1:9.*no copy"):
            resolve_reference("am://mortality-standard@v1", creds)

    def test_resolution_errors_are_configuration_errors_too(self, tmp_path: Path) -> None:
        """A resolution failure is both an InitializationError and a ConfigurationError."""
        creds = _creds("http://127.0.0.1:9", tmp_path / "cache")

        with pytest.raises(AssumptionResolutionError) as caught:
            resolve_reference("am://mortality-standard@v1", creds)

        error = caught.value
        assert (isinstance(error, InitializationError), isinstance(error, ConfigurationError)) == (
            True,
            True,
        )

    def test_server_error_falls_back_to_the_cache(self, tmp_path: Path, log_file: Path) -> None:
        """A 5xx answer (an unreadable table on the server) is served from the cache."""
        root = _make_root(tmp_path / "root")
        with BackgroundServer(create_app(root, SECRET)) as running:
            creds = _creds(running.url, tmp_path / "cache")
            resolve_reference("am://lapse@v1", creds)
            (root / "lapse" / "v1.csv").write_bytes(b"policy_year,rate\n1,2,3\n")
            resolved = resolve_reference("am://lapse@v1", creds)

        assert (resolved.from_cache, _events(log_file, "warning")[0]["error"]) == (
            True,
            "HTTP 500",
        )

    def test_credentials_come_from_the_environment(
        self, server: BackgroundServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without explicit credentials, LIVECALC_AM_URL/TOKEN/CACHE_DIR are used."""
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("LIVECALC_AM_URL", server.url)
        monkeypatch.setenv("LIVECALC_AM_TOKEN", issue_token(SECRET, "env-user"))
        monkeypatch.setenv("LIVECALC_AM_CACHE_DIR", str(tmp_path / "env-cache"))

        resolved = resolve_reference("am://lapse@v1")

        assert (resolved.version, (tmp_path / "env-cache").is_dir()) == ("v1", True)

    def test_no_credentials_at_all_is_a_clear_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without any credential source, the error says which variables to set."""
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.delenv("LIVECALC_AM_URL", raising=False)
        monkeypatch.delenv("LIVECALC_AM_TOKEN", raising=False)

        with pytest.raises(InitializationError, match="LIVECALC_AM_URL and LIVECALC_AM_TOKEN"):
            resolve_reference("am://lapse@v1")

    def test_local_file_paths_keep_working(self, tmp_path: Path) -> None:
        """A plain CSV path resolves to its table, version 'file'."""
        path = tmp_path / "mortality.csv"
        path.write_text(MORTALITY_V2, encoding="utf-8")

        resolved = resolve_reference(str(path))

        assert (resolved.name, resolved.version, resolved.table.num_rows) == (
            "mortality",
            "file",
            3,
        )

    def test_concurrent_resolutions_share_one_consistent_cache(
        self, server: BackgroundServer, tmp_path: Path
    ) -> None:
        """Threads resolving the same reference on a cold cache all get the whole table."""
        creds = _creds(server.url, tmp_path / "cache")

        with ThreadPoolExecutor(max_workers=4) as pool:
            rows = list(
                pool.map(
                    lambda _: resolve_reference("am://mortality-standard@v2", creds).table.num_rows,
                    range(8),
                )
            )

        assert rows == [3] * 8

    def test_token_never_appears_in_logs_or_errors(
        self, server: BackgroundServer, tmp_path: Path, log_file: Path
    ) -> None:
        """Across success, refresh and failures, the token's text is in no log line or error."""
        tokens = [
            issue_token(SECRET, "alice"),
            issue_token(SECRET, "alice", ttl_seconds=-30),
            issue_token(OTHER_SECRET, "mallory"),
        ]
        messages = []
        for token in tokens:
            for ref in ("am://lapse@v1", "am://mortality-standard@v9"):
                try:
                    resolve_reference(ref, _creds(server.url, tmp_path, token))
                except InitializationError as exc:
                    messages.append(str(exc))
        text = log_file.read_text(encoding="utf-8") + "\n".join(messages)

        assert [t for t in tokens if t in text] == []
