"""The embedded default under a long soak: ``./dev up`` on SQLite and the filesystem broker, as a user runs it.

The soak of tests/e2e/test_embedded_default.py, four times as long: 2,000 alias moves through the API from four clients
at once, three webhook automations each (6,000 deliveries to a loopback receiver). Reported: how long the API calls
and the deliveries took, deliveries lost or sent twice, and any process exit, "database is locked" or error line
in the stack's output (all must be zero), with the CPU and peak RSS of each process.
"""

from __future__ import annotations

from harness.embedded import EmbeddedStack, soak
from harness.receiver import Receiver

from ..report import Context, Target, process_table, table
from ..stack import ResourceMonitor

NAME = "embedded"
WEBHOOKS = 3


def run(context: Context) -> dict:
    events = 100 if context.quick else 2000
    stack = EmbeddedStack(var_dir=context.scenario_dir(NAME) / "var").start()
    try:
        with Receiver() as receiver:
            monitor = ResourceMonitor(stack.roots())
            with monitor:
                result = soak(stack, receiver, events=events, webhooks=WEBHOOKS)
        trouble = stack.trouble()
        exit_status = stack.interrupt()
        trouble_after_stop = stack.trouble()
    finally:
        stack.stop()
    received = len(result.ids)
    duplicated = sum(n - 1 for n in result.ids.values() if n > 1)
    lost = result.deliveries_expected - received
    print(f"\n## embedded: {events} alias moves from 4 clients, {WEBHOOKS} webhook automations each\n")
    print(
        table(
            ["events", "deliveries", "received", "lost", "duplicated", "API s", "all delivered s", "deliveries/s"],
            [
                (
                    events,
                    result.deliveries_expected,
                    received,
                    lost,
                    duplicated,
                    round(result.seconds_api, 1),
                    round(result.seconds_total, 1),
                    round(received / result.seconds_total, 1),
                )
            ],
        )
    )
    print(
        f"\ntrouble lines during the soak: {len(trouble)}; after Ctrl-C: {len(trouble_after_stop)}; exit {exit_status}"
    )
    for line in trouble_after_stop[:20]:
        print(f"  {line}")
    print(process_table(monitor.processes()))
    return {
        "events": events,
        "deliveries_expected": result.deliveries_expected,
        "received": received,
        "lost": lost,
        "duplicated": duplicated,
        "seconds_api": round(result.seconds_api, 2),
        "seconds_total": round(result.seconds_total, 2),
        "trouble": trouble_after_stop,
        "exit_status": exit_status,
        "processes": monitor.processes(),
        "targets": [
            Target(
                "embedded: deliveries lost / duplicated", "0 / 0", f"{lost} / {duplicated}", not lost and not duplicated
            ),
            Target(
                "embedded: exits, locks and errors in the logs",
                "0",
                len(trouble_after_stop),
                not trouble_after_stop and exit_status == 0,
            ),
        ],
    }
