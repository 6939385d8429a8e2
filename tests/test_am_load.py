"""The AM under load: keep-alive latency, many clients at once, several workers.

Real uvicorn servers on loopback and real httpx clients. No throughput is asserted here
(benchmarks/bench_am.py measures it); the only timing is the keep-alive check, whose margin
is far wider than the machine's noise and far narrower than the 40 ms it guards against.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from livecalc.am_server import BackgroundServer, create_app, issue_token, listening_socket

SECRET = "load-secret-of-at-least-thirty-two-characters"


def _make_root(root: Path) -> Path:
    """One 121-row mortality table, the size the issue measured."""
    folder = root / "mortality-standard"
    folder.mkdir(parents=True)
    rows = "".join(f"{age},{0.0005 + age * 1e-4:.6f}\n" for age in range(121))
    (folder / "v1.csv").write_text("age,q\n" + rows, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_root(tmp_path_factory.mktemp("am_load"))


# asyncio with h11 is where the delay was (uvloop sets TCP_NODELAY itself); auto is what
# `livecalc am serve` runs (uvloop and httptools where installed).
@pytest.fixture(scope="module", params=["asyncio-h11", "auto"])
def server(root: Path, request: pytest.FixtureRequest) -> Iterator[BackgroundServer]:
    loop, http = ("asyncio", "h11") if request.param == "asyncio-h11" else ("auto", "auto")
    with BackgroundServer(create_app(root, SECRET), loop=loop, http=http) as running:
        yield running


class TestKeepAlive:
    """Later requests on one connection are as quick as the first (issue 13, item 1)."""

    def test_accepted_connections_send_without_delay(self) -> None:
        # asyncio sets TCP_NODELAY only on connections of a socket whose proto says TCP.
        with listening_socket("127.0.0.1", 0) as sock:
            sock.listen()
            assert socket.IPPROTO_TCP == sock.proto
            with socket.create_connection(sock.getsockname()[:2]):
                accepted, _ = sock.accept()
                with accepted:
                    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    @pytest.mark.parametrize("path", ["/health", "/v1/assumptions/mortality-standard/v1"])
    def test_later_requests_on_one_connection_are_not_delayed(
        self, server: BackgroundServer, path: str
    ) -> None:
        headers = {"Authorization": f"Bearer {issue_token(SECRET, 'alice')}"}
        httpx.get(server.url + path, headers=headers).raise_for_status()  # warm the server
        with httpx.Client(base_url=server.url, headers=headers) as client:
            start = time.perf_counter()
            client.get(path).raise_for_status()
            first = time.perf_counter() - start
            later = []
            for _ in range(7):
                start = time.perf_counter()
                client.get(path).raise_for_status()
                later.append(time.perf_counter() - start)
        # Nagle's algorithm meeting delayed ACKs made every later request 40-48 ms; the
        # first, which opens the connection, was not delayed. The median of seven resists a
        # stall of the shared machine; 15 ms is well above its noise, well below 40 ms.
        assert statistics.median(later) < first + 0.015, (first, later)
