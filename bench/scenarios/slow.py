"""Slow endpoint isolation: do 10 fast endpoints stay fast while another endpoint takes 2 s per request?

10 webhooks point at a fast receiver (distinct URLs), one at a receiver that sleeps 2 s before answering. Alias
adds are sent at a steady rate (open loop, ``RATE`` per second, a fresh alias name per event as the marker); every
event fires the 10 fast automations, and in the second phase also the slow one. Each fast delivery's latency runs
from the start of its event's API call to the fast receiver having it. Phase 1 runs without the slow automation,
phase 2 with it (enabled through the API), on the same stack, after 20 unmeasured warm-up events.
"""

from __future__ import annotations

import time

from ..api import PAYLOAD, admin_api, team_create, wait_idle
from ..receiver import ReceiverProcess
from ..report import Context, Target, process_table, summary, table
from ..stack import Stack

NAME = "slow"
FAST = 10
RATE = 5.0  # events per second: 5 slow requests a second keep ~10 of the 16 delivery threads waiting on it
SLOW_DELAY = 2.0
WARMUP = 20
CELERY_ROLES = ("worker", "deliveries", "beat")


def _phase(team, receiver: ReceiverProcess, *, prefix: str, events: int) -> dict:
    sent: dict[str, float] = {}
    already = len(receiver.arrivals)
    api_ms = []
    started = time.monotonic()
    for index in range(events):
        due = started + index / RATE
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        alias = f"{prefix}{index:05d}"
        at = time.monotonic()
        team.alias(alias, f"v{index % 2}")
        sent[alias] = at
        api_ms.append((time.monotonic() - at) * 1000)
    expected = already + events * FAST
    receiver.wait_count(expected, timeout=60 + events * FAST / 20)
    arrivals = [a for a in receiver.arrivals[already:] if a.marker in sent]
    latency = [(a.at - sent[a.marker]) * 1000 for a in arrivals]
    return {
        "events": events,
        "fast_expected": events * FAST,
        "fast_received": len(arrivals),
        "fast_ms": latency,
        "api_ms": api_ms,
        "summary": summary(latency),
    }


def run(context: Context) -> dict:
    events = 30 if context.quick else 200
    work = context.scenario_dir(NAME)
    with (
        ReceiverProcess(name="fast") as fast,
        ReceiverProcess(name="slow", delay=SLOW_DELAY, threads=256) as slow,
        Stack(work, context.env) as stack,
    ):
        api = admin_api(stack)
        team = team_create(api, "slow")
        for w in range(FAST):
            team.automation(f"fast-{w}", team.webhook(f"fast-{w}", fast.url(f"/f/{w}")), PAYLOAD)
        slow_automation = team.automation("slow", team.webhook("slow", slow.url("/slow")), PAYLOAD)
        api.session.patch(
            f"{api.base}/teams/{team.name}/automations/{slow_automation}/", json={"enabled": False}, timeout=30
        ).raise_for_status()
        wait_idle(api, team.name)
        _phase(team, fast, prefix="w", events=WARMUP)  # unmeasured: the first requests of fresh processes are slow
        monitor = context.monitor(stack, NAME)
        with monitor:
            without = _phase(team, fast, prefix="a", events=events)
            api.session.patch(
                f"{api.base}/teams/{team.name}/automations/{slow_automation}/", json={"enabled": True}, timeout=30
            ).raise_for_status()
            with_slow = _phase(team, fast, prefix="b", events=events)
            slow_received = slow.wait_count(events, timeout=30 + events * SLOW_DELAY / 8)
    increase = with_slow["summary"]["p99"] - without["summary"]["p99"]
    rows = []
    for label, phase in (("without the slow endpoint", without), ("with the slow endpoint", with_slow)):
        s = phase["summary"]
        rows.append(
            (label, f"{phase['fast_received']}/{phase['fast_expected']}", s["p50"], s["p95"], s["p99"], s["max"])
        )
    print(
        f"\n## slow: {FAST} fast endpoints, {events} events at {RATE:g}/s per phase; "
        f"the slow endpoint sleeps {SLOW_DELAY:g} s\n"
    )
    print(table(["fast deliveries (ms)", "received", "p50", "p95", "p99", "max"], rows))
    print(f"\np99 increase: {increase:.2f} ms; slow endpoint received {slow_received}/{events}")
    print(process_table(monitor.processes()))
    return {
        "fast_endpoints": FAST,
        "rate_per_s": RATE,
        "slow_delay_s": SLOW_DELAY,
        "without_slow": without,
        "with_slow": with_slow,
        "slow_received": slow_received,
        "p99_increase_ms": round(increase, 2),
        "processes": monitor.processes(),
        "cpu_s_ours": monitor.cpu_total(ours=True),
        "machine_busy": monitor.machine_busy,
        "targets": [
            Target("slow endpoint: fast p99 increase", "< 20 ms", round(increase, 2), increase < 20),
            Target(
                "slow: fast deliveries lost",
                "0",
                without["fast_expected"]
                + with_slow["fast_expected"]
                - without["fast_received"]
                - with_slow["fast_received"],
                without["fast_received"] == without["fast_expected"]
                and with_slow["fast_received"] == with_slow["fast_expected"],
            ),
        ],
    }
