"""Event → delivery latency: alias changes through the API, one at a time, one webhook automation.

Each change moves ``production`` to the other of two model versions (a real move: the alias leaves one version and
lands on the other, firing ADD_ARTIFACT_ALIAS). The driver times the API call, then waits until the receiver has
the delivery before making the next change (closed loop, so arrivals match changes by order and no change waits
behind another). Event → delivery latency runs from the start of the API call to the receiver having read the
whole request.
"""

from __future__ import annotations

import time

from harness.receiver import Arrival, ReceiverProcess
from harness.stack import Stack

from ..api import PAYLOAD, admin_api, djhelper, team_create, wait_idle
from ..report import Context, Target, process_table, summary, table

NAME = "latency"
WARMUP = 20
TIMEOUT = 10.0  # seconds a single delivery may take before it counts as lost
CELERY_ROLES = ("worker", "deliveries", "beat")


def measure(context: Context, *, count: int, label: str = NAME) -> dict:
    """Run the scenario against a fresh stack and return raw samples and resource figures."""
    work = context.scenario_dir(label)
    with ReceiverProcess(name="fast") as receiver, Stack(work, context.env) as stack:
        api = admin_api(stack)
        team = team_create(api, label)
        team.automation("deploy", team.webhook("ci", receiver.url_for("/ci")), PAYLOAD)
        wait_idle(api, team.name)

        api_ms: list[float] = []
        delivery_ms: list[float] = []
        lost = 0

        measured: list[tuple[float, Arrival]] = []  # (API call started, its delivery's arrival), monotonic

        def change(index: int) -> tuple[float, float | None]:
            seen = len(receiver.arrivals)
            started = time.monotonic()
            team.alias("production", f"v{index % 2}")
            answered = time.monotonic()
            arrival = receiver.wait(lambda arrivals: len(arrivals) > seen and arrivals[seen], TIMEOUT)
            if arrival:
                measured.append((started, arrival))
            return (answered - started) * 1000, (arrival.at - started) * 1000 if arrival else None

        for index in range(WARMUP):
            change(index)
        del measured[:]
        monitor = context.monitor(stack, label)
        with monitor:
            for index in range(WARMUP, WARMUP + count):
                took, delivered = change(index)
                api_ms.append(took)
                if delivered is None:
                    lost += 1
                    if lost >= 5:
                        raise RuntimeError("5 deliveries lost: the stack is not delivering (see bench/results/work)")
                else:
                    delivery_ms.append(delivered)
        time.sleep(1.0)  # anything arriving now is a duplicate
        breakdown = stage_breakdown(stack, measured)
        arrivals = receiver.arrivals
        ids = [a.webhook_id for a in arrivals]
        wrong = sum(1 for a in arrivals if a.marker != "production")
    return {
        "stages_ms": breakdown,
        "count": count,
        "warmup": WARMUP,
        "api_ms": api_ms,
        "delivery_ms": delivery_ms,
        "lost": lost,
        "duplicates": len(ids) - len(set(ids)),
        "unexpected": wrong,
        "elapsed_s": round(monitor.elapsed, 2),
        "processes": monitor.processes(),
        "cpu_s_ours": monitor.cpu_total(ours=True),
        "machine_busy": monitor.machine_busy,
        "peak_rss_mb_celery": monitor.peak_rss_mb(CELERY_ROLES),
        "peak_rss_mb_web": monitor.peak_rss_mb(["web"]),
        "peak_rss_mb_total": round(monitor.peak_total_rss / 2**20, 1),
    }


STAGES = (
    ("API call starts → event recorded", "start", "event_recorded"),
    ("→ dispatch writes the delivery", "event_recorded", "deliveries_written"),
    ("→ dispatch done", "deliveries_written", "event_dispatched"),
    ("→ attempt starts (claimed, secrets read)", "event_dispatched", "attempt_started"),
    ("→ receiver has it", "attempt_started", "arrived"),
)


def stage_breakdown(stack: Stack, measured: list[tuple[float, Arrival]]) -> dict:
    """Where the time goes: the timestamps the database records along the way (event, deliveries, attempt), with
    the API start and the arrival, as p50/p95 per step. Database times are wall clock; monotonic times are mapped
    onto it with one offset (one machine, one clock)."""
    offset = time.time() - time.monotonic()
    recorded = djhelper(stack, "stages", stdin=[a.webhook_id for _, a in measured])
    steps: dict[str, list[float]] = {label: [] for label, _, _ in STAGES}
    for started, arrival in measured:
        times = recorded.get(arrival.webhook_id)
        if not times:
            continue
        times = {**times, "start": started + offset, "arrived": arrival.at + offset}
        for label, a, b in STAGES:
            if times.get(a) is not None and times.get(b) is not None:
                steps[label].append((times[b] - times[a]) * 1000)
    return {label: summary(values) for label, values in steps.items()}


def stages_table(result: dict) -> str:
    rows = [(label, s.get("p50", float("nan")), s.get("p95", float("nan"))) for label, s in result["stages_ms"].items()]
    return table(["step (ms)", "p50", "p95"], rows)


def latency_table(result: dict) -> str:
    api, delivery = summary(result["api_ms"]), summary(result["delivery_ms"])
    return table(
        ["ms", "n", "p50", "p95", "p99", "max"],
        [
            ("API call", api["n"], api["p50"], api["p95"], api["p99"], api["max"]),
            ("event → delivery", delivery["n"], delivery["p50"], delivery["p95"], delivery["p99"], delivery["max"]),
        ],
    )


def run(context: Context) -> dict:
    count = 100 if context.quick else 1000
    result = measure(context, count=count)
    delivery = summary(result["delivery_ms"])
    targets = [
        Target("p50 event → delivery", "≤ 15 ms", delivery["p50"], delivery["p50"] <= 15),
        Target("p99 event → delivery", "≤ 60 ms", delivery["p99"], delivery["p99"] <= 60),
        Target("worker peak RSS", "< 150 MB", result["peak_rss_mb_celery"], result["peak_rss_mb_celery"] < 150),
        Target("web peak RSS", "< 150 MB", result["peak_rss_mb_web"], result["peak_rss_mb_web"] < 150),
        Target("lost deliveries", "0", result["lost"], result["lost"] == 0),
    ]
    print(f"\n## latency: {count} alias moves, one at a time, one webhook automation\n")
    print(latency_table(result))
    print("\nwhere the time goes (from the timestamps recorded along the way):\n")
    print(stages_table(result))
    print(
        f"\nlost {result['lost']}, duplicates {result['duplicates']}; CPU of our processes {result['cpu_s_ours']} s; "
        f"machine CPU busy {result['machine_busy']:.0%} (every process, both cores)"
    )
    print(process_table(result["processes"]))
    return {
        **result,
        "summary": {"api_ms": summary(result["api_ms"]), "delivery_ms": delivery},
        "targets": targets,
    }
