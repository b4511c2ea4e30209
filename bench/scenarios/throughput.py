"""Throughput: many events, each fanned out to many webhook automations.

200 automations (10 on each of 20 webhooks, distinct URLs on one receiver process) all fire on ADD_ARTIFACT_ALIAS;
100 alias moves sent back to back through the API make 100 events x 200 = 20,000 deliveries. The fan-out exercises
dispatch (200 Delivery rows in one bulk insert, 200 tasks published per event) while the many events keep the
events worker busy at the same time as the deliveries worker, as a busy registry would. Sustained throughput is
(deliveries - 1) / (last arrival - first arrival); CPU per delivery is the CPU time of all our processes plus
PostgreSQL's and Redis's over the whole window (first API call to last arrival) divided by the deliveries (ours alone
is shown too). The receiver and the driver share the machine: their CPU is reported as a share of its 2 cores.
"""

from __future__ import annotations

import os
import time

import psutil

from harness.receiver import ReceiverProcess
from harness.stack import Stack

from ..api import admin_api, fan_out, team_create
from ..report import Context, Target, process_table, table

NAME = "throughput"
CELERY_ROLES = ("worker", "deliveries", "beat")


def measure(context: Context, *, webhooks: int, per_webhook: int, events: int) -> dict:
    work = context.scenario_dir(NAME)
    expected = webhooks * per_webhook * events
    with ReceiverProcess(name="fast") as receiver, Stack(work, context.env) as stack:
        api = admin_api(stack)
        team = team_create(api, "thr")
        fan_out(team, lambda w: receiver.url_for(f"/t/{w}"), webhooks=webhooks, per_webhook=per_webhook)

        monitor = context.monitor(stack, NAME)
        receiver_process = psutil.Process(receiver.pid)
        with monitor:
            receiver_cpu, driver_cpu = _cpu(receiver_process), _cpu(psutil.Process(os.getpid()))
            started = time.monotonic()
            for index in range(events):
                team.alias("production", f"v{index % 2}")
            api_done = time.monotonic()
            received = receiver.wait_count(expected, timeout=max(120.0, expected / 40))
            receiver_cpu = _cpu(receiver_process) - receiver_cpu
            driver_cpu = _cpu(psutil.Process(os.getpid())) - driver_cpu
            elapsed = time.monotonic() - started
        time.sleep(1.0)  # late duplicates
        arrivals = list(receiver.arrivals)
        succeeded = api.get(f"teams/{team.name}/deliveries/?status=succeeded&limit=1")["count"]
    times = sorted(a.at for a in arrivals)
    ids = [a.webhook_id for a in arrivals]
    window = times[-1] - times[0] if len(times) > 1 else float("nan")
    per_second: dict[int, int] = {}
    for at in times:
        second = int(at - times[0])
        per_second[second] = per_second.get(second, 0) + 1
    full_seconds = [n for s, n in per_second.items() if 0 < s < max(per_second)]  # first and last are partial
    cpu, infra = monitor.cpu_total(ours=True), monitor.cpu_total(ours=False)
    unique = max(1, len(set(ids)))
    return {
        "webhooks": webhooks,
        "automations": webhooks * per_webhook,
        "events": events,
        "expected": expected,
        "received": received,
        "unique": len(set(ids)),
        "duplicates": len(ids) - len(set(ids)),
        "succeeded_in_db": succeeded,
        "api_s": round(api_done - started, 2),
        "first_arrival_s": round(times[0] - started, 3) if times else None,
        "window_s": round(window, 2),
        "end_to_end_s": round(times[-1] - started, 2) if times else None,
        "deliveries_per_s": round((len(times) - 1) / window, 1) if len(times) > 1 else 0.0,
        "per_second_min": min(full_seconds, default=0),
        "per_second_max": max(full_seconds, default=0),
        "cpu_s_ours": cpu,
        "cpu_ms_per_delivery_ours": round(cpu * 1000 / unique, 3),
        "cpu_ms_per_delivery": round((cpu + infra) * 1000 / unique, 3),
        "cpu_s_infra": infra,
        "receiver_cores": round(receiver_cpu / elapsed, 2),
        "driver_cores": round(driver_cpu / elapsed, 2),
        "machine_busy": monitor.machine_busy,
        "peak_rss_mb_celery": monitor.peak_rss_mb(CELERY_ROLES),
        "peak_rss_mb_web": monitor.peak_rss_mb(["web"]),
        "processes": monitor.processes(),
    }


def run(context: Context) -> dict:
    webhooks, per_webhook, events = (5, 10, 20) if context.quick else (20, 10, 100)
    result = measure(context, webhooks=webhooks, per_webhook=per_webhook, events=events)
    print(
        f"\n## throughput: {result['events']} events x {result['automations']} automations "
        f"= {result['expected']} deliveries\n"
    )
    print(
        table(
            [
                "deliveries/s",
                "per-second min-max",
                "window s",
                "end to end s",
                "CPU ms/delivery",
                "ours alone",
                "received",
                "dup",
            ],
            [
                (
                    result["deliveries_per_s"],
                    f"{result['per_second_min']}-{result['per_second_max']}",
                    result["window_s"],
                    result["end_to_end_s"],
                    result["cpu_ms_per_delivery"],
                    result["cpu_ms_per_delivery_ours"],
                    f"{result['unique']}/{result['expected']}",
                    result["duplicates"],
                ),
            ],
        )
    )
    print(
        f"\nAPI calls took {result['api_s']} s; CPU: ours {result['cpu_s_ours']} s, "
        f"PG+Redis {result['cpu_s_infra']} s; "
        f"machine CPU busy {result['machine_busy']:.0%}; the receiver took {result['receiver_cores']} and the "
        f"driver {result['driver_cores']} of the 2 cores"
    )
    print(process_table(result["processes"]))
    result["targets"] = [
        Target("deliveries/s", "≥ 1000", result["deliveries_per_s"], result["deliveries_per_s"] >= 1000),
        Target(
            "CPU ms/delivery, ours+PG+Redis", "≤ 1", result["cpu_ms_per_delivery"], result["cpu_ms_per_delivery"] <= 1
        ),
        Target("worker peak RSS", "< 150 MB", result["peak_rss_mb_celery"], result["peak_rss_mb_celery"] < 150),
        Target("web peak RSS", "< 150 MB", result["peak_rss_mb_web"], result["peak_rss_mb_web"] < 150),
        Target("throughput: lost", "0", result["expected"] - result["unique"], result["unique"] == result["expected"]),
    ]
    return result


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system
