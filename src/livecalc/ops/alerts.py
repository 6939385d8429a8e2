"""SLA results and alerts: a webhook POST or a local command, sent when a run ends.

An alert never fails the run and never holds it up past its own ``timeout_seconds`` of wall
time: a webhook retries with exponential backoff only within that budget and reads no
response body, a command's process group is killed at it. Every failure is logged
(``alert_failed``), the other alerts are sent all the same, and the run goes on. The message
carries no secret: errors are scrubbed of tokens, and URLs are logged without their user
info and query string.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from livecalc.log import get_logger
from livecalc.masking import redact_urls, scrub_text
from livecalc.ops.provenance import redact_url
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.operations import CommandAlert, WebhookAlert

if TYPE_CHECKING:
    import httpx

__all__ = ["alert_events", "alert_message", "send_alerts", "sla_results"]

_log = get_logger()


def sla_results(
    config: PipelineConfig, run_seconds: float, node_seconds: Mapping[str, float]
) -> list[dict[str, Any]]:
    """One row per SLA target (``run`` or a node id): limit, seconds taken, breached."""
    sla = config.sla
    if sla is None:
        return []
    rows = []
    targets = [("run", sla.run_seconds, run_seconds)] if sla.run_seconds is not None else []
    targets += [(k, v, node_seconds.get(k, 0.0)) for k, v in sla.nodes.items()]
    for target, limit, seconds in targets:
        assert limit is not None
        breached = seconds > limit
        rows.append(
            {"target": target, "limit_seconds": limit, "seconds": seconds, "breached": breached}
        )
        if breached:
            _log.warning("sla_breached", target=target, limit_seconds=limit, seconds=seconds)
    return rows


def alert_events(record: Mapping[str, Any]) -> list[str]:
    """What happened in a run, as alert events: failure, check_failed, sla_breach, success."""
    events = []
    if record["status"] in ("failed", "interrupted"):
        events.append("failure")
    if any(not c["passed"] for c in record.get("checks", [])):
        events.append("check_failed")
    if any(s["breached"] for s in record.get("sla", [])):
        events.append("sla_breach")
    if record["status"] == "succeeded":
        events.append("success")
    return events


def alert_message(record: Mapping[str, Any], store: str | None) -> dict[str, Any]:
    """The JSON an alert sends: what happened, what failed and why, where to look."""
    prov = record.get("provenance") or {}
    return {
        "run_id": record["run_id"],
        "status": record["status"],
        "events": alert_events(record),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "seconds": record.get("seconds"),
        "host": prov.get("host"),
        "config_path": prov.get("config_path"),
        "error": scrub_text(record["error"]) if record.get("error") else None,
        "failed_nodes": [
            {"node_id": n["node_id"], "error": scrub_text(str(n.get("error")))}
            for n in record.get("nodes", [])
            if n.get("status") == "failed"
        ],
        "failed_checks": [
            {k: c.get(k) for k in ("name", "kind", "severity", "value", "threshold", "message")}
            for c in record.get("checks", [])
            if not c["passed"]
        ],
        "sla_breaches": [s for s in record.get("sla", []) if s["breached"]],
        "store": store,
        "report": record.get("report_path"),
    }


def send_alerts(
    alerts: Sequence[WebhookAlert | CommandAlert], message: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Send each alert whose ``on`` events happened; one outcome per alert sent.

    Each alert is sent on its own: one that fails in any way (an error of ours included) is
    logged and recorded as not sent, and the next is sent all the same.
    """
    outcomes = []
    events = set(message["events"])
    body = json.dumps(message, default=str).encode()
    for alert in alerts:
        matched = sorted(events & set(alert.on))
        if not matched:
            continue
        try:
            if isinstance(alert, WebhookAlert):
                outcome = _post(alert, body)
            else:
                outcome = _command(alert, body)
        except Exception as exc:  # one alert's failure never stops the others
            error = type(exc).__name__  # its text may quote the URL or the command line
            _log.error("alert_failed", type=alert.type, error=error)
            outcome = {"type": alert.type, "sent": False, "error": error}
        outcome["events"] = matched
        outcomes.append(outcome)
    return outcomes


