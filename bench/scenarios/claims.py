"""Launch claims: items claimed per second by 1, 4 and 16 concurrent agents, and duplicates (must be 0).

Each level has its own queue with ``ITEMS`` items enqueued beforehand. Every agent is its own process (as agents
are, on their own machines) using the launch agent's client (``registry_client.agent.client``) with an agent token
made through the API; all start together and claim until the queue answers 204. Claims per second = items claimed /
(last answer - first request). Duplicates are item ids handed out more than once; the database is checked as well
(nothing left pending, every item claimed exactly once). Each agent also reports its own CPU time over the
measurement, so that the tables show how the machine's CPU divides between the agents (the client), our processes
(the web) and PostgreSQL.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter

from registry_client.agent.client import AgentClient

from harness.stack import Stack

from ..api import admin_api, djhelper, team_create
from ..report import Context, Target, process_table, summary, table

NAME = "claims"
LEVELS = (1, 4, 16)
TEAM = "claims"
# The bench's agents claim and never run or heartbeat what they claimed. With the production lease (30 s) a level
# slower than items/30 per second would see its first items lapse back to pending and be handed out again, which
# is the lease doing its job, not a duplicate claim: the leases outlast the measurement instead.
LEASE = {"LAUNCH_LEASE_SECONDS": "3600"}


def _agent(base_url: str, token: str, queue: str, ready, go, results) -> None:
    """One agent process: claim until nothing is pending; report ids, per-claim latency and the time span."""
    client = AgentClient(base_url, token, retries=0, timeout=(5.0, 30.0))
    ids: list[str] = []
    latency: list[float] = []
    errors = 0
    ready.put(1)
    go.wait(60)
    first = time.monotonic()
    last = first
    cpu = time.process_time()
    while True:
        started = time.monotonic()
        try:
            item = client.claim(TEAM, queue)
        except Exception:
            errors += 1
            if errors > 20:
                break
            continue
        last = time.monotonic()
        if item is None:
            break
        ids.append(item.id)
        latency.append((last - started) * 1000)
    cpu = time.process_time() - cpu
    client.close()
    results.put({"ids": ids, "latency_ms": latency, "first": first, "last": last, "errors": errors, "cpu_s": cpu})


def _level(context: Context, stack: Stack, tokens: list[str], agents: int, items: int) -> dict:
    spawn = multiprocessing.get_context("spawn")
    ready, results, go = spawn.Queue(), spawn.Queue(), spawn.Event()
    queue = f"q{agents}"
    processes = [
        spawn.Process(target=_agent, args=(stack.base_url, tokens[i], queue, ready, go, results), daemon=True)
        for i in range(agents)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=60)
    monitor = context.monitor(stack, f"{NAME}-{agents}")
    with monitor:
        go.set()
        reports = [results.get(timeout=300) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    ids = [i for r in reports for i in r["ids"]]
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    return {
        "agents": agents,
        "items": items,
        "claimed": len(ids),
        "unique": len(set(ids)),
        "duplicates": sum(n - 1 for n in Counter(ids).values() if n > 1),
        "errors": sum(r["errors"] for r in reports),
        "span_s": round(span, 3),
        "claims_per_s": round(len(ids) / span, 1) if span > 0 else 0.0,
        "latency_ms": summary([x for r in reports for x in r["latency_ms"]]),
        "cpu_s_ours": monitor.cpu_total(ours=True),
        "cpu_s_infra": monitor.cpu_total(ours=False),
        "cpu_s_agents": round(sum(r["cpu_s"] for r in reports), 2),
        "machine_busy": monitor.machine_busy,
        "processes": monitor.processes(),
    }


def run(context: Context) -> dict:
    items = 200 if context.quick else 3000
    work = context.scenario_dir(NAME)
    levels = []
    with Stack(work, {**context.env, **LEASE}) as stack:
        api = admin_api(stack)
        team_create(api, TEAM, versions=0)
        api.post(f"teams/{TEAM}/launch/jobs/", {"name": "train", "project": "training"})
        api.post(f"teams/{TEAM}/launch/jobs/train/versions/", {"entrypoint": ["true"]})
        queues = [f"q{n}" for n in LEVELS]
        for queue in queues:
            api.post(f"teams/{TEAM}/launch/queues/", {"name": queue})
            djhelper(stack, "enqueue", TEAM, queue, "train", str(items))
        tokens = [
            api.post(f"teams/{TEAM}/launch/agents/", {"name": f"agent-{i}", "queues": queues})["token"]
            for i in range(max(LEVELS))
        ]
        for agents in LEVELS:
            level = _level(context, stack, tokens, agents, items)
            queue = f"q{agents}"
            level["pending_left_in_db"] = api.get(f"teams/{TEAM}/launch/queues/{queue}/items/?state=pending&limit=1")[
                "count"
            ]
            level["claimed_in_db"] = api.get(f"teams/{TEAM}/launch/queues/{queue}/items/?state=claimed&limit=1")[
                "count"
            ]
            levels.append(level)
    print(f"\n## claims: {items} items per level, each agent its own process\n")
    print(
        table(
            [
                "agents",
                "claims/s",
                "claimed",
                "duplicates",
                "errors",
                "p50 ms",
                "p99 ms",
                "CPU ms/claim",
                "agents ms/claim",
                "db ms/claim",
                "cores: agents",
                "cores: ours",
                "cores: db",
                "machine busy",
            ],
            [
                (
                    lv["agents"],
                    lv["claims_per_s"],
                    f"{lv['unique']}/{lv['items']}",
                    lv["duplicates"],
                    lv["errors"],
                    lv["latency_ms"].get("p50", float("nan")),
                    lv["latency_ms"].get("p99", float("nan")),
                    round(lv["cpu_s_ours"] * 1000 / max(1, lv["claimed"]), 2),
                    round(lv["cpu_s_agents"] * 1000 / max(1, lv["claimed"]), 2),
                    round(lv["cpu_s_infra"] * 1000 / max(1, lv["claimed"]), 2),
                    *(
                        round(lv[key] / lv["span_s"], 2) if lv["span_s"] > 0 else 0.0
                        for key in ("cpu_s_agents", "cpu_s_ours", "cpu_s_infra")
                    ),
                    f"{lv['machine_busy']:.0%}",
                )
                for lv in levels
            ],
        )
    )
    print(process_table(levels[-1]["processes"]))
    duplicates = sum(lv["duplicates"] for lv in levels)
    best = max(lv["claims_per_s"] for lv in levels)
    complete = all(lv["unique"] == lv["items"] and lv["pending_left_in_db"] == 0 for lv in levels)
    return {
        "items_per_level": items,
        "levels": levels,
        "targets": [
            Target("claims/s (16 agents)", "≥ 500", levels[-1]["claims_per_s"], levels[-1]["claims_per_s"] >= 500),
            Target("claim duplicates", "0", duplicates, duplicates == 0 and complete),
        ],
        "best_claims_per_s": best,
    }
