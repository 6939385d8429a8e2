"""The Assumptions Manager under load: table GETs, 304 revalidations and token refreshes.

A real ``livecalc am serve`` (a subprocess, 1 or N workers) on a loopback port, and real httpx
clients: C concurrent clients, each with its own keep-alive connection, share a fixed number
of requests of one kind. ``httpx`` clients are synchronous ``httpx.Client`` threads, as
LiveCalc's ``AssumptionsClient`` makes them; ``raw`` clients are a minimal asyncio HTTP/1.1
client that costs far less CPU, so its figures show what the server itself can do. For each
kind it prints requests/s, p50/p99 latency, errors and the server's resident memory (all its
processes, highest seen during the run).

The load runs in ``--client-processes`` processes. On a 2-core machine client and server
share the cores (httpx spends about 0.5 ms of CPU per request, the server about 0.25 ms), so
the figures are a floor for a server with cores of its own.

Run: ``.venv/bin/python benchmarks/bench_am.py [--clients 50 500] [--workers 1 2]
[--requests 4000] [--seconds 30]``. Loopback only; bounded in requests and in time.
Targets (issue 13): >= 1,000 requests/s and p99 < 50 ms for GET and 304 at 50 clients;
no error at 500 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from livecalc.assumptions.credentials import ssl_context
from livecalc.assumptions.server import issue_token

SECRET = "bench-secret-of-at-least-thirty-two-characters"
TABLE = "/v1/assumptions/mortality-standard/v1"
LIVECALC = str(Path(sys.executable).with_name("livecalc"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_root(root: Path) -> None:
    """A 121-row mortality table, the size issue 13 measured."""
    folder = root / "mortality-standard"
    folder.mkdir(parents=True)
    rows = "".join(
        f"{age},{0.0005 + age * 1e-4:.6f},{0.0003 + age * 8e-5:.6f}\n" for age in range(121)
    )
    (folder / "v1.csv").write_text("age,q_male,q_female\n" + rows, encoding="utf-8")


def _rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (worker processes), in bytes."""
    total, pids = 0, [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class Server:
    """``livecalc am serve --workers N`` on a free loopback port; peak RSS sampled."""

    def __init__(self, root: Path, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LIVECALC_AM_SECRET": SECRET}
        command = [LIVECALC, "am", "serve", "--root", str(root), "--port", str(self.port)]
        command += ["--workers", str(workers), "--no-access-log"]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the AM server did not start")
            time.sleep(0.1)
        time.sleep(0.5 if workers > 1 else 0)  # every worker up
        self.peak_rss = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self._sampling:
            self.peak_rss = max(self.peak_rss, _rss_bytes(self.process.pid))
            time.sleep(0.05)

    def reset_peak(self) -> None:
        self.peak_rss = _rss_bytes(self.process.pid)

    def stop(self) -> None:
        self._sampling = False
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _httpx_load(
    url: str, kind: str, clients: int, requests: int, seconds: float, etag: str | None
) -> tuple[list[float], int, int]:
    """``requests`` requests of ``kind`` from ``clients`` threads: latencies, errors, count.

    Each thread is one client as LiveCalc's ``AssumptionsClient`` makes it: a synchronous
    ``httpx.Client`` with one keep-alive connection and the shared TLS context.
    """
    token = issue_token(SECRET, "bench", ttl_seconds=3600)
    headers = {"Authorization": f"Bearer {token}"}
    if kind == "304" and etag:
        headers["If-None-Match"] = etag
    expected = {"GET": 200, "304": 304, "refresh": 200}[kind]
    latencies: list[float] = []
    errors = 0
    left = requests
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    start_gate = threading.Barrier(clients)

    def one_client() -> None:
        nonlocal left, errors
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(
            base_url=url, headers=headers, limits=limits, timeout=30, verify=ssl_context()
        ) as client:
            start_gate.wait()
            while time.monotonic() < deadline:
                with lock:
                    if left <= 0:
                        return
                    left -= 1
                t0 = time.perf_counter()
                try:
                    if kind == "refresh":
                        response = client.post("/v1/token/refresh")
                    else:
                        response = client.get(TABLE)
                    ok = response.status_code == expected
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    with lock:
                        errors += 1

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, requests - left


async def _raw_load(
    url: str, kind: str, clients: int, requests: int, seconds: float, etag: str | None
) -> tuple[list[float], int, int]:
    """As ``_client_load``, with a minimal HTTP/1.1 keep-alive client on asyncio streams.

    It costs the machine a few tens of microseconds per request where httpx costs over a
    millisecond, so on a 2-core machine its figures show what the server itself can do.
    """
    host, port = url.removeprefix("http://").split(":")
    token = issue_token(SECRET, "bench", ttl_seconds=3600)
    method, path = ("POST", "/v1/token/refresh") if kind == "refresh" else ("GET", TABLE)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
    if kind == "304" and etag:
        head += f"If-None-Match: {etag}\r\n"
    if method == "POST":
        head += "Content-Length: 0\r\n"
    request = (head + "\r\n").encode()
    expected = b" 304 " if kind == "304" else b" 200 "
    latencies: list[float] = []
    errors = 0
    left = requests
    deadline = time.monotonic() + seconds
    start_gate = asyncio.Event()

    async def one_client() -> None:
        nonlocal left, errors
        reader, writer = await asyncio.open_connection(host, int(port))
        await start_gate.wait()
        try:
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                t0 = time.perf_counter()
                writer.write(request)
                status_and_headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in status_and_headers.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                errors += expected not in status_and_headers[:16]
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(one_client()) for _ in range(clients)]
    await asyncio.sleep(0.2)
    start_gate.set()
    await asyncio.gather(*tasks)
    return latencies, errors, requests - left


def _process_main(args: tuple[str, str, str, int, int, float, str | None, Any]) -> None:
    client, url, kind, clients, requests, seconds, etag, queue = args
    if client == "raw":
        queue.put(asyncio.run(_raw_load(url, kind, clients, requests, seconds, etag)))
    else:
        queue.put(_httpx_load(url, kind, clients, requests, seconds, etag))


def run_load(
    server: Server,
    client: str,
    kind: str,
    clients: int,
    requests: int,
    seconds: float,
    processes: int,
) -> dict[str, float]:
    """One measurement: clients split over ``processes`` client processes."""
    etag = httpx.get(
        server.url + TABLE, headers={"Authorization": f"Bearer {issue_token(SECRET, 'b')}"}
    ).headers.get("ETag")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    per = [clients // processes + (i < clients % processes) for i in range(processes)]
    jobs = [
        context.Process(
            target=_process_main,
            args=((client, server.url, kind, n, requests * n // clients, seconds, etag, queue),),
        )
        for n in per
        if n
    ]
    server.reset_peak()
    start = time.perf_counter()
    for job in jobs:
        job.start()
    results = [queue.get(timeout=seconds + 120) for _ in jobs]
    wall = time.perf_counter() - start
    for job in jobs:
        job.join()
    latencies = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    done = len(latencies)
    return {
        "requests": done,
        "errors": errors,
        "rps": done / wall,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(done - 1, int(0.99 * done))] if latencies else float("nan"),
        "rss_mb": server.peak_rss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinds", nargs="+", default=["GET", "304", "refresh"])
    parser.add_argument(
        "--client",
        nargs="+",
        default=["httpx", "raw"],
        choices=["httpx", "raw"],
        help="httpx (LiveCalc's client library) and/or a minimal asyncio client",
    )
    parser.add_argument("--requests", type=int, default=4000, help="per measurement")
    parser.add_argument("--seconds", type=float, default=30.0, help="time limit per measurement")
    parser.add_argument("--client-processes", type=int, default=2)
    args = parser.parse_args()
    print(
        f"AM load: {args.requests} requests per line (at most {args.seconds:.0f} s), "
        f"{args.client_processes} client processes, {os.cpu_count()} cores shared by client "
        "and server; 121-row table",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        _make_root(root)
        for workers in args.workers:
            server = Server(root, workers)
            try:
                for client, clients, kind in itertools.product(
                    args.client, args.clients, args.kinds
                ):
                    r = run_load(
                        server,
                        client,
                        kind,
                        clients,
                        args.requests,
                        args.seconds,
                        min(args.client_processes, clients),
                    )
                    print(
                        f"workers={workers} client={client:5s} clients={clients:3d} {kind:7s} "
                        f"{r['rps']:7.0f} req/s  p50 {r['p50_ms']:6.1f} ms  "
                        f"p99 {r['p99_ms']:6.1f} ms  errors {r['errors']:.0f}/"
                        f"{r['requests']:.0f}  server RSS {r['rss_mb']:.0f} MB",
                        flush=True,
                    )
            finally:
                server.stop()


if __name__ == "__main__":
    main()
