"""Rate limits between the AM client and the real AM server: 429/503 answers and backoff."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

import livecalc
from livecalc.assumptions._limits import BoundedHttpTools
from livecalc.assumptions.client import AssumptionResolutionError, AssumptionsClient
from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.ratelimit import AMRateLimit, limiter_for
from livecalc.assumptions.server import (
    BackgroundServer,
    BodyLimit,
    create_app,
    issue_token,
    parse_rate,
)
from livecalc.cli.am import am_app
from livecalc.errors import ConfigurationError
from livecalc.io.generate import generate_policies, write_policies
from livecalc.log import ENV_LOG_CONFIG, LoggerConfig, configure_logging
from livecalc.pipeline.loading import load_config
from livecalc.ports.ratelimit import TokenBucket
from livecalc.testing import RecordingRateLimiter

SECRET = "ratelimit-secret-of-at-least-32-characters"
REFS = [f"am://mortality@v{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six versions of a small mortality table, and a table of 16 MB (``big``)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("am_root")
    (root / "mortality").mkdir()
    for i in range(1, 7):
        (root / "mortality" / f"v{i}.csv").write_text(f"age,q\n30,0.00{i}\n", encoding="utf-8")
    (root / "big").mkdir()
    rows = 2**20
    big = pa.table({"age": np.arange(rows) % 121, "q": np.linspace(0.0, 1.0, rows)})
    pq.write_table(big, root / "big" / "v1.parquet")
    return root


def _hold_a_slot(server: BackgroundServer, token: str) -> socket.socket:
    """A client that asks for the 16 MB table and never reads the answer: the server's write
    waits on it (its socket buffers hold a few MB), in flight, until the client goes away."""
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((server.host, server.port))
    slow.sendall(
        f"GET /v1/assumptions/big/v1 HTTP/1.1\r\nHost: am\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    # Return once the server has it in flight (a probe is answered 503), however loaded the
    # machine: a fixed sleep let the test's own request in first.
    deadline = time.monotonic() + 30
    try:
        while httpx.get(server.url + "/v1/assumptions").status_code != 503:
            assert time.monotonic() < deadline, "the slow request never got in flight"
            time.sleep(0.02)
    except BaseException:
        slow.close()  # not left to the garbage collector (a ResourceWarning in a later test)
        raise
    return slow


def _server(root: Path, **limits: Any) -> BackgroundServer:
    return BackgroundServer(create_app(root, SECRET, **limits))


def _creds(url: str, cache: Path, token: str) -> AMCredentials:
    return AMCredentials(am_url=url, am_token=SecretStr(token), cache_dir=str(cache))


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """JSON log lines of the test, in a file; afterwards the library's quiet default again
    (configure_logging also exports the config to child processes: monkeypatch restores it)."""
    monkeypatch.delenv(ENV_LOG_CONFIG, raising=False)
    path = tmp_path / "test.log"
    configure_logging(
        LoggerConfig(enable_console=False, enable_file=True, log_file_path=path, min_level="DEBUG")
    )
    yield path
    configure_logging(LoggerConfig(min_level="WARNING"))


def _events(path: Path, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line["event"] == event]


class TestServerLimits:
    def test_past_the_burst_an_address_gets_429_with_retry_after(self, root: Path) -> None:
        """Burst 2 at 0.5/s: two tables, then 429 rate_limited with Retry-After 2; /health
        is never limited."""
        token = issue_token(SECRET, "alice")
        with (
            _server(root, rate_limit=0.5, rate_limit_burst=2) as server,
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c,
        ):
            answers = [c.get("/v1/assumptions/mortality/v1") for _ in range(3)]
            health = [c.get("/health").status_code for _ in range(5)]

        assert [200, 200, 429] == [a.status_code for a in answers]
        assert "2" == answers[2].headers["Retry-After"]
        assert "rate_limited" == answers[2].json()["detail"]["error"]
        assert [200] * 5 == health

    def test_unauthenticated_requests_count_too(self, root: Path) -> None:
        """Requests with no token are limited like any other (they cost the server too)."""
        with _server(root, rate_limit=0.5, rate_limit_burst=1) as server:
            codes = [httpx.get(server.url + "/v1/assumptions").status_code for _ in range(2)]

        assert [401, 429] == codes

    def test_limits_must_be_above_zero(self, root: Path) -> None:
        """A rate, burst or in-flight limit of 0 is refused, naming the option."""
        for limits, option in (
            ({"rate_limit": 0.0}, "--rate-limit"),
            ({"rate_limit": 1.0, "rate_limit_burst": 0}, "--rate-limit-burst"),
            ({"max_in_flight": 0}, "--max-in-flight"),
        ):
            with pytest.raises(ConfigurationError, match=option):
                create_app(root, SECRET, **limits)

    @pytest.mark.parametrize(
        ("text", "per_second"), [("100/s", 100.0), ("600/min", 10.0), (" 2.5 / second ", 2.5)]
    )
    def test_parse_rate(self, text: str, per_second: float) -> None:
        """Requests per second and per minute are read, spaces allowed."""
        assert per_second == parse_rate(text)

    @pytest.mark.parametrize("text", ["100", "100/h", "0/s", "-1/s", "fast", "1e3/s"])
    def test_serve_refuses_a_bad_rate_with_exit_2(
        self, root: Path, monkeypatch: pytest.MonkeyPatch, text: str
    ) -> None:
        """`am serve --rate-limit` in another form exits 2 with the form to use."""
        monkeypatch.setenv("LIVECALC_AM_SECRET", SECRET)

        result = CliRunner().invoke(am_app, ["serve", "--root", str(root), "--rate-limit", text])

        assert (2, True) == (result.exit_code, "e.g. 100/s or 600/min" in result.output)
        assert "Traceback" not in result.output

    def test_am_serve_process_answers_429(self, root: Path, tmp_path: Path) -> None:
        """`livecalc am serve --rate-limit 1/min --rate-limit-burst 1`: the second request of a
        client is answered 429."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {"LIVECALC_AM_SECRET": SECRET, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        command = [str(Path(sys.executable).with_name("livecalc")), "am", "serve"]
        options = ["--root", str(root), "--port", str(port), "--no-access-log"]
        limits = ["--rate-limit", "1/min", "--rate-limit-burst", "1"]
        process = subprocess.Popen(
            [*command, *options, *limits],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {issue_token(SECRET, 'alice')}"}
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(url + "/health")
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline and process.poll() is None
                    time.sleep(0.1)
            codes = [httpx.get(url + "/v1/assumptions", headers=headers) for _ in range(2)]
        finally:
            process.terminate()
            process.wait(timeout=30)

        assert [200, 429] == [c.status_code for c in codes]
        assert 30 <= int(codes[1].headers["Retry-After"]) <= 60


def _stall(server: BackgroundServer, head: bytes) -> socket.socket:
    """A connection that sends ``head`` (part of a request) and then nothing."""
    conn = socket.create_connection((server.host, server.port))
    conn.sendall(head)
    return conn


STALLED = [
    b"POST /v1/token HTTP/1.1\r\nHost: am\r\nContent-Ty",  # half a head
    b'POST /v1/token HTTP/1.1\r\nHost: am\r\nContent-Length: 100\r\n\r\n{"cli',  # part of a body
    b'POST /v1/token HTTP/1.1\r\nHost: am\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"cli\r\n',
    b"POST /v1/token HTTP/1.1\r\nHost: am\r\nContent-Length: 10\r\n\r\n",  # a head only
]


class _QuickHeads(BoundedHttpTools):
    """The server's protocol with a head timeout a test can wait for."""

    head_timeout_seconds = 0.5


class TestStalledClients:
    def test_clients_that_stall_hold_no_slot(self, root: Path) -> None:
        """--max-in-flight 2 and eight connections that sent part of a head or body and then
        nothing: every other request is still answered, none 503."""
        token = issue_token(SECRET, "alice")
        headers = {"Authorization": f"Bearer {token}"}
        with _server(root, max_in_flight=2) as server:
            stalled = [_stall(server, head) for head in STALLED * 2]
            try:
                time.sleep(0.3)  # the server has read what they sent
                codes = [
                    httpx.get(server.url + "/v1/assumptions", headers=headers).status_code
                    for _ in range(4)
                ]
            finally:
                for conn in stalled:
                    conn.close()

        assert [200] * 4 == codes

    def test_a_body_that_never_arrives_is_answered_408(self, root: Path) -> None:
        """A body still missing at the body timeout is answered 408 and the connection closed."""
        app = BodyLimit(create_app(root, SECRET), timeout_seconds=0.5)
        with BackgroundServer(app) as server:  # type: ignore[arg-type]
            conn = _stall(server, STALLED[1])
            conn.settimeout(20)
            with conn:
                answer = conn.recv(65536)

        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"request_timeout" in answer

    def test_a_head_that_never_ends_is_cut_off(self, root: Path) -> None:
        """A connection whose request head has not ended at the head timeout is closed; one
        that sends nothing at all, too."""
        with BackgroundServer(create_app(root, SECRET), http=_QuickHeads) as server:  # type: ignore[arg-type]
            half, silent = _stall(server, STALLED[0]), _stall(server, b"")
            for conn in (half, silent):
                conn.settimeout(20)
            with half, silent:
                ends = [half.recv(65536), silent.recv(65536)]

        assert [b"", b""] == ends


class TestForwardedFor:
    def _codes(self, server: BackgroundServer, n: int) -> list[int]:
        """n requests from 127.0.0.1, each claiming another client in X-Forwarded-For."""
        return [
            httpx.get(
                server.url + "/v1/assumptions",
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            ).status_code
            for i in range(n)
        ]

    def test_a_rotating_x_forwarded_for_does_not_escape_the_rate_limit(self, root: Path) -> None:
        """Without --trusted-proxy the client is the TCP peer: a local client rotating
        X-Forwarded-For is one address, limited after its burst."""
        with _server(root, rate_limit=0.5, rate_limit_burst=2) as server:
            codes = self._codes(server, 6)

        assert [401, 401, 429, 429, 429, 429] == codes

    def test_a_trusted_proxy_names_the_client(self, root: Path) -> None:
        """With the proxy trusted (127.0.0.1 here), X-Forwarded-For is the client: each
        forwarded client has its own bucket."""
        app = create_app(root, SECRET, rate_limit=0.5, rate_limit_burst=2)
        with BackgroundServer(app, trusted_proxies=["127.0.0.1"]) as server:
            codes = self._codes(server, 6)

        assert [401] * 6 == codes

    def test_serve_refuses_a_proxy_that_is_no_address(self, root: Path) -> None:
        """`am serve --trusted-proxy proxy.example` exits 2 asking for an address or network."""
        result = CliRunner().invoke(
            am_app,
            ["serve", "--root", str(root), "--trusted-proxy", "proxy.example"],
            env={"LIVECALC_AM_SECRET": SECRET},
        )

        assert 2 == result.exit_code, result.output
        assert "--trusted-proxy 'proxy.example': not an IP address or network" in result.output


class TestSlowReaders:
    def test_a_client_that_does_not_read_a_big_answer_stays_in_flight(self, root: Path) -> None:
        """A big table goes out in pieces, each written once the client took the one before:
        a client that does not read holds its slot (bounded by --max-in-flight), also when the
        table is already encoded. Before, the whole answer was handed to the socket at once and
        the slot freed at once (the server buffering 16 MB for the client)."""
        token = issue_token(SECRET, "alice")
        auth = {"Authorization": f"Bearer {token}"}
        with _server(root, max_in_flight=1) as server:
            assert 200 == httpx.get(server.url + "/v1/assumptions/big/v1", headers=auth).status_code
            with _hold_a_slot(server, token):  # the table is cached now: no encoding to wait on
                time.sleep(0.5)
                assert 503 == httpx.get(server.url + "/v1/assumptions").status_code
            deadline = time.monotonic() + 30  # the slow client gone, its slot is given back
            while httpx.get(server.url + "/v1/assumptions", headers=auth).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.02)


