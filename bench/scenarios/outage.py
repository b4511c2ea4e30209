"""Outage: every delivery fails for good, and what operators are told about it.

The throughput scenario's fan-out (10 automations on each of 20 webhooks, alias moves back to back) against an
endpoint that answers 400 to everything, so each delivery fails for good at its first attempt. The team's admin has
an address on a loopback mail server (aiosmtpd, in this process) and the team an operational webhook (a loopback
receiver) marked ``alerts``. Reported: failed deliveries/s and CPU per delivery (what recording every failure for the
alerts costs), how many e-mails and operational requests the outage made (one e-mail, one ``delivery.failed`` per
webhook: 21 messages for 20,000 failures) and how long after the last failure the e-mail came, with the production
grouping settings (``ALERT_GROUP_WAIT`` 30 s, the beat's flush every 5 s). Against code without alerts the scenario
runs too, and reports only the deliveries.
"""

from __future__ import annotations

import json
import time

from harness.api import ApiError
from harness.receiver import Receiver, ReceiverProcess
from harness.smtp import MailServer
from harness.stack import Stack

from ..api import admin_api, fan_out, team_create
from ..report import Context, Target, process_table, table

NAME = "outage"
CELERY_ROLES = ("worker", "deliveries", "beat")
ALERT_WAIT = 120.0  # seconds after the last failure to wait for the messages


def measure(context: Context, *, webhooks: int, per_webhook: int, events: int) -> dict:
    work = context.scenario_dir(NAME)
    expected = webhooks * per_webhook * events
    with (
        MailServer() as mail,
        Receiver() as pager,
        ReceiverProcess(status=400, name="refusing") as endpoint,
        Stack(work, {**context.env, "EMAIL_URL": mail.url}) as stack,
    ):
        api = admin_api(stack)
        team = team_create(api, "out")
        try:
            team.webhook("pager", pager.url, alerts=True)
            alerts = True
        except ApiError:  # code from before alerts refuses the field
            alerts = False
        fan_out(team, lambda w: endpoint.url_for(f"/t/{w}"), webhooks=webhooks, per_webhook=per_webhook)

        monitor = context.monitor(stack, NAME)
        with monitor:
            for index in range(events):
                team.alias("production", f"v{index % 2}")
            received = endpoint.wait_count(expected, timeout=max(120.0, expected / 40))
            failed = _wait_failed(api, team.name, expected, timeout=120.0)
        emailed = None
        if alerts:
            deadline = time.monotonic() + ALERT_WAIT
            while time.monotonic() < deadline and not mail.messages:
                time.sleep(0.05)
            emailed = time.monotonic() if mail.messages else None
            while time.monotonic() < deadline and len(pager.requests) < webhooks:  # sent after the e-mail
                time.sleep(0.05)
        requests = [json.loads(r.body) for r in pager.requests]
    arrivals = sorted(a.at for a in endpoint.arrivals)
    window = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    cpu = monitor.cpu_total(ours=True)
    counted = sum(r["data"]["count"] for r in requests if r.get("type") == "delivery.failed")
    return {
        "webhooks": webhooks,
        "automations": webhooks * per_webhook,
        "events": events,
        "expected": expected,
        "received": received,
        "failed_in_db": failed,
        "alerts": alerts,
        "window_s": round(window, 2),
        "failed_per_s": round((len(arrivals) - 1) / window, 1) if len(arrivals) > 1 else 0.0,
        "cpu_s_ours": cpu,
        "cpu_ms_per_delivery": round(cpu * 1000 / max(1, expected), 3),
        "cpu_s_infra": monitor.cpu_total(ours=False),
        "machine_busy": monitor.machine_busy,
        "peak_rss_mb_celery": monitor.peak_rss_mb(CELERY_ROLES),
        "emails": len(mail.messages),
        # the receiver and this process read the same CLOCK_MONOTONIC
        "email_after_last_failure_s": round(emailed - arrivals[-1], 1) if emailed and arrivals else None,
        "ops_requests": len(requests),
        "ops_failures_counted": counted,
        "processes": monitor.processes(),
    }


def _wait_failed(api, team: str, expected: int, *, timeout: float) -> int:
    """Until every delivery is recorded as failed (the receiver sees the request before the worker records it)."""
    deadline = time.monotonic() + timeout
    failed = 0
    while time.monotonic() < deadline:
        failed = api.get(f"teams/{team}/deliveries/?status=failed&limit=1")["count"]
        if failed >= expected:
            break
        time.sleep(0.2)
    return failed


def run(context: Context) -> dict:
    webhooks, per_webhook, events = (5, 10, 20) if context.quick else (20, 10, 100)
    result = measure(context, webhooks=webhooks, per_webhook=per_webhook, events=events)
    print(f"\n## outage: {result['expected']} deliveries to an endpoint answering 400\n")
    print(
        table(
            ["failed/s", "CPU ms/delivery", "failed in DB", "e-mails", "ops requests", "counted", "e-mail after s"],
            [
                (
                    result["failed_per_s"],
                    result["cpu_ms_per_delivery"],
                    f"{result['failed_in_db']}/{result['expected']}",
                    result["emails"],
                    result["ops_requests"],
                    result["ops_failures_counted"],
                    result["email_after_last_failure_s"],
                ),
            ],
        )
    )
    print(
        f"\nCPU: ours {result['cpu_s_ours']} s, PG+Redis {result['cpu_s_infra']} s; "
        f"machine CPU busy {result['machine_busy']:.0%}"
    )
    print(process_table(result["processes"]))
    if result["alerts"]:
        result["targets"] = [
            Target("outage: e-mails", "1", result["emails"], result["emails"] == 1),
            Target(
                "outage: failures in alerts",
                str(result["expected"]),
                result["ops_failures_counted"],
                result["ops_failures_counted"] == result["expected"],
            ),
        ]
    return result
