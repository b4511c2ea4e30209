"""Slow endpoint isolation: do 10 fast endpoints stay fast while another endpoint takes 2 s per request?

10 webhooks point at a fast receiver (distinct URLs), one at a receiver that sleeps 2 s before answering. Alias
adds are sent at a steady rate (open loop, ``RATE`` per second, a fresh alias name per event as the marker); every
event fires the 10 fast automations, and while the slow automation is enabled (through the API) also the slow one.
Each fast delivery's latency runs from the start of its event's API call to the fast receiver having it. After 20
unmeasured warm-up events, four blocks alternate without / with / without / with the slow endpoint on the same
stack (so that load from elsewhere on the machine drifting over the run falls on both sides), with a pause after
each switch for slow requests under way to end.
"""

from __future__ import annotations

import time

from harness.receiver import ReceiverProcess
from harness.stack import Stack

from ..api import PAYLOAD, admin_api, team_create, wait_idle
from ..report import Context, Target, process_table, summary, table

NAME = "slow"
FAST = 10
RATE = 5.0  # events per second: 5 slow requests a second keep ~10 of the 16 delivery threads waiting on it
SLOW_DELAY = 2.0
WARMUP = 20
BLOCKS = 4  # without, with, without, with
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


def _merge(phases: list[dict]) -> dict:
    latency = [x for p in phases for x in p["fast_ms"]]
    return {
        "events": sum(p["events"] for p in phases),
        "fast_expected": sum(p["fast_expected"] for p in phases),
        "fast_received": sum(p["fast_received"] for p in phases),
        "fast_ms": latency,
        "api_ms": [x for p in phases for x in p["api_ms"]],
        "blocks_p99": [p["summary"].get("p99") for p in phases],
        "summary": summary(latency),
    }


def run(context: Context) -> dict:
    events = 30 if context.quick else 200
    work = context.scenario_dir(NAME)
    with (
        ReceiverProcess(name="fast") as fast,
        ReceiverProcess(name="slow", delay=SLOW_DELAY) as slow,
        Stack(work, context.env) as stack,
    ):
        api = admin_api(stack)
        team = team_create(api, "slow")
        for w in range(FAST):
            team.automation(f"fast-{w}", team.webhook(f"fast-{w}", fast.url_for(f"/f/{w}")), PAYLOAD)
        slow_automation = team.automation("slow", team.webhook("slow", slow.url_for("/slow")), PAYLOAD)

        def slow_enabled(enabled: bool) -> None:
            url = f"{api.base}/teams/{team.name}/automations/{slow_automation}/"
            api.session.patch(url, json={"enabled": enabled}, timeout=30).raise_for_status()
            time.sleep(SLOW_DELAY + 1)  # slow requests still under way end before the next block

        slow_enabled(False)
        wait_idle(api, team.name)
        _phase(team, fast, prefix="w", events=WARMUP)  # unmeasured: the first requests of fresh processes are slow
        blocks: dict[bool, list[dict]] = {False: [], True: []}
        monitor = context.monitor(stack, NAME)
        with monitor:
            # Alternating blocks (without, with, without, with) so that a change in the machine's load over the run
            # falls on both sides alike.
            for block in range(BLOCKS):
                with_slow_now = block % 2 == 1
                slow_enabled(with_slow_now)
                prefix = f"{'b' if with_slow_now else 'a'}{block}-"
                blocks[with_slow_now].append(_phase(team, fast, prefix=prefix, events=events // (BLOCKS // 2)))
            slow_received = slow.wait_count(events, timeout=30 + events * SLOW_DELAY / 8)
        without, with_slow = (_merge(blocks[False]), _merge(blocks[True]))
    increase = with_slow["summary"]["p99"] - without["summary"]["p99"]
    rows = []
    for label, phase in (("without the slow endpoint", without), ("with the slow endpoint", with_slow)):
        s = phase["summary"]
        rows.append(
            (label, f"{phase['fast_received']}/{phase['fast_expected']}", s["p50"], s["p95"], s["p99"], s["max"])
        )
    print(
        f"\n## slow: {FAST} fast endpoints, {events} events at {RATE:g}/s without and as many with the slow endpoint "
        f"(alternating blocks); it sleeps {SLOW_DELAY:g} s\n"
    )
    print(table(["fast deliveries (ms)", "received", "p50", "p95", "p99", "max"], rows))
    print(
        f"\np99 increase: {increase:.2f} ms; slow endpoint received {slow_received}/{events}; p99 per block: "
        f"without {without['blocks_p99']}, with {with_slow['blocks_p99']}"
    )
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
