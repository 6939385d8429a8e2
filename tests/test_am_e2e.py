"""End to end: ``livecalc am serve``, ``livecalc am token`` and ``livecalc run`` as processes.

A pipeline whose projection reads its mortality table as ``am://mortality-standard@v2.1``,
with the AM address and token from the environment, against a real server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from livecalc.assumptions.client import resolve_reference
from livecalc.assumptions.credentials import AMCredentials
from livecalc.assumptions.server import BackgroundServer, create_app, issue_token
from livecalc.io.generate import generate_policies, write_policies

SECRET = "e2e-secret-of-at-least-thirty-two-characters"
OTHER_SECRET = "another-secret-of-at-least-32-characters"
LIVECALC = str(Path(sys.executable).with_name("livecalc"))
MORTALITY = (
    Path(__file__).parents[1] / "src" / "livecalc" / "data" / "mortality_gompertz_makeham.csv"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECALC_")}
    # HOME points into the test folder, so no real ~/.livecalc/credentials.json is read.
    # COLUMNS: rich wraps error lines at the terminal width, splitting long paths.
    return {**env, "HOME": str(home), "LIVECALC_AM_SECRET": SECRET, "COLUMNS": "1000"}


class AMProcess:
    """``livecalc am serve`` in a subprocess on a free loopback port."""

    def __init__(self, root: Path, home: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self._process = subprocess.Popen(
            [LIVECALC, "am", "serve", "--root", str(root), "--port", str(self.port)],
            env=_base_env(home),
            stdout=self._log,
            stderr=self._log,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + "/health")
                return
            except httpx.ConnectError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
        self._log.close()


@dataclass
class Workspace:
    """A folder with an AM root, policies and a pipeline config using am://."""

    folder: Path
    root: Path
    home: Path
    config: Path


@dataclass
class Run:
    """The outcome of one ``livecalc run``."""

    returncode: int
    stdout: str
    stderr: str
    log_text: str

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines with this event name."""
        lines = [json.loads(line) for line in self.log_text.splitlines() if line.strip()]
        return [line for line in lines if line["event"] == name]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Sample policies, the packaged mortality table published as v2.1, and the config."""
    folder = tmp_path_factory.mktemp("e2e")
    root = folder / "am"
    (root / "mortality-standard").mkdir(parents=True)
    shutil.copy(MORTALITY, root / "mortality-standard" / "v2.1.csv")
    home = folder / "home"
    home.mkdir()
    write_policies(folder / "policies.parquet", generate_policies(200, seed=7))
    config = {
        "data_sources": {"policies": {"type": "parquet", "path": "policies.parquet"}},
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
    }
    (folder / "pipeline.json").write_text(json.dumps(config), encoding="utf-8")
    return Workspace(folder, root, home, folder / "pipeline.json")


@pytest.fixture(scope="module")
def server(workspace: Workspace) -> Iterator[AMProcess]:
    """The AM serving the workspace's root for the whole module."""
    running = AMProcess(workspace.root, workspace.home, workspace.folder / "server.log")
    yield running
    running.stop()