def _post(alert: WebhookAlert, body: bytes) -> dict[str, Any]:
    """POST ``body`` with retries, all of it within ``alert.timeout_seconds`` of wall time."""
    import anyio  # here: every run imports this module (sla_results), few send a webhook

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(_post_within_deadline, alert, body)
    # Called from async code (a notebook, a web service): the exchange gets a thread and an
    # event loop of its own, as a blocking call would.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, _post_within_deadline, alert, body).result()


async def _post_within_deadline(alert: WebhookAlert, body: bytes) -> dict[str, Any]:
    import anyio
    import httpx

    shown = redact_url(alert.url)
    error = "timed out"
    wait = alert.backoff_seconds
    # httpx's timeouts bound each read, not the exchange: a receiver trickling a byte per
    # second never trips them. The cancel scope is the deadline, whatever is under way.
    async with httpx.AsyncClient(timeout=alert.timeout_seconds) as client:
        with anyio.move_on_after(alert.timeout_seconds):
            for attempt in range(1, alert.retries + 2):
                error = "timed out"  # what stands if the deadline falls in this attempt
                try:
                    status = await _status_of_post(client, alert.url, body)
                except httpx.HTTPError as exc:
                    # Its text may quote the URL, query string and all: keep its type only.
                    error = type(exc).__name__
                else:
                    if status < 300:
                        _log.info("alert_sent", type="webhook", url=shown, attempt=attempt)
                        return {"type": "webhook", "url": shown, "sent": True, "attempts": attempt}
                    error = f"HTTP {status}"
                    if status < 500 and status not in (408, 429):
                        break  # a 4xx (bad URL, refused) will not heal with a retry
                _log.warning(
                    "alert_attempt_failed", type="webhook", url=shown, attempt=attempt, error=error
                )
                if attempt <= alert.retries:
                    await anyio.sleep(wait)
                    wait *= 2
    _log.error("alert_failed", type="webhook", url=shown, error=error)
    return {"type": "webhook", "url": shown, "sent": False, "error": error}


async def _status_of_post(client: httpx.AsyncClient, url: str, body: bytes) -> int:
    """The status of one POST; the response's body is never read (a receiver may send an
    endless one): only its head, which h11 caps at 64 KiB."""
    headers = {"Content-Type": "application/json", "User-Agent": "livecalc-alert"}
    async with client.stream("POST", url, content=body, headers=headers) as response:
        return response.status_code


def _command(alert: CommandAlert, body: bytes) -> dict[str, Any]:
    """Run the command with ``body`` on its standard input; sent when it exits 0 in time.

    The command runs in a process group of its own, killed whole at the timeout (a shell's
    children included). Its input and error output are files, not pipes: a background child
    that keeps them open cannot make a command that has exited look as if it hangs.
    Processes it leaves behind after exiting in time are its own business.
    """
    program = redact_urls(alert.argv[0])
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stderr:
        stdin.write(body)
        stdin.seek(0)
        try:
            proc = subprocess.Popen(
                alert.argv,
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        except OSError as exc:
            error = exc.strerror or type(exc).__name__
        else:
            try:
                code = proc.wait(timeout=alert.timeout_seconds)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                error = f"timed out after {alert.timeout_seconds:g} s"
            else:
                if code == 0:
                    _log.info("alert_sent", type="command", program=program)
                    return {"type": "command", "program": program, "sent": True}
                stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - 200))
                # curl and friends quote the URL they were given, token and all.
                tail = redact_urls(scrub_text(stderr.read().decode(errors="replace").strip()))
                error = f"exit {code}" + (f": {tail}" if tail else "")
    _log.error("alert_failed", type="command", program=program, error=error)
    return {"type": "command", "program": program, "sent": False, "error": error}


def _kill_group(pgid: int) -> None:
    """SIGKILL every process of the group (the command's own, started above)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
