"""SLA and alerts: webhooks to a real HTTP receiver on loopback, commands, secrets kept out."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from livecalc.cli.app import app
from livecalc.io.generate import generate_policies, write_policies
from livecalc.ops.store import RunStore

PLUGIN = "livecalc.testing:register_testing_engines"
SECRET = "s3cr3t-t0ken-value"


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.bodies.append(body)
                receiver.paths.append(self.path)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _config(tmp_path: Path, alerts: list[dict[str, Any]], **extra: Any) -> Path:
    write_policies(tmp_path / "policies.parquet", generate_policies(60, seed=4))
    raw = {
        "plugins": [PLUGIN],
        "data_sources": {"policies": {"path": "policies.parquet"}},
        "engines": [
            {"id": "a", "type": "test_echo", "inputs": ["policies"], "outputs": ["a_out"]},
        ],
        "output": {"path": "out/a_out.parquet"},
        "run": {"chunk_size": 30},
        "alerts": alerts,
        **extra,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def _run(config: Path, log: Path) -> Any:
    return CliRunner().invoke(app, ["run", str(config), "--no-progress", "--log-file", str(log)])


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _webhook(url: str, **kw: Any) -> dict[str, Any]:
    return {
        "type": "webhook",
        "url": url,
        "on": ["failure", "check_failed", "sla_breach"],
        "backoff_seconds": 0.05,
        **kw,
    }


class TestWebhook:
    def test_failure_alert_arrives_with_the_error(self, tmp_path: Path, receiver: Receiver) -> None:
        """A failed node: the receiver gets run id, status and the node's error; exit 1."""
        config = _config(tmp_path, [_webhook(receiver.url)])
        raw = json.loads(config.read_text())
        raw["engines"][0].update(type="test_fail_n", config={"n": 9})
        config.write_text(json.dumps(raw))

        result = _run(config, tmp_path / "log.jsonl")

        assert 1 == result.exit_code
        [body] = receiver.bodies
        assert RunStore().run_ids()[0] == body["run_id"]
        assert ("failed", ["failure"]) == (body["status"], body["events"])
        assert "planned failure" in body["failed_nodes"][0]["error"]
        assert str(RunStore().file) == body["store"]

    def test_check_failed_alert_lists_the_check(self, tmp_path: Path, receiver: Receiver) -> None:
        """A failing check: the alert names it with its value and threshold."""
        checks = [{"kind": "row_count", "name": "rows", "dataset": "a_out", "equals": 61}]
        config = _config(tmp_path, [_webhook(receiver.url)], checks=checks)

        result = _run(config, tmp_path / "log.jsonl")

        assert 1 == result.exit_code
        [body] = receiver.bodies
        assert ["check_failed"] == body["events"]
        assert [("rows", 60, 61)] == [
            (c["name"], c["value"], c["threshold"]) for c in body["failed_checks"]
        ]

    def test_sla_breach_alert_and_record(self, tmp_path: Path, receiver: Receiver) -> None:
        """A run past its SLA: recorded as breached, alerted, and the run still exits 0."""
        sla = {"run_seconds": 1e-6, "nodes": {"a": 1e-6}}
        config = _config(tmp_path, [_webhook(receiver.url)], sla=sla)

        result = _run(config, tmp_path / "log.jsonl")
        record = RunStore().get(RunStore().run_ids()[0])

        assert 0 == result.exit_code
        assert "SLA breached" in result.output
        [body] = receiver.bodies
        assert ["sla_breach", "success"] == body["events"]
        assert ["run", "a"] == [s["target"] for s in body["sla_breaches"]]
        assert [True, True] == [s["breached"] for s in record["sla"]]

    def test_success_is_sent_only_when_asked(self, tmp_path: Path, receiver: Receiver) -> None:
        """A clean run alerts only the webhooks that listen for success."""
        alerts = [_webhook(receiver.url), _webhook(receiver.url + "2", on=["success"])]
        config = _config(tmp_path, alerts)

        _run(config, tmp_path / "log.jsonl")

        assert ["/hook2"] == receiver.paths
        assert ["success"] == receiver.bodies[0]["events"]

    def test_500_then_200_is_retried(self, tmp_path: Path) -> None:
        """A receiver answering 500 then 200 gets the alert on the second attempt."""
        receiver = Receiver(statuses=[500])
        try:
            config = _config(tmp_path, [_webhook(receiver.url, on=["success"])])
            log = tmp_path / "log.jsonl"

            result = _run(config, log)
        finally:
            receiver.close()

        assert 0 == result.exit_code
        assert 2 == len(receiver.bodies)
        sent = [e for e in _events(log) if e["event"] == "alert_sent"]
        assert [2] == [e["attempt"] for e in sent]
        assert ["HTTP 500"] == [
            e["error"] for e in _events(log) if e["event"] == "alert_attempt_failed"
        ]

    def test_receiver_down_changes_nothing_and_is_logged(self, tmp_path: Path) -> None:
        """Nobody listening: same exit code, alert_failed logged, the run held up < timeout."""
        url = f"http://127.0.0.1:{_free_port()}/hook?token={SECRET}"
        config = _config(tmp_path, [_webhook(url, on=["success"], timeout_seconds=2.0)])
        log = tmp_path / "log.jsonl"

        start = time.perf_counter()
        result = _run(config, log)
        seconds = time.perf_counter() - start

        assert 0 == result.exit_code
        failed = [e for e in _events(log) if e["event"] == "alert_failed"]
        assert 1 == len(failed)
        assert seconds < 30
        assert SECRET not in log.read_text()
        assert SECRET not in json.dumps(RunStore().get(RunStore().run_ids()[0]))

    def test_secret_query_string_never_reaches_logs_or_body(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        """The webhook's token travels in its URL only: not in logs, store or message."""
        url = f"{receiver.url}?token={SECRET}"
        config = _config(tmp_path, [_webhook(url, on=["success"])])
        log = tmp_path / "log.jsonl"

        _run(config, log)

        assert [f"/hook?token={SECRET}"] == receiver.paths
        assert SECRET not in json.dumps(receiver.bodies)
        assert SECRET not in log.read_text()
        assert SECRET not in json.dumps(RunStore().get(RunStore().run_ids()[0]))


class TestCommand:
    def test_command_gets_the_json_on_stdin(self, tmp_path: Path) -> None:
        """A command alert runs the program with the message on its standard input."""
        target = tmp_path / "alert.json"
        argv = [
            sys.executable,
            "-c",
            f"import sys; open({str(target)!r}, 'w').write(sys.stdin.read())",
        ]
        config = _config(tmp_path, [{"type": "command", "argv": argv, "on": ["success"]}])

        result = _run(config, tmp_path / "log.jsonl")

        assert 0 == result.exit_code
        body = json.loads(target.read_text())
        assert ("succeeded", ["success"]) == (body["status"], body["events"])

    def test_failing_command_is_logged_not_fatal(self, tmp_path: Path) -> None:
        """A command that exits 3 is logged as alert_failed; the run's exit code stays 0."""
        argv = [sys.executable, "-c", "import sys; sys.exit(3)"]
        config = _config(tmp_path, [{"type": "command", "argv": argv, "on": ["success"]}])
        log = tmp_path / "log.jsonl"

        result = _run(config, log)

        assert 0 == result.exit_code
        assert ["exit 3"] == [e["error"] for e in _events(log) if e["event"] == "alert_failed"]