def _token(user: str, home: Path) -> str:
    """A token from ``livecalc am token`` (the secret from the environment)."""
    done = subprocess.run(
        [LIVECALC, "am", "token", "--user", user],
        env=_base_env(home),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip()


def _run(ws: Workspace, url: str, token: str, cache: Path, log: Path, *options: str) -> Run:
    """``livecalc run`` with the AM address, token and cache folder in the environment."""
    env = {
        **_base_env(ws.home),
        "LIVECALC_AM_URL": url,
        "LIVECALC_AM_TOKEN": token,
        "LIVECALC_AM_CACHE_DIR": str(cache),
    }
    del env["LIVECALC_AM_SECRET"]  # the runner has the token only, never the server's secret
    done = subprocess.run(
        [LIVECALC, "run", str(ws.config), "--log-file", str(log), "--no-progress", *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log_text = log.read_text(encoding="utf-8") if log.exists() else ""
    return Run(done.returncode, done.stdout, done.stderr, log_text)


def _leaks(token: str, run: Run, *paths: Path) -> list[str]:
    """Where the token's text appears: stdout, stderr, the log, other files."""
    places = {"stdout": run.stdout, "stderr": run.stderr, "log": run.log_text}
    places.update({p.name: p.read_text(encoding="utf-8") for p in paths if p.exists()})
    return [name for name, text in places.items() if token in text]


class TestPipelineWithAssumptionsManager:
    """A pipeline reading its mortality table from a live AM."""

    def test_run_resolves_the_table_and_logs_it(
        self, workspace: Workspace, server: AMProcess, tmp_path: Path
    ) -> None:
        """The run succeeds, logs assumption_resolved with name, version and rows, leaks nothing."""
        token = _token("alice", workspace.home)

        run = _run(workspace, server.url, token, tmp_path / "cache", tmp_path / "run.log")

        (event,) = run.events("assumption_resolved")
        assert (run.returncode, event["assumption_name"], event["resolved_version"]) == (
            0,
            "mortality-standard",
            "v2.1",
        )
        assert (event["rows_loaded"], event["run_id"] != "") == (121, True)
        assert _leaks(token, run, workspace.folder / "server.log") == []

    def test_run_store_records_the_resolved_version(
        self, workspace: Workspace, server: AMProcess, tmp_path: Path
    ) -> None:
        """The run store records the am:// reference with the version the AM resolved."""
        from livecalc.ops.store import RunStore

        token = _token("alice", workspace.home)

        run = _run(workspace, server.url, token, tmp_path / "cache", tmp_path / "run.log")
        store = RunStore(workspace.home / ".livecalc")
        record = store.get(store.run_ids()[0])

        assert 0 == run.returncode
        assert [("am://mortality-standard@v2.1", "mortality-standard", "v2.1")] == [
            (a["reference"], a["name"], a["version"]) for a in record["provenance"]["assumptions"]
        ]
        assert token not in json.dumps(record)

    def test_worker_processes_log_into_the_run_log(
        self, workspace: Workspace, server: AMProcess, tmp_path: Path
    ) -> None:
        """With --executor processes and two replicas, each worker resolves the table once and
        logs assumption_resolved with the run's run_id; so does the parent, once, pinning the
        version in the run's checkpoint (a resume refuses another)."""
        token = issue_token(SECRET, "alice")

        run = _run(
            workspace,
            server.url,
            token,
            tmp_path / "cache",
            tmp_path / "run.log",
            "--executor",
            "processes",
            "--parallelism",
            "2",
        )

        events = run.events("assumption_resolved")
        (started,) = run.events("run_started")
        assert (run.returncode, len(events), {e["run_id"] for e in events}, _leaks(token, run)) == (
            0,
            3,
            {started["run_id"]},
            [],
        )

    def test_expired_token_is_refreshed_automatically(
        self, workspace: Workspace, server: AMProcess, tmp_path: Path
    ) -> None:
        """A token that expired a minute ago is refreshed through the AM and the run succeeds."""
        expired = issue_token(SECRET, "alice", ttl_seconds=-60)

        run = _run(workspace, server.url, expired, tmp_path / "cache", tmp_path / "run.log")

        assert (run.returncode, len(run.events("token_refreshed")), _leaks(expired, run)) == (
            0,
            1,
            [],
        )

    def test_forged_token_fails_with_a_clear_401(
        self, workspace: Workspace, server: AMProcess, tmp_path: Path
    ) -> None:
        """A forged token stops the run with exit code 2 and a 401 message, token not shown."""
        forged = issue_token(OTHER_SECRET, "mallory")

        run = _run(workspace, server.url, forged, tmp_path / "cache", tmp_path / "run.log")

        stderr = run.stderr
        assert (run.returncode, "answered 401" in stderr, "forged" in stderr) == (
            2,
            True,
            True,
        )
        assert _leaks(forged, run, workspace.folder / "server.log") == []


class TestOffline:
    """Runs while the AM is down."""

    def test_warm_cache_runs_offline_with_a_warning(
        self, workspace: Workspace, tmp_path: Path
    ) -> None:
        """With the table cached, a run while the server is down succeeds and warns."""
        token = issue_token(SECRET, "alice")
        # Warm the cache in this process, from a server that is then stopped for good.
        with BackgroundServer(create_app(workspace.root, SECRET)) as own:
            url = own.url
            creds = AMCredentials(am_url=url, am_token=SecretStr(token), cache_dir=str(tmp_path))
            resolve_reference("am://mortality-standard@v2.1", creds)

        offline = _run(workspace, url, token, tmp_path, tmp_path / "offline.log")

        (warning,) = offline.events("warning")
        (resolved,) = offline.events("assumption_resolved")
        assert (offline.returncode, warning["reason"], resolved["from_cache"]) == (
            0,
            "am_unreachable",
            True,
        )
        assert _leaks(token, offline) == []

    def test_cold_cache_fails_with_exit_code_2(self, workspace: Workspace, tmp_path: Path) -> None:
        """With nothing cached and no server, the run stops with exit 2 and one clear line."""
        url = f"http://127.0.0.1:{_free_port()}"
        token = issue_token(SECRET, "alice")

        run = _run(workspace, url, token, tmp_path / "cold", tmp_path / "run.log")

        stderr = run.stderr
        assert (run.returncode, "cannot reach the Assumptions Manager" in stderr) == (2, True)
        assert "config.mortality_table: " in stderr  # the error names the key of the reference
        assert ("Traceback" in run.stderr, _leaks(token, run)) == (False, [])


class TestCredentialsFile:
    """The credentials file as the run's source."""

    def test_file_readable_by_others_stops_the_run_with_the_fix(
        self, workspace: Workspace, tmp_path: Path
    ) -> None:
        """A ~/.livecalc/credentials.json others can read: exit 2 and the chmod to run."""
        home = tmp_path / "home"
        path = home / ".livecalc" / "credentials.json"
        path.parent.mkdir(parents=True)
        token = issue_token(SECRET, "alice")
        path.write_text(json.dumps({"am_url": "http://127.0.0.1:9", "am_token": token}), "utf-8")
        path.chmod(0o644)
        done = subprocess.run(
            [LIVECALC, "run", str(workspace.config), "--no-progress"],
            env=_base_env(home),
            capture_output=True,
            text=True,
            timeout=300,
        )

        stderr = done.stderr
        assert (done.returncode, f"chmod 600 {path}" in stderr, token in done.stderr) == (
            2,
            True,
            False,
        )
