"""Rate limits of the Assumptions Manager: what they cost the server, how well clients pace.

A real AM app (uvicorn on a loopback port, in this process's thread) and LiveCalc's own
``AssumptionsClient``:

1. server cost: table requests/s with no limit (the baseline, measured in the same run),
   with ``--rate-limit`` set so high it never refuses, and with ``--max-in-flight``; the
   ratios are the middleware's cost;
2. client pacing: a client paced at R requests/s (``TokenBucket(R, burst)``) resolving N
   tables: the rate it achieved, and the 429s a server limited to 1.25 R saw (0 expected);
3. backoff: an unpaced client against a server limited to R: tables/s achieved and retries.

Run: ``.venv/bin/python benchmarks/bench_ratelimit.py [--requests 2000] [--rate 40]
[--rounds 5]``. On a shared machine the server figures swing; the best of the rounds is
shown.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from livecalc.assumptions.client import AssumptionsClient
from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.log import LoggerConfig, configure_logging
from livecalc.ports.ratelimit import TokenBucket
from livecalc.testing import RecordingRateLimiter

SECRET = "bench-ratelimit-secret-of-32-characters!"


def _root(folder: Path, versions: int) -> Path:
    (folder / "mortality").mkdir(parents=True)
    for i in range(versions):
        (folder / "mortality" / f"v{i}.csv").write_text(f"age,q\n30,0.00{i % 9 + 1}\n")
    return folder


def _client(url: str, cache: Path, limiter: Any) -> AssumptionsClient:
    creds = AMCredentials(
        am_url=url, am_token=SecretStr(issue_token(SECRET, "bench")), cache_dir=str(cache)
    )
    return AssumptionsClient(creds, rate_limiter=limiter)


def server_cost(root: Path, cache: Path, requests: int, rounds: int) -> None:
    """Requests/s of one client on one keep-alive connection, per server setting: the best
    of ``rounds`` rounds, the settings interleaved so that a busy moment of the machine
    does not fall on one setting only."""
    print(
        f"server cost: {requests} table requests (304 revalidations), one client, best of {rounds}"
    )
    settings: dict[str, dict[str, Any]] = {
        "no limit (baseline)": {},
        "--rate-limit 1e6/s": {"rate_limit": 1e6, "rate_limit_burst": 1_000_000},
        "--max-in-flight 64": {"max_in_flight": 64},
    }
    best = dict.fromkeys(settings, 0.0)
    names = list(settings)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # each goes first once
            limits = settings[name]
            with (
                BackgroundServer(create_app(root, SECRET, **limits)) as server,
                _client(server.url, cache / f"cost{names.index(name)}", TokenBucket()) as client,
            ):
                client.resolve("am://mortality@v0")  # warm: the rest are 304s
                start = time.perf_counter()
                for _ in range(requests):
                    client.resolve("am://mortality@v0")
                best[name] = max(best[name], requests / (time.perf_counter() - start))
    base = best["no limit (baseline)"]
    for name, rate in best.items():
        print(f"  {name:<22} {rate:8,.0f} requests/s   ratio {rate / base:5.2f}")


def pacing(root: Path, cache: Path, rate: float, n: int) -> None:
    """A paced client against a server that allows a little more."""
    with BackgroundServer(
        create_app(root, SECRET, rate_limit=rate * 1.25, rate_limit_burst=5)
    ) as server:
        limiter = TokenBucket(rate, 5, max_retries=0)
        with _client(server.url, cache / "paced", limiter) as client:
            start = time.perf_counter()
            for i in range(n):
                client.resolve(f"am://mortality@v{i % 50}")
            seconds = time.perf_counter() - start
    achieved = (n - 5) / seconds  # the first 5 are the burst
    print(
        f"client pacing: TokenBucket({rate:g}/s, burst 5), {n} tables against a server "
        f"allowing {rate * 1.25:g}/s: {achieved:.1f} requests/s past the burst "
        f"(ratio to target {achieved / rate:.3f}), 0 refused (max_retries 0)"
    )


def backoff(root: Path, cache: Path, rate: float, n: int) -> None:
    """An unpaced client against a limited server: it gets everything, by backing off."""
    with BackgroundServer(create_app(root, SECRET, rate_limit=rate, rate_limit_burst=5)) as server:
        limiter = RecordingRateLimiter(max_retries=50, base_delay=0.02, max_delay=0.05)
        # A RecordingRateLimiter's pacing is on a fake clock, but it does not pace (rate inf);
        # the client's backoff sleeps are real.
        with _client(server.url, cache / "unpaced", limiter) as client:
            start = time.perf_counter()
            for i in range(n):
                client.resolve(f"am://mortality@v{i % 50}")
            seconds = time.perf_counter() - start
    print(
        f"backoff: unpaced client, {n} tables against a server limited to {rate:g}/s: "
        f"{n / seconds:.1f} tables/s, {len(limiter.backoffs)} retries after 429"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # am_backoff warnings are expected in part 3: keep the output to the figures.
    configure_logging(LoggerConfig(min_level="ERROR"))
    with tempfile.TemporaryDirectory() as tmp:
        root = _root(Path(tmp) / "root", 50)
        cache = Path(tmp) / "cache"
        server_cost(root, cache, args.requests, args.rounds)
        pacing(root, cache, args.rate, int(args.rate * 3))
        backoff(root, cache, args.rate, int(args.rate * 2))


if __name__ == "__main__":
    main()
