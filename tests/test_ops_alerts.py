"""SLA and alerts: webhooks to a real HTTP receiver on loopback, commands, secrets kept out."""

from __future__ import annotations

import contextlib
import json
import os
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


class RawServer:
    """A TCP server on 127.0.0.1 that answers each connection with ``answer(conn, stop)``
    in a thread of its own: a misbehaving receiver, written byte by byte."""

    def __init__(self, answer: Any) -> None:
        self.stop = threading.Event()
        self.sent = 0  # bytes written to clients, all connections together
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._answer = answer
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook?token={SECRET}"
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def count(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request (one small POST)
            with contextlib.suppress(OSError):  # the client hung up: what a bounded one does
                self._answer(self, conn)

    def close(self) -> None:
        self.stop.set()
        self._accepting.join()
        for thread in self._threads:
            thread.join()
        self._sock.close()


def _trickle_head(server: RawServer, conn: socket.socket) -> None:
    """A status line, then a header one byte every 0.1 s for at most 20 s: never a whole head."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(200):
        if server.stop.wait(0.1):
            return
        conn.sendall(b"a")
        server.count(1)


def _trickle_body(server: RawServer, conn: socket.socket) -> None:
    """A whole 200 head announcing 1 GB, then the body one byte every 0.1 s (at most 20 s)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    for _ in range(200):
        if server.stop.wait(0.1):
            return
        conn.sendall(b"a")
        server.count(1)


HUGE_BODY = 256 * 2**20


def _huge_body(server: RawServer, conn: socket.socket) -> None:
    """A 200 announcing 2 GiB, then zeros as fast as the client takes them (256 MiB at most,
    so that a client reading it all stays bounded too)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n")
    block = bytes(2**20)
    for _ in range(HUGE_BODY // len(block)):
        if server.stop.is_set():
            return
        conn.sendall(block)
        server.count(len(block))


def _alert(**fields: Any) -> Any:
    from livecalc.pipeline.operations import CommandAlert, WebhookAlert

    model = WebhookAlert if fields["type"] == "webhook" else CommandAlert
    return model.model_validate({"on": ["success"], **fields})


def _send(*alerts: Any) -> tuple[list[dict[str, Any]], float]:
    from livecalc.ops.alerts import send_alerts

    message = {"run_id": "r1", "status": "succeeded", "events": ["success"]}
    start = time.monotonic()
    outcomes = send_alerts(alerts, message)
    return outcomes, time.monotonic() - start


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


class TestWebhookDeadline:
    @pytest.mark.parametrize("raw_server", [_trickle_head], indirect=True)
    def test_a_trickled_head_is_cut_at_the_timeout(self, raw_server: RawServer) -> None:
        """A receiver trickling its response head never holds an alert past its timeout: the
        alert is not sent, "timed out", well before the receiver's 20 s of trickle."""
        alert = _alert(type="webhook", url=raw_server.url, timeout_seconds=1.0, retries=0)

        [outcome], seconds = _send(alert)

        assert (False, "timed out") == (outcome["sent"], outcome["error"])
        assert seconds < 10, seconds
        assert SECRET not in json.dumps(outcome)

    @pytest.mark.parametrize("raw_server", [_trickle_head], indirect=True)
    def test_retries_share_the_deadline(self, raw_server: RawServer) -> None:
        """Retries with backoff do not stretch the budget: three of them still end in time."""
        alert = _alert(
            type="webhook", url=raw_server.url, timeout_seconds=1.0, retries=3, backoff_seconds=0.1
        )

        [outcome], seconds = _send(alert)

        assert False is outcome["sent"]
        assert seconds < 10, seconds

    @pytest.mark.parametrize("raw_server", [_trickle_body], indirect=True)
    def test_a_trickled_body_is_not_waited_for(self, raw_server: RawServer) -> None:
        """A 200 whose body trickles is delivered at its status line: the body is not read."""
        alert = _alert(type="webhook", url=raw_server.url, timeout_seconds=5.0)

        [outcome], seconds = _send(alert)

        assert (True, 1) == (outcome["sent"], outcome["attempts"])
        assert seconds < 10, seconds

    @pytest.mark.parametrize("raw_server", [_huge_body], indirect=True)
    def test_a_huge_response_is_not_read(self, raw_server: RawServer) -> None:
        """A 200 with a 2 GiB body is delivered without reading it: the receiver gets rid of
        no more than its socket buffers hold before the alert hangs up."""
        alert = _alert(type="webhook", url=raw_server.url, timeout_seconds=5.0)

        [outcome], _ = _send(alert)
        raw_server.close()  # its last write has failed or finished: the count is final

        assert (True, None) == (outcome["sent"], outcome.get("error"))  # the error, if not sent
        assert raw_server.sent < 32 * 2**20, raw_server.sent


class TestWebhookFromAsyncCode:
    def test_an_alert_sent_from_a_running_event_loop(self, receiver: Receiver) -> None:
        """send_alerts called inside async code (a notebook, a web service) still delivers:
        the exchange runs on an event loop of its own."""
        import asyncio

        alert = _alert(type="webhook", url=receiver.url)

        async def from_async_code() -> tuple[list[dict[str, Any]], float]:
            return _send(alert)

        [outcome], _ = asyncio.run(from_async_code())

        assert (True, None) == (outcome["sent"], outcome.get("error"))  # the error, if not sent
        assert ["r1"] == [b["run_id"] for b in receiver.bodies]


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    """Whether process ``pid`` has gone (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _kill(pid_file: Path) -> None:
    """SIGKILL the process whose pid a test's command wrote (cleanup of a failing test)."""
    import signal

    if pid_file.is_file() and pid_file.read_text().strip():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


class TestCommandProcessGroup:
    def test_a_timeout_kills_the_grandchildren(self, tmp_path: Path) -> None:
        """A command past its timeout is killed with everything it started: the grandchild
        a shell left sleeping is gone too."""
        pid_file = tmp_path / "grandchild.pid"
        script = f'sleep 30 & echo $! > "{pid_file}"; sleep 30'
        alert = _alert(type="command", argv=["sh", "-c", script], timeout_seconds=3.0)
        try:
            [outcome], seconds = _send(alert)

            assert (False, "timed out after 3 s") == (outcome["sent"], outcome["error"])
            assert _wait_gone(int(pid_file.read_text()))
            assert seconds < 10, seconds
        finally:
            _kill(pid_file)

    def test_delivery_is_judged_by_the_exit_status(self, tmp_path: Path) -> None:
        """A command that reads its input and exits 0, leaving a child that holds its output
        open, was delivered: sent, at once, not "timed out"."""
        pid_file, target = tmp_path / "child.pid", tmp_path / "alert.json"
        script = f'cat > "{target}"; sleep 30 & echo $! > "{pid_file}"'
        alert = _alert(type="command", argv=["sh", "-c", script], timeout_seconds=5.0)
        try:
            [outcome], seconds = _send(alert)

            assert (True, None) == (outcome["sent"], outcome.get("error"))  # the error, if not sent
            assert "r1" == json.loads(target.read_text())["run_id"]
            assert seconds < 5, seconds
        finally:
            _kill(pid_file)

    def test_a_failing_commands_error_output_is_redacted(self) -> None:
        """The stderr a failing command leaves (curl quoting its URL) is kept without the
        URL's password and token."""
        script = f"echo 'curl: (7) https://svc:{SECRET}@hooks.example/x?token={SECRET}' >&2; exit 7"
        alert = _alert(type="command", argv=["sh", "-c", script])

        [outcome], _ = _send(alert)

        assert "exit 7: curl: (7) https://***@hooks.example/x?..." == outcome["error"]


class TestEveryAlertIsSent:
    def test_one_alert_failing_does_not_stop_the_next(self, receiver: Receiver) -> None:
        """An alert that raises (a command line Popen refuses, in a model built without
        validation) is recorded as not sent; the webhook after it is still sent."""
        from livecalc.pipeline.operations import CommandAlert

        broken = CommandAlert.model_construct(
            type="command", argv=["tr\x00ue"], on=["success"], timeout_seconds=5.0
        )
        webhook = _alert(type="webhook", url=receiver.url)

        outcomes, _ = _send(broken, webhook)

        assert [(False, "ValueError"), (True, None)] == [
            (o["sent"], o.get("error")) for o in outcomes
        ]
        assert ["r1"] == [b["run_id"] for b in receiver.bodies]


class TestAlertsAfterTheReport:
    def test_a_report_that_fails_does_not_stop_the_alerts(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        """The report cannot be written (its folder became a file while the run ran): the run
        raises that error, and the alert was sent all the same, pointing at no report."""
        import livecalc

        config = _config(tmp_path, [_webhook(receiver.url, on=["success"])])
        reports = tmp_path / "reports"
        reports.mkdir()

        def block_the_report(event: str, node_id: str, **info: Any) -> None:
            if event == "node_finished":
                reports.rmdir()
                reports.write_text("a file where the report's folder was")

        with pytest.raises(OSError):
            livecalc.run(config, report=reports / "run.html", progress=block_the_report)

        [body] = receiver.bodies
        assert ("succeeded", None) == (body["status"], body["report"])


def _validate(tmp_path: Path, **blocks: Any) -> Any:
    config = _config(tmp_path, blocks.pop("alerts", []), **blocks)
    return CliRunner().invoke(app, ["validate", str(config)])


PASSWORD = "Pa55w0rd-of-the-hook"


class TestAlertConfig:
    @pytest.mark.parametrize("seconds", [3e6, 1e300, float("inf"), float("nan")])
    @pytest.mark.parametrize("kind", ["webhook", "command"])
    def test_a_timeout_past_a_day_or_not_finite_is_refused(
        self, tmp_path: Path, kind: str, seconds: float
    ) -> None:
        """An alert's timeout of 3e6 s, 1e300, Infinity or NaN is refused at validation, on
        one line naming its JSON path (exit 2)."""
        where = {"url": "http://127.0.0.1:9/hook"} if kind == "webhook" else {"argv": ["true"]}
        alert = {"type": kind, **where, "timeout_seconds": seconds}

        result = _validate(tmp_path, alerts=[alert])

        assert 2 == result.exit_code, result.output
        [line] = result.output.strip().splitlines()
        assert line.startswith("error: alerts[0].timeout_seconds: ")

    @pytest.mark.parametrize(
        "alert",
        [
            {"type": "webhok", "url": f"https://svc:{PASSWORD}@hooks.example/x?token={SECRET}"},
            {"type": "webhook", "url": f"ftp://svc:{PASSWORD}@hooks.example/x?token={SECRET}"},
            {"type": "webhook", "url": f"https://svc:{PASSWORD}@hooks.example/x?token={SECRET}\0"},
            {"type": "webhook", "url": f"https://svc:{PASSWORD}@hooks.example:99999/?t={SECRET}"},
            {"type": "webhook", "url": f"https://svc:{PASSWORD}@hooks.example/?t={SECRET}\ud800"},
            {"type": "webhook", "url": f"https://svc:{PASSWORD}@/x?token={SECRET}"},
            {"type": "webhook", "url": f"https://svc:{PASSWORD}@h/?token={SECRET}", "on": "x"},
        ],
        ids=["tag", "scheme", "nul", "port", "surrogate", "no_host", "other_key"],
    )
    def test_config_errors_never_show_the_webhooks_secrets(
        self, tmp_path: Path, alert: dict[str, Any]
    ) -> None:
        """A bad alert is refused naming its path, its URL quoted without password or token."""
        result = _validate(tmp_path, alerts=[alert])

        assert 2 == result.exit_code, result.output
        assert result.output.startswith("error: alerts[0]"), result.output
        assert PASSWORD not in result.output
        assert SECRET not in result.output
