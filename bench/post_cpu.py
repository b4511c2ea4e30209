"""``python -m bench.post_cpu [--before FILE] [--posts N] [--rounds R]``: CPU per ``safe_http.post``.

POSTs a webhook-sized JSON body with a delivery's headers to a loopback receiver process (``harness.receiver``,
keep-alive) through ``automations.safe_http.post``, a ``Reuse`` per batch of 100 as the deliveries worker has it,
and reports the CPU each post costs this process (``time.process_time``: every thread, the deadline thread
included; and ``time.thread_time``: the sending thread alone). With ``--before``, another version of
``safe_http.py`` (e.g. from a ``git worktree`` of an older commit) is measured in the same run, rounds alternating,
so that both see the same machine. No database, broker or stack: the module needs Django settings only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import django
from django.conf import settings

from harness.receiver import ReceiverProcess

BATCH = 100  # DELIVERY_BATCH's default: one Reuse, so one connection, per batch
BODY = json.dumps(
    {
        "event_type": "ADD_ARTIFACT_ALIAS",
        "event_author": "bench",
        "alias": "production",
        "artifact_version": "registry:///acme/models/classifier:v42",
        "artifact_version_string": "acme/models/classifier:v42",
        "artifact_collection_name": "classifier",
        "project_name": "models",
        "entity_name": "acme",
        "m": "production",
    }
).encode()


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _round(client: ModuleType, url: str, posts: int) -> tuple[float, float]:
    """CPU seconds (process, sending thread) for ``posts`` posts."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "registry-automations/1.0",
        "webhook-id": "",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    }
    process, thread = time.process_time(), time.thread_time()
    sent = 0
    while sent < posts:
        with client.Reuse() as reuse:
            for _ in range(min(BATCH, posts - sent)):
                headers["webhook-id"] = f"msg_{uuid.uuid4().hex}"
                answer = client.post(
                    url, body=BODY, headers=headers, connect_timeout=5, read_timeout=10, deadline=30,
                    max_response_bytes=64 * 1024, reuse=reuse,
                )  # fmt: skip
                if answer.status_code != 200 or answer.error:
                    raise SystemExit(f"unexpected answer: {answer.status_code} {answer.error}")
                sent += 1
    return time.process_time() - process, time.thread_time() - thread


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.post_cpu", description=__doc__)
    parser.add_argument("--before", type=Path, help="another safe_http.py to measure beside this tree's")
    parser.add_argument("--posts", type=int, default=20_000, help="posts per version (default 20,000)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per version, alternating (default 4)")
    args = parser.parse_args(argv)
    settings.configure(WEBHOOK_ALLOWED_NETWORKS=["127.0.0.1/32"], WEBHOOK_CA_BUNDLE="")
    django.setup()

    clients = {"now": _load(Path(__file__).resolve().parent.parent / "automations" / "safe_http.py", "safe_http_now")}
    if args.before is not None:
        clients = {"before": _load(args.before.resolve(), "safe_http_before"), **clients}
    per_round = max(args.posts // args.rounds, 1)
    cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    with ReceiverProcess(keep_alive=True, name="post-cpu") as receiver:
        url = receiver.url
        for client in clients.values():
            _round(client, url, 500)  # warm-up: imports, caches, the deadline thread
        for _ in range(args.rounds):
            for name, client in clients.items():
                cpu[name].append(_round(client, url, per_round))

    print(
        f"CPU per post, µs ({args.rounds} rounds of {per_round:,} posts per version, alternating; a Reuse per {BATCH})"
    )
    print(f"{'version':8} {'process, all rounds':>20} {'rounds (process)':>34} {'sending thread':>15}")
    for name, rounds in cpu.items():
        total_process = sum(p for p, _ in rounds) / (per_round * len(rounds)) * 1e6
        total_thread = sum(t for _, t in rounds) / (per_round * len(rounds)) * 1e6
        each = " ".join(f"{p / per_round * 1e6:7.1f}" for p, _ in rounds)
        print(f"{name:8} {total_process:20.1f} {each:>34} {total_thread:15.1f}")
    if len(cpu) == 2:
        before = statistics.fmean(p for p, _ in cpu["before"])
        now = statistics.fmean(p for p, _ in cpu["now"])
        print(f"now / before (process): {now / before:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
