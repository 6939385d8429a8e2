"""What liveness costs: a run's claim on its run id, and ``runs list`` telling dead runs.

1. Claim: ``RunLock.acquire`` + ``release`` (the lock file a run holds while it runs)
   against one ``RunStore.record`` of a small record (what every run does at least once:
   into the store's journal once the process has opened the store), measured here in the
   same run.
2. ``runs list``: ``RunStore.list`` of 200 finished records against 200 records left
   ``running`` by killed runs (each looked up in its lock file): the ratio is the cost of
   telling them dead.

Usage: python benchmarks/bench_liveness.py [--repeats 200] [--records 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from livecalc.ops.liveness import LOCK_FILE, RunLock
from livecalc.ops.store import RunStore


def _record(run_id: str, status: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "started_at": "2026-12-07T22:00:00Z",
        "finished_at": None if status == "running" else "2026-12-07T22:00:01Z",
        "status": status,
        "seconds": None if status == "running" else 1.0,
        "source": "bench",
        "provenance": {"host": "bench", "pid": 1, "config_path": "/x/config.json"},
    }


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def claim_against_store(folder: Path, repeats: int) -> None:
    store = RunStore(folder / "claim")
    claims, writes = [], []
    for i in range(repeats):
        start = time.perf_counter()
        lock = RunLock.acquire(folder / "claim" / "runs", f"run-{i}")
        claims.append(time.perf_counter() - start)
        time.sleep(0.005)  # a run holds its claim while it runs
        start = time.perf_counter()
        lock.release()
        claims[-1] += time.perf_counter() - start
        start = time.perf_counter()
        store.record(_record(f"run-{i}", "succeeded"))
        writes.append(time.perf_counter() - start)
    claim, write = _median_ms(claims), _median_ms(writes)
    print(
        f"claim + release {claim:.3f} ms, store record {write:.3f} ms (medians of {repeats}): "
        f"ratio {claim / write:.3f}"
    )


def list_with_dead_runs(folder: Path, records: int, repeats: int) -> None:
    finished, dead = RunStore(folder / "finished"), RunStore(folder / "dead")
    for i in range(records):
        finished.record(_record(f"run-{i}", "succeeded"))
        dead.record(_record(f"run-{i}", "running"))
        # What a SIGKILLed run leaves: its lock file, no longer locked.
        (folder / "dead" / "runs" / f"run-{i}").mkdir(parents=True)
        (folder / "dead" / "runs" / f"run-{i}" / LOCK_FILE).write_text('{"pid": 1}')
    times: dict[str, list[float]] = {"finished": [], "dead": []}
    for _ in range(max(3, repeats // 20)):
        for name, store in (("finished", finished), ("dead", dead)):
            start = time.perf_counter()
            frame = store.list()
            times[name].append(time.perf_counter() - start)
    assert set(frame["status"]) == {"dead"}
    base, probed = _median_ms(times["finished"]), _median_ms(times["dead"])
    print(
        f"runs list of {records}: finished {base:.1f} ms, all dead {probed:.1f} ms: "
        f"ratio {probed / base:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        claim_against_store(Path(tmp), args.repeats)
        list_with_dead_runs(Path(tmp), args.records, args.repeats)


if __name__ == "__main__":
    main()
