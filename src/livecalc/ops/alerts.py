"""SLA results and alerts: a webhook POST or a local command, sent when a run ends.

An alert never fails the run and never holds it up past its own ``timeout_seconds``: a
webhook retries with exponential backoff only within that budget, a command is killed at it.
Every failure is logged (``alert_failed``) and the run goes on. The message carries no
secret: errors are scrubbed of tokens, and URLs are logged without their query string.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from livecalc.log import get_logger
from livecalc.masking import scrub_text
from livecalc.ops.provenance import redact_url
from livecalc.pipeline.config import PipelineConfig
from livecalc.pipeline.operations import CommandAlert, WebhookAlert

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
    """Send each alert whose ``on`` events happened; one outcome per alert sent."""
    outcomes = []
    events = set(message["events"])
    body = json.dumps(message, default=str).encode()
    for alert in alerts:
        matched = sorted(events & set(alert.on))
        if not matched:
            continue
        outcome = _post(alert, body) if isinstance(alert, WebhookAlert) else _command(alert, body)
        outcome["events"] = matched
        outcomes.append(outcome)
    return outcomes


def _post(alert: WebhookAlert, body: bytes) -> dict[str, Any]:
    import httpx

    shown = redact_url(alert.url)
    deadline = time.monotonic() + alert.timeout_seconds
    wait = alert.backoff_seconds
    error = ""
    for attempt in range(1, alert.retries + 2):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            response = httpx.post(
                alert.url,
                content=body,
                headers={"Content-Type": "application/json", "User-Agent": "livecalc-alert"},
                timeout=left,
            )
            if response.status_code < 300:
                _log.info("alert_sent", type="webhook", url=shown, attempt=attempt)
                return {"type": "webhook", "url": shown, "sent": True, "attempts": attempt}
            error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                break  # a 4xx (bad URL, refused) will not heal with a retry
        except httpx.HTTPError as exc:
            # The exception text may quote the URL, query string and all: keep its type only.
            error = type(exc).__name__
        _log.warning(
            "alert_attempt_failed", type="webhook", url=shown, attempt=attempt, error=error
        )
        if attempt <= alert.retries:
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            wait *= 2
    _log.error("alert_failed", type="webhook", url=shown, error=error or "timed out")
    return {"type": "webhook", "url": shown, "sent": False, "error": error or "timed out"}


def _command(alert: CommandAlert, body: bytes) -> dict[str, Any]:
    program = alert.argv[0]
    try:
        done = subprocess.run(
            alert.argv,
            input=body,
            capture_output=True,
            timeout=alert.timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        error = f"timed out after {alert.timeout_seconds:g} s"
    except OSError as exc:
        error = exc.strerror or str(exc)
    else:
        if done.returncode == 0:
            _log.info("alert_sent", type="command", program=program)
            return {"type": "command", "program": program, "sent": True}
        tail = scrub_text(done.stderr.decode(errors="replace").strip()[-200:])
        error = f"exit {done.returncode}" + (f": {tail}" if tail else "")
    _log.error("alert_failed", type="command", program=program, error=error)
    return {"type": "command", "program": program, "sent": False, "error": error}
