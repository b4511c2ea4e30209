"""Read latency: what a deployment script or a serving process asks the registry most, through the API.

Three reads, each about 1,000 times (``--quick``: 100), one call at a time from one client on a kept connection:
GET a registered model, GET a model version (``v1``, with its aliases and its artifact's tags), and an alias
resolution (``resolve/?reference=<team>/model-registry/clf:production``, the artifact version with its manifest).
The three alternate call by call, so load drifting over the run falls on each alike. 20 unmeasured calls of each
first. Reported: p50/p95/p99 per read, and the web processes' CPU per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.stack import Stack

from ..api import admin_api, team_create, wait_idle
from ..report import Context, Target, process_table, summary, table

NAME = "reads"
WARMUP = 20
TARGET_P50_MS = 5.0


def measure(context: Context, *, count: int) -> dict:
    work = context.scenario_dir(NAME)
    with Stack(work, context.env) as stack:
        api = admin_api(stack)
        team = team_create(api, NAME)
        model = f"teams/{team.name}/registered-models/{team.model}/"
        for tag in ("candidate", "reviewed"):
            api.post(f"teams/{team.name}/projects/training/artifacts/{team.model}/versions/v1/tags/", {"tag": tag})
        team.alias("production", "v1")
        wait_idle(api, team.name)

        reads: dict[str, Callable[[], object]] = {
            "GET registered model": lambda: api.get(model),
            "GET model version": lambda: api.get(model + "versions/v1/"),
            "resolve an alias": lambda: api.get(
                f"teams/{team.name}/resolve/?reference={team.name}/model-registry/{team.model}:production"
            ),
        }
        samples: dict[str, list[float]] = {label: [] for label in reads}
        for _ in range(WARMUP):
            for read in reads.values():
                read()
        monitor = context.monitor(stack, NAME)
        with monitor:
            for _ in range(count):
                for label, read in reads.items():
                    started = time.monotonic()
                    read()
                    samples[label].append((time.monotonic() - started) * 1000)
        calls = count * len(reads)
        web_cpu_s = sum(p["cpu_s"] for p in monitor.processes() if p["role"] == "web")
    return {
        "count": count,
        "warmup": WARMUP,
        "samples_ms": samples,
        "web_cpu_ms_per_call": round(web_cpu_s * 1000 / calls, 2),
        "elapsed_s": round(monitor.elapsed, 2),
        "processes": monitor.processes(),
        "machine_busy": monitor.machine_busy,
    }


def run(context: Context) -> dict:
    count = 100 if context.quick else 1000
    result = measure(context, count=count)
    summaries = {label: summary(values) for label, values in result["samples_ms"].items()}
    print(f"\n## reads: {count} calls of each read, one at a time, alternating\n")
    print(
        table(
            ["ms", "n", "p50", "p95", "p99", "max"],
            [(label, s["n"], s["p50"], s["p95"], s["p99"], s["max"]) for label, s in summaries.items()],
        )
    )
    print(
        f"\nweb CPU per call {result['web_cpu_ms_per_call']} ms; machine CPU busy {result['machine_busy']:.0%} "
        "(every process, both cores)"
    )
    print(process_table(result["processes"]))
    targets = [
        Target(f"p50 {label}", f"< {TARGET_P50_MS:g} ms", s["p50"], s["p50"] < TARGET_P50_MS)
        for label, s in summaries.items()
    ]
    return {**result, "summary": summaries, "targets": targets}
