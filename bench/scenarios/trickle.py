"""One team's trickling destination: does another team's webhook stay fast while 200 deliveries wait on a host that
answers each request in ~2 s?

Team ``trickle`` has 5 webhooks on one receiver (distinct paths, one host:port) that sends its status line and
headers at once and then a 2-byte body one byte a second; team ``other`` has one webhook on a fast receiver. After
unmeasured warm-up events of ``other``, a first block of ``other``'s alias adds runs with ``trickle`` idle (open loop,
``RATE`` per second, a fresh alias per event as the marker). Then ``trickle`` makes 40 alias adds at once (200
deliveries to the trickling host); once they are all dispatched and its first requests have arrived, a second block
of ``other``'s events runs at the same rate. Each of ``other``'s deliveries is timed from the start of its event's
API call to the fast receiver having read the request. Last, the scenario waits (bounded) for the trickling host to
have every delivery: how long one team's backlog takes to drain is the price of keeping it from the others.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from harness.receiver import ReceiverProcess
from harness.stack import Stack

from ..api import PAYLOAD, Team, admin_api, team_create, wait_idle
from ..report import Context, Target, process_table, summary, table

NAME = "trickle"
WEBHOOKS = 5
TRICKLE_EVENTS = 40  # x 5 webhooks = 200 deliveries to one destination
TRICKLE_BYTES = 2  # a byte a second: ~2 s a request
RATE = 2.0  # the other team's events per second
WARMUP = 10
ON_TIME_MS = 5000.0


def _block(team: Team, receiver: ReceiverProcess, *, prefix: str, events: int, wait: float = 120.0) -> dict:
    """``events`` alias adds of ``team`` at ``RATE``; each delivery's latency (ms) to ``receiver``."""
    sent: dict[str, float] = {}
    started = time.monotonic()
    for index in range(events):
        if (pause := started + index / RATE - time.monotonic()) > 0:
            time.sleep(pause)
        alias = f"{prefix}{index:04d}"
        sent[alias] = time.monotonic()
        team.alias(alias, "v0")
    receiver.wait(lambda arrivals: {a.marker for a in arrivals} >= sent.keys(), wait)
    arrived: dict[str, float] = {}
    for arrival in list(receiver.arrivals):
        if arrival.marker in sent:
            arrived.setdefault(arrival.marker, arrival.at)
    latency = [(arrived[alias] - at) * 1000 for alias, at in sent.items() if alias in arrived]
    return {"events": events, "received": len(arrived), "ms": latency, "summary": summary(latency)}


def run(context: Context) -> dict:
    events = 10 if context.quick else 40
    work = context.scenario_dir(NAME)
    with (
        ReceiverProcess(name="other") as fast,
        ReceiverProcess(name="trickle", trickle=TRICKLE_BYTES) as trickling,
        Stack(work, context.env) as stack,
    ):
        api = admin_api(stack)
        busy = team_create(api, "trickle", versions=1)
        for w in range(WEBHOOKS):
            busy.automation(f"trickle-{w}", busy.webhook(f"trickle-{w}", trickling.url_for(f"/t/{w}")), PAYLOAD)
        other = team_create(api, "other", versions=1)
        other.automation("other", other.webhook("other", fast.url_for("/other")), PAYLOAD)
        wait_idle(api, busy.name)
        wait_idle(api, other.name)
        _block(other, fast, prefix="w", events=WARMUP)  # unmeasured: the first requests of fresh processes are slow

        monitor = context.monitor(stack, NAME)
        with monitor:
            idle = _block(other, fast, prefix="idle-", events=events)
            backlog_started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda n: busy.alias(f"t{n:03d}", "v0"), range(TRICKLE_EVENTS)))
            wait_idle(api, busy.name)  # every event dispatched: the 200 deliveries are written
            trickling.wait_count(1, timeout=30)
            queued_s = time.monotonic() - backlog_started
            during = _block(other, fast, prefix="busy-", events=events)
            expected = TRICKLE_EVENTS * WEBHOOKS
            # Bounded: at one send at a time the backlog would take 400 s; a share of the senders drains it sooner.
            trickling.wait(lambda arrivals: len({a.webhook_id for a in arrivals}) >= expected, 300)
            arrivals = list(trickling.arrivals)
        distinct = len({a.webhook_id for a in arrivals})
        drain_s = (arrivals[-1].at - backlog_started) if arrivals else None
    rows = [
        (label, f"{b['received']}/{b['events']}", b["summary"].get("p50"), b["summary"].get("p99"),
         b["summary"].get("max"))
        for label, b in (("trickle team idle", idle), ("200 deliveries trickling", during))
    ]  # fmt: skip
    print(
        f"\n## trickle: the other team's deliveries, {events} events at {RATE:g}/s, with the trickle team idle and "
        f"then with {expected} of its deliveries to one host answering in ~{TRICKLE_BYTES} s each\n"
    )
    print(table(["other team's deliveries (ms)", "received", "p50", "p99", "max"], rows))
    drained = "-" if drain_s is None else f"{drain_s:.1f} s"
    print(
        f"\ntrickling host: {distinct}/{expected} deliveries ({len(arrivals) - distinct} sent again), the last "
        f"{drained} after the first of its 40 API calls; dispatched and sending {queued_s:.1f} s after it"
    )
    print(process_table(monitor.processes()))
    s = during["summary"]
    lost = (idle["events"] - idle["received"]) + (during["events"] - during["received"])
    return {
        "webhooks": WEBHOOKS,
        "trickle_events": TRICKLE_EVENTS,
        "trickle_bytes": TRICKLE_BYTES,
        "rate_per_s": RATE,
        "idle": idle,
        "during": during,
        "trickle_delivered": distinct,
        "trickle_expected": expected,
        "trickle_sent_again": len(arrivals) - distinct,
        "trickle_drain_s": None if drain_s is None else round(drain_s, 2),
        "processes": monitor.processes(),
        "cpu_s_ours": monitor.cpu_total(ours=True),
        "machine_busy": monitor.machine_busy,
        "targets": [
            Target(
                "trickle: other team's max latency while one host trickles",
                f"< {ON_TIME_MS:g} ms",
                s.get("max"),
                during["received"] == during["events"] and s.get("max", ON_TIME_MS) < ON_TIME_MS,
            ),
            Target(
                "trickle: deliveries lost (other team, trickle team)",
                "0",
                f"{lost}, {expected - distinct}",
                lost == 0 and distinct == expected,
            ),
        ],
    }