class TestClientBackoff:
    def test_client_backs_off_on_429_and_gets_every_table(
        self, root: Path, tmp_path: Path, log_file: Path
    ) -> None:
        """Server at 5/s, burst 2; an unpaced client resolving 6 tables is refused, backs off
        as told (Retry-After capped at 0.3 s) and gets all 6; am_backoff logged, no token."""
        token = issue_token(SECRET, "alice")
        limiter = RecordingRateLimiter(max_retries=20, base_delay=0.05, max_delay=0.3)
        with (
            _server(root, rate_limit=5.0, rate_limit_burst=2) as server,
            AssumptionsClient(_creds(server.url, tmp_path, token), rate_limiter=limiter) as client,
        ):
            tables = [client.resolve(ref).table.num_rows for ref in REFS]

        backoffs = _events(log_file, "am_backoff")
        assert [1] * 6 == tables
        assert 6 + len(limiter.backoffs) == len(limiter.acquired)
        assert {429} == {status for _, status, _, _ in limiter.backoffs}
        assert {1.0} == {retry_after for _, _, retry_after, _ in limiter.backoffs}
        assert len(limiter.backoffs) == len(backoffs) >= 1
        assert {"status", "attempt", "delay_seconds", "retry_after", "am_url", "path"} <= set(
            backoffs[0]
        )
        assert token not in log_file.read_text(encoding="utf-8")

    def test_a_paced_client_is_never_refused(self, root: Path, tmp_path: Path) -> None:
        """A client paced at 4/s (burst 2) against a server allowing 5/s (burst 2) resolves
        6 tables with no 429: with max_retries 0 a single refusal would raise."""
        token = issue_token(SECRET, "alice")
        limiter = TokenBucket(4.0, 2, max_retries=0)
        with (
            _server(root, rate_limit=5.0, rate_limit_burst=2) as server,
            AssumptionsClient(_creds(server.url, tmp_path, token), rate_limiter=limiter) as client,
        ):
            start = time.monotonic()
            tables = [client.resolve(ref).table.num_rows for ref in REFS]
            seconds = time.monotonic() - start

        assert [1] * 6 == tables
        assert seconds >= 0.9  # 4 requests past the burst, one each 0.25 s

    def test_client_gives_up_after_max_retries_with_a_clear_error(
        self, root: Path, tmp_path: Path
    ) -> None:
        """Server at 1/min: after the first table, 1 try + 2 retries all get 429, and the
        error names the status, the attempts and the settings to change; no token in it."""
        token = issue_token(SECRET, "alice")
        limiter = RecordingRateLimiter(max_retries=2, base_delay=0.01, max_delay=0.02)
        with (
            _server(root, rate_limit=1 / 60, rate_limit_burst=1) as server,
            AssumptionsClient(_creds(server.url, tmp_path, token), rate_limiter=limiter) as client,
        ):
            client.resolve(REFS[0])
            with pytest.raises(AssumptionResolutionError) as caught:
                client.resolve(REFS[1])

        message = str(caught.value)
        assert "am://mortality@v2" in message and "answered 429" in message
        assert "all 3 attempts" in message
        assert "run.am_rate_limit.requests_per_second" in message and "max_retries" in message
        assert [(1, 429), (2, 429), (3, 429)] == [(a, s) for a, s, _, _ in limiter.backoffs]
        assert token not in message

    def test_client_retries_503_until_the_server_has_room(self, root: Path, tmp_path: Path) -> None:
        """max_in_flight 1, held by a request whose answer is never read: the client's request
        is answered 503 and retried; when the slow request goes away it succeeds."""
        token = issue_token(SECRET, "alice")
        limiter = RecordingRateLimiter(max_retries=50, base_delay=0.05, max_delay=0.1)
        with _server(root, max_in_flight=1) as server:
            slow = _hold_a_slot(server, token)
            threading.Timer(0.5, slow.close).start()
            with AssumptionsClient(
                _creds(server.url, tmp_path, token), rate_limiter=limiter
            ) as client:
                resolved = client.resolve(REFS[0])

        assert (1, False) == (resolved.table.num_rows, resolved.from_cache)
        assert len(limiter.backoffs) >= 1
        assert {(503, 1.0)} == {(s, r) for _, s, r, _ in limiter.backoffs}

    def test_503_to_every_attempt_with_nothing_cached_is_unreachable(
        self, root: Path, tmp_path: Path
    ) -> None:
        """When the server stays full, the client gives up: cannot reach, HTTP 503, attempts."""
        token = issue_token(SECRET, "alice")
        limiter = RecordingRateLimiter(max_retries=1, base_delay=0.01, max_delay=0.01)
        with (
            _server(root, max_in_flight=1) as server,
            _hold_a_slot(server, token),
            AssumptionsClient(_creds(server.url, tmp_path, token), rate_limiter=limiter) as c,
            pytest.raises(AssumptionResolutionError) as caught,
        ):
            c.resolve(REFS[0])

        assert "cannot reach the Assumptions Manager" in str(caught.value)
        assert "HTTP 503 to all 2 attempts" in str(caught.value)


class TestRateLimitConfig:
    def test_run_am_rate_limit_is_validated_with_its_json_path(self, tmp_path: Path) -> None:
        """A rate of 0 and delays out of order are refused, naming run.am_rate_limit."""
        for bad, words in (
            ({"requests_per_second": 0}, "requests_per_second"),
            ({"base_delay_seconds": 5, "max_delay_seconds": 1}, "max_delay_seconds"),
            ({"burst": 3, "rate": 1}, "rate"),
        ):
            raw = {
                "engines": [{"id": "e", "type": "esg", "outputs": ["s"]}],
                "run": {"am_rate_limit": bad},
            }
            with pytest.raises(ConfigurationError) as caught:
                load_config(raw, base_dir=tmp_path)
            assert "run.am_rate_limit" in str(caught.value) and words in str(caught.value)

    def test_settings_make_the_shared_bucket(self) -> None:
        """limiter_for gives one bucket per settings in a process, with those settings."""
        settings = AMRateLimit(requests_per_second=20, burst=4, max_retries=3)

        bucket = limiter_for(settings)

        assert bucket is limiter_for(AMRateLimit(requests_per_second=20, burst=4, max_retries=3))
        assert (20, 4, 3) == (bucket.rate, bucket.burst, bucket.max_retries)
        assert limiter_for(None) is not bucket


MORTALITY = (
    Path(__file__).parents[1] / "src" / "livecalc" / "data" / "mortality_gompertz_makeham.csv"
)


def _am_pipeline(tmp_path: Path, rate_limit: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """ESG -> projection reading its mortality table as am://mortality-standard@v2.1."""
    root = tmp_path / "am"
    (root / "mortality-standard").mkdir(parents=True)
    (root / "mortality-standard" / "v2.1.csv").write_bytes(MORTALITY.read_bytes())
    write_policies(tmp_path / "policies.parquet", generate_policies(50, seed=7))
    raw = {
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {
                "id": "esg",
                "type": "esg",
                "config": {"outer": 2, "inner": 5, "years": 50, "seed": 1},
                "outputs": ["scenarios"],
            },
            {
                "id": "projection",
                "type": "projection",
                "config": {"mortality_table": "am://mortality-standard@v2.1"},
                "inputs": ["policies", "scenarios"],
                "outputs": ["results"],
            },
        ],
        "run": {"am_rate_limit": rate_limit},
    }
    return raw, root


class TestPipelineRateLimit:
    def test_run_am_rate_limit_reaches_the_engines_client(self, tmp_path: Path) -> None:
        """With max_retries 1 from the config, a refused projection stops after 2 attempts
        (the default would try 6): the run fails before anything runs, naming the fix."""
        raw, root = _am_pipeline(
            tmp_path, {"max_retries": 1, "base_delay_seconds": 0.01, "max_delay_seconds": 0.01}
        )
        token = issue_token(SECRET, "alice")
        with _server(root, rate_limit=1 / 60, rate_limit_burst=1) as server:
            # This address's one request of the minute is spent here.
            httpx.get(server.url + "/v1/assumptions", headers={"Authorization": f"Bearer {token}"})
            with pytest.raises(ConfigurationError) as caught:
                livecalc.run(
                    raw, base_dir=tmp_path, credentials=_creds(server.url, tmp_path, token)
                )

        message = str(caught.value)
        assert "answered 429" in message and "all 2 attempts" in message
        assert "engines[1]" in message and token not in message

    def test_a_refused_run_backs_off_and_succeeds(self, tmp_path: Path, log_file: Path) -> None:
        """Server at 4/s with its burst spent: the projection's first request gets 429, the
        client waits (Retry-After 1 s capped at 0.3 s) and the run succeeds."""
        raw, root = _am_pipeline(
            tmp_path, {"max_retries": 10, "base_delay_seconds": 0.05, "max_delay_seconds": 0.3}
        )
        token = issue_token(SECRET, "alice")
        with _server(root, rate_limit=4.0, rate_limit_burst=1) as server:
            httpx.get(server.url + "/v1/assumptions", headers={"Authorization": f"Bearer {token}"})
            result = livecalc.run(
                raw, base_dir=tmp_path, credentials=_creds(server.url, tmp_path, token), store=False
            )

        backoffs = _events(log_file, "am_backoff")
        assert result.success
        assert len(backoffs) >= 1 and {429} == {b["status"] for b in backoffs}
        assert 0.3 == backoffs[0]["delay_seconds"]
