"""The Celery hop: what one trip through Redis to an ``events`` worker costs, and where the time goes.

The driver is a Django process like the web (``config.celery``'s app, production settings); it publishes with
``apply_async``, one task at a time (closed loop: the next is published once the previous one has reported, after a
short pause). Each configuration is the Procfile's ``worker`` line plus its options (``-I bench.scenarios.hop`` so
it knows the tasks below, and a queue and node name of its own): all of them run at once and are sampled in turn,
so that the shared machine's load falls on each alike. Three kinds of work, interleaved:

- ``ping``: a trivial task whose body POSTs its id over a kept-alive connection to a loopback receiver (the floor);
- ``dispatch``: ``registry.tasks.event_dispatch`` on a fresh copy of a real ADD_ARTIFACT_ALIAS event that matches one
  signed webhook automation pointing at the receiver: it writes the delivery, commits, and makes the first attempt
  itself, as in production;
- ``dispatch+``: the same service through an instrumented task that counts and times the queries and commits of the
  dispatch transaction and of what follows its commit (the first attempt), and the health check (``SELECT 1``).

Every process reads the same CLOCK_MONOTONIC. Timestamps: before/after ``apply_async`` (driver), ``task_received``
(the worker's main process), the first and the last ``task_prerun`` receivers (the pool's hand-off; between them,
our DB-connection hooks and Celery's Django fixup), the first ``task_postrun`` receiver, and the receiver's
arrivals (the delivery, by its ``webhook-id``). A burst of 20 pings published at once shows what prefetch and late
acks do under a backlog. Publishing is measured on its own too (``apply_async`` to a queue nobody reads, warm and
after idling, with and without the retry wrapper, beside raw Redis round trips), with the Redis commands one hop
issues (``MONITOR``, the first configuration alone).

    bench/run hop [--quick]                         # in a full bench run (database registry_bench, Redis db 11)
    python -m bench.scenarios.hop --db registry_hop --redis-db 12 [--quick] [--only CONFIG ...]   # on its own
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from celery import shared_task, signals

from harness.processes import Process
from harness.receiver import ReceiverProcess
from harness.util import tail

NAME = "hop"
TEAM = "hop"
TRACE_DIR = "HOP_TRACE_DIR"  # set only in the workers this scenario starts: their timestamps go there
RECEIVER = "HOP_RECEIVER"

# --- Worker side (imported by the worker through -I bench.scenarios.hop) ---------------------------------------

_trace_fd: tuple[int, int] | None = None  # (pid, fd): a forked pool child opens its own file
_http = threading.local()


def _trace(kind: str, task_id: str, at: float, extra: dict | None = None) -> None:
    global _trace_fd
    if _trace_fd is None or _trace_fd[0] != os.getpid():
        path = Path(os.environ[TRACE_DIR]) / f"trace-{os.getpid()}.tsv"
        _trace_fd = (os.getpid(), os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    line = f"{kind}\t{task_id}\t{at:.7f}\t{json.dumps(extra) if extra else ''}\n"
    os.write(_trace_fd[1], line.encode())  # one small O_APPEND write: whole lines even from several threads


def _post(body: str) -> None:
    """POST to the receiver over this thread's kept-alive connection (opened on first use, as a delivery's is)."""
    url = urlsplit(os.environ[RECEIVER])
    conn = getattr(_http, "conn", None)
    if conn is None or _http.pid != os.getpid():
        conn = _http.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        _http.pid = os.getpid()
    for attempt in (1, 2):
        try:
            conn.request("POST", url.path or "/", body=body.encode(), headers={"Content-Type": "text/plain"})
            conn.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            if attempt == 2:
                raise


@shared_task(name="bench.hop.ping", ignore_result=True)
def ping(event_id: str) -> None:
    """The bare hop: start, then one kept-alive POST of the task id."""
    from celery import current_task

    task_id = current_task.request.id
    _trace("start", task_id, time.monotonic())
    _post(task_id)


@shared_task(name="bench.hop.dispatch", ignore_result=True)
def dispatch_instrumented(event_id: str) -> None:
    """``registry.tasks.event_dispatch``'s service, its database work counted and timed in two phases: the dispatch
    transaction (up to its commit), then what runs after that commit (the first attempt: its own transactions, the
    HTTP request, the record)."""
    from celery import current_task
    from django.db import connections

    from registry import outbox

    started, cpu = time.monotonic(), time.thread_time()
    connection = connections["default"]
    queries: list[tuple[str, float, float]] = []
    commits: list[tuple[float, float]] = []  # (start, seconds)
    health: list[float] = []
    hooks = {"depth": 0, "start": 0.0, "seconds": 0.0}

    def wrapper(execute, sql, params, many, context):
        at = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            queries.append((sql, at, time.monotonic() - at))

    original = {name: getattr(connection, name) for name in ("is_usable", "_commit", "run_and_clear_commit_hooks")}

    def is_usable() -> bool:
        at = time.monotonic()
        try:
            return original["is_usable"]()
        finally:
            health.append(time.monotonic() - at)

    def commit() -> None:
        at = time.monotonic()
        try:
            original["_commit"]()
        finally:
            commits.append((at, time.monotonic() - at))

    def run_hooks() -> None:
        hooks["depth"] += 1  # hooks may commit transactions of their own, which run their own hooks
        if hooks["depth"] == 1:
            hooks["start"] = time.monotonic()
        try:
            original["run_and_clear_commit_hooks"]()
        finally:
            hooks["depth"] -= 1
            if hooks["depth"] == 0:
                hooks["seconds"] += time.monotonic() - hooks["start"]

    connection.is_usable, connection._commit, connection.run_and_clear_commit_hooks = is_usable, commit, run_hooks
    try:
        with connection.execute_wrapper(wrapper):
            outbox.event_dispatch(event_id=event_id)
    finally:
        for name in original:
            with contextlib.suppress(AttributeError):
                delattr(connection, name)
    ended = time.monotonic()
    committed = commits[0][0] + commits[0][1] if commits else ended  # the dispatch transaction's commit
    before = [q for q in queries if q[1] < committed]
    after = [q for q in queries if q[1] >= committed]
    extra = {
        "total": ended - started,
        "cpu": time.thread_time() - cpu,
        "health": sum(health),
        "health_n": len(health),
        "tx_queries": len(before),
        "tx_queries_s": sum(q[2] for q in before),
        "tx_commit": commits[0][1] if commits else 0.0,
        "committed_at": committed,
        "after_queries": len(after),
        "after_queries_s": sum(q[2] for q in after),
        "after_commits": len(commits) - 1 if commits else 0,
        "after_commits_s": sum(c[1] for c in commits[1:]),
        "hooks": hooks["seconds"],
        "sql": [(sql[:90], round(took * 1000, 3)) for sql, _, took in queries],
    }
    _trace("body", current_task.request.id, ended, extra)


def _front(sig: signals.Signal) -> None:
    """Move the receiver connected last to the front of the signal's receivers (it then runs first)."""
    sig.receivers.insert(0, sig.receivers.pop())
    sig.sender_receivers_cache.clear()


def _on_received(request=None, **kwargs: object) -> None:
    _trace("received", request.id, time.monotonic())


def _on_prerun_first(task_id=None, **kwargs: object) -> None:
    _trace("prerun_first", task_id, time.monotonic())
    _keep_last(signals.task_prerun, _on_prerun_last)


def _on_prerun_last(task_id=None, **kwargs: object) -> None:
    _trace("prerun_last", task_id, time.monotonic())


def _on_postrun_first(task_id=None, **kwargs: object) -> None:
    _trace("postrun_first", task_id, time.monotonic())


def _on_postrun_last(task_id=None, task=None, **kwargs: object) -> None:
    if task is not None and task.name != "bench.hop.ping":
        _post(task_id)  # tells the driver this task is done (after every timestamp)


def _keep_last(sig: signals.Signal, receiver: object) -> None:
    """Receivers connected after ours (Celery's Django fixup connects at worker start) would run after it."""
    if sig.receivers and sig.receivers[-1][1] is not receiver:
        for index, (_, found) in enumerate(sig.receivers):
            if found is receiver:
                sig.receivers.append(sig.receivers.pop(index))
                sig.sender_receivers_cache.clear()
                break


def _on_worker_init(**kwargs: object) -> None:
    from celery import current_app

    if os.environ.get("HOP_ACKS_LATE") == "0":
        # Before the consumer starts: its strategies capture each task's acks_late.
        for task in current_app.tasks.values():
            task.acks_late = False


def _on_worker_ready(**kwargs: object) -> None:
    from celery import current_app

    conf = current_app.conf
    acks = {name: task.acks_late for name, task in current_app.tasks.items() if name.startswith(("bench", "registry"))}
    _trace("ready", "-", time.monotonic(), {"acks_late": acks, "prefetch": conf.worker_prefetch_multiplier})


def _install() -> None:
    """Timestamps and the configurations' switches, in the benchmark's workers only."""
    signals.task_received.connect(_on_received, weak=False, dispatch_uid="bench.hop.received")
    signals.task_prerun.connect(_on_prerun_first, weak=False, dispatch_uid="bench.hop.prerun_first")
    _front(signals.task_prerun)
    signals.task_prerun.connect(_on_prerun_last, weak=False, dispatch_uid="bench.hop.prerun_last")
    signals.task_postrun.connect(_on_postrun_first, weak=False, dispatch_uid="bench.hop.postrun_first")
    _front(signals.task_postrun)
    signals.task_postrun.connect(_on_postrun_last, weak=False, dispatch_uid="bench.hop.postrun_last")
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="bench.hop.worker_init")
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="bench.hop.worker_ready")
    if os.environ.get("HOP_DB_HOOK") == "0":  # config/celery.py's close_old_connections() around each task
        signals.task_prerun.disconnect(dispatch_uid="config.celery.task_db_connections_prerun")
        signals.task_postrun.disconnect(dispatch_uid="config.celery.task_db_connections_postrun")
    if os.environ.get("HOP_HEALTH_CHECKS") == "0":
        from django.conf import settings
        from django.db import connections

        settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
        connections.settings["default"]["CONN_HEALTH_CHECKS"] = False
    if os.environ.get("HOP_SYNCHRONOUS_COMMIT") == "off":  # commits return before their WAL reaches the disk
        from django.conf import settings
        from django.db import connections

        for options in (settings.DATABASES["default"], connections.settings["default"]):
            options.setdefault("OPTIONS", {})["options"] = "-c synchronous_commit=off"


if os.environ.get(TRACE_DIR):
    _install()


# --- Worker configurations ---------------------------------------------------------------------------------


QUIET = "--without-mingle --without-gossip --without-heartbeat"

# name → (options appended to the Procfile's worker line, environment); an option given again wins over the line's.
CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    "Procfile": ("", {}),
    "+ quiet": (QUIET, {}),
    "+ -l WARNING": ("-l WARNING", {}),
    "+ no DB hook": ("", {"HOP_DB_HOOK": "0"}),
    "+ no health check": ("", {"HOP_HEALTH_CHECKS": "0"}),
    "+ early ack": ("", {"HOP_ACKS_LATE": "0"}),
    "+ prefetch 4": ("--prefetch-multiplier 4", {}),
    "+ synchronous_commit off": ("", {"HOP_SYNCHRONOUS_COMMIT": "off"}),
    "prefork 2": ("--pool prefork --concurrency 2", {}),
    "threads 2": ("--pool threads --concurrency 2", {}),
    "solo": ("--pool solo", {}),
}
BASELINE = "Procfile"
KINDS = ("ping", "dispatch", "dispatch+")
BURST = 20
SINK = "hop-sink"  # a queue no worker reads: publishing alone


class Worker:
    """One ``events`` worker: the Procfile's line run through ``sh -c`` in its own session, with the configuration's
    options, on a queue and node name of its own (all configurations run at once, sampled in turn)."""

    def __init__(self, index: int, work: Path, env: dict[str, str], options: str, extra: dict[str, str]) -> None:
        from config.procfile import procfile
        from harness.util import ROOT

        self.queue = f"hop-{index}"
        self.trace_dir = work
        line = procfile()["worker"]
        self.command = f"{line} -I bench.scenarios.hop {options} -Q {self.queue} -n hop{index}@%h".replace("  ", " ")
        path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self.env = {**env, **extra, TRACE_DIR: str(work), "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        self.process = Process("worker", ["/bin/sh", "-c", "exec " + self.command], env=self.env, log_dir=work)

    def start(self) -> None:
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        for old in self.trace_dir.glob("trace-*.tsv"):
            old.unlink()
        self.process.start()

    def wait_ready(self, deadline: float) -> dict:
        while (ready := self.ready()) is None:
            if not self.process.alive or time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready ({self.command}):\n{tail(self.process.log())}")
            time.sleep(0.1)
        return ready

    def ready(self) -> dict | None:
        for kind, _, _, extra in self.trace():
            if kind == "ready":
                return extra
        return None

    def trace(self) -> list[tuple[str, str, float, dict]]:
        rows = []
        for path in self.trace_dir.glob("trace-*.tsv"):
            for line in path.read_text().splitlines():
                kind, task_id, at, extra = line.split("\t", 3)
                rows.append((kind, task_id, float(at), json.loads(extra) if extra else {}))
        return rows

    def stop(self) -> None:
        self.process.stop(timeout=20)


# --- Driver (a Django process of its own: python -m bench.scenarios.hop measure) ------------------------------


def _stages(samples: list[dict], traces: dict[str, dict]) -> list[dict]:
    """Per sample, the steps in ms from the driver's, the worker's and the receiver's timestamps."""
    rows = []
    for sample in samples:
        t = traces.get(sample["task_id"], {})
        row = {"config": sample["config"], "kind": sample["kind"], "publish": (sample["pub1"] - sample["pub0"]) * 1000}

        def step(name: str, a: float | None, b: float | None, row: dict = row) -> None:
            if a is not None and b is not None:
                row[name] = (b - a) * 1000

        step("broker → received", sample["pub1"], t.get("received"))
        step("received → pool prerun", t.get("received"), t.get("prerun_first"))
        step("prerun hooks", t.get("prerun_first"), t.get("prerun_last"))
        step("publish → task start", sample["pub0"], t.get("prerun_last"))
        if sample["kind"] == "ping":
            step("POST → receiver", t.get("start"), sample.get("arrived"))
            step("publish → arrival", sample["pub0"], sample.get("arrived"))
        else:
            step("task start → delivery arrival", t.get("prerun_last"), sample.get("delivered"))
            step("publish → delivery arrival", sample["pub0"], sample.get("delivered"))
            step("task body", t.get("prerun_last"), t.get("postrun_first"))
        if body := t.get("body"):
            step("dispatch transaction", t.get("prerun_last"), body["committed_at"])
            step("commit → delivery arrival", body["committed_at"], sample.get("delivered"))
            row.update({
                "dispatch() ms": body["total"] * 1000,
                "CPU ms": body["cpu"] * 1000,
                "health checks": body["health_n"],
                "health check ms": body["health"] * 1000,
                "tx queries": body["tx_queries"],
                "tx queries ms": body["tx_queries_s"] * 1000,
                "tx commit ms": body["tx_commit"] * 1000,
                "after: queries": body["after_queries"],
                "after: queries ms": body["after_queries_s"] * 1000,
                "after: commits": body["after_commits"],
                "after: commits ms": body["after_commits_s"] * 1000,
                "after-commit ms": body["hooks"] * 1000,
                "sql": body["sql"],
            })  # fmt: skip
        rows.append(row)
    return rows


def _events(count: int) -> list[str]:
    """Fresh undispatched copies of the team's latest ADD_ARTIFACT_ALIAS event."""
    from registry.models import Event

    template = Event.objects.filter(team__name=TEAM, type="ADD_ARTIFACT_ALIAS").order_by("-created_at").first()
    if template is None:
        raise RuntimeError(f"no ADD_ARTIFACT_ALIAS event of team {TEAM}: run the scenario's setup first")
    fields = ("team_id", "type", "registered_model_id", "model_version_id", "artifact_version_id", "alias",
              "author_id", "depth", "context")  # fmt: skip
    copies = [Event(**{f: getattr(template, f) for f in fields}) for _ in range(count)]
    Event.objects.bulk_create(copies, batch_size=1000)
    return [str(e.pk) for e in copies]


def _flush_broker() -> None:
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def _tasks() -> dict[str, object]:
    from registry.tasks import event_dispatch_task

    return {"ping": ping, "dispatch": event_dispatch_task, "dispatch+": dispatch_instrumented}


def _sample(receiver: ReceiverProcess, config: str, queue: str, kind: str, argument: str) -> dict:
    task_id = str(uuid.uuid4())
    task = _tasks()[kind]
    hooks = len(receiver.hooks)
    pub0 = time.monotonic()
    task.apply_async(args=(argument,), task_id=task_id, queue=queue)
    pub1 = time.monotonic()
    arrived = receiver.wait_key(task_id, 10.0)
    if arrived is None:
        raise RuntimeError(f"{kind} task {task_id} on {queue} did not report within 10 s (see its worker's log)")
    sample = {"config": config, "kind": kind, "task_id": task_id, "pub0": pub0, "pub1": pub1, "arrived": arrived}
    if kind != "ping":  # the dispatch's first attempt reached the receiver before the task reported
        sample["delivered"] = receiver.wait_hook(hooks, 2.0)
        if sample["delivered"] is None:
            raise RuntimeError(f"{kind} task {task_id} on {queue} delivered nothing (see its worker's log)")
    return sample


def _closed_loop(receiver: ReceiverProcess, workers: dict[str, Worker], events: list[str], *, rounds: int,
                 gap: float) -> list[dict]:  # fmt: skip
    """``rounds`` rounds; in each, every configuration runs each kind once (orders rotate), one task in flight."""
    names = list(workers)
    samples = []
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            for kind in KINDS[index % 3 :] + KINDS[: index % 3]:
                argument = events.pop() if kind != "ping" else str(uuid.uuid4())
                samples.append(_sample(receiver, name, workers[name].queue, kind, argument))
                time.sleep(gap)
    return samples


def _burst(receiver: ReceiverProcess, queue: str) -> float:
    """``BURST`` pings published back to back: ms from the first publish to the last arrival, per task."""
    ids = [str(uuid.uuid4()) for _ in range(BURST)]
    started = time.monotonic()
    for task_id in ids:
        ping.apply_async(args=(task_id,), task_id=task_id, queue=queue)
    last = max(receiver.wait_key(task_id, 20.0) or float("nan") for task_id in ids)
    return (last - started) * 1000 / BURST


def _monitor(action: object, *, db: int, seconds: float = 0.5) -> list[list[str]]:
    """Redis commands issued on ``db`` while ``action()`` runs: [client port, command]."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    seen: list[list[str]] = []
    started, stop = threading.Event(), threading.Event()

    def listen() -> None:
        with client.monitor() as monitor:
            started.set()
            while not stop.is_set():
                try:
                    command = monitor.next_command()
                except (redis.RedisError, OSError):
                    return
                except Exception:  # noqa: S112 (redis-py cannot parse every argument MONITOR shows: skip that line)
                    continue
                if command.get("db") == db:
                    seen.append([str(command.get("client_port", "")), command["command"].split(" ")[0].upper()])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    started.wait(5)
    time.sleep(0.2)
    action()
    time.sleep(seconds)
    stop.set()
    redis.Redis.from_url(settings.CELERY_BROKER_URL).ping()  # wakes the monitor up to see ``stop``
    thread.join(timeout=2)
    return seen


def _publish_figures(receiver: ReceiverProcess, *, count: int, db: int, queue: str, events: list[str]) -> dict:
    """What publishing costs in a Django process: apply_async to a queue nobody reads (so no worker competes for
    the CPU), back to back and after 5 ms idle, with and without the retry wrapper; raw Redis round trips."""
    import redis
    from django.conf import settings
    from kombu.serialization import dumps

    raw = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    raw.ping()
    figures: dict[str, list[float]] = {}

    def timed(label: str, call: object, idle: float) -> None:
        values = figures.setdefault(label, [])
        for _ in range(count):
            if idle:
                time.sleep(idle)
            at = time.monotonic()
            call()
            values.append((time.monotonic() - at) * 1000)

    def publish(**options: object) -> None:
        ping.apply_async(args=(str(uuid.uuid4()),), queue=SINK, **options)

    for idle, suffix in ((0.0, ""), (0.005, ", after 5 ms idle")):
        timed(f"redis PING{suffix}", raw.ping, idle)
        timed(f"redis LPUSH{suffix}", lambda: raw.lpush("hop-raw", "x" * 900), idle)
        timed(f"apply_async{suffix}", publish, idle)
        timed(f"apply_async(retry=False){suffix}", lambda: publish(retry=False), idle)
    raw.delete("hop-raw")
    consumed = figures.setdefault("apply_async to a worker's queue, after 5 ms idle", [])
    for _ in range(count):  # the LPUSH wakes a worker's BRPOP: three processes want the two cores at once
        time.sleep(0.005)
        task_id = str(uuid.uuid4())
        at = time.monotonic()
        ping.apply_async(args=(task_id,), task_id=task_id, queue=queue)
        consumed.append((time.monotonic() - at) * 1000)
        receiver.wait_key(task_id, 10.0)
    body = ((str(uuid.uuid4()),), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    at = time.monotonic()
    for _ in range(1000):
        dumps(body, serializer="json")
    figures["JSON body serialisation, µs"] = [(time.monotonic() - at) * 1000]
    one = str(uuid.uuid4())
    commands = {
        "ping": _monitor(lambda: ping.apply_async(args=(one,), task_id=one, queue=queue), db=db),
        "dispatch": _monitor(lambda: _tasks()["dispatch"].apply_async(args=(events.pop(),), queue=queue), db=db),
    }
    return {"figures": figures, "commands": commands}


def _first_publish() -> dict[str, float]:
    """A process's first publish, in parts: loading the tasks (app finalize), connecting, then apply_async."""
    from celery import current_app

    at = time.monotonic()
    current_app.finalize(auto=True)
    finalized = time.monotonic()
    with current_app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
    connected = time.monotonic()
    ping.apply_async(args=("first",), queue=SINK)
    published = time.monotonic()
    ping.apply_async(args=("second",), queue=SINK)
    second = time.monotonic()
    return {
        "finalize (load tasks)": (finalized - at) * 1000,
        "connect": (connected - finalized) * 1000,
        "first apply_async": (published - connected) * 1000,
        "second apply_async": (second - published) * 1000,
    }


def measure(args: dict) -> dict:
    """Everything after setup, in this process (Django set up with the stack's environment)."""
    import django
    import psutil

    django.setup()
    from django.conf import settings

    first = _first_publish()
    work = Path(args["work"])
    rounds, warmup, gap = args["count"], args["warmup"], args["gap"]
    names = args.get("only") or list(CONFIGS)
    db = int(urlsplit(settings.CELERY_BROKER_URL).path.strip("/") or 0)
    events = _events(len(names) * 2 * (rounds + warmup) + 20)
    stack_env = dict(os.environ)
    with ReceiverProcess(keep_alive=True, name="hop") as receiver, contextlib.ExitStack() as stack:
        stack_env[RECEIVER] = receiver.url_for("/hop")
        from automations.models import Webhook

        Webhook.objects.filter(team__name=TEAM).update(url=receiver.url_for("/hop"))  # the first attempts come here
        workers = {}
        for index, name in enumerate(names):
            options, extra = CONFIGS[name]
            workers[name] = Worker(index, work / f"worker-{index}", stack_env, options, extra)
        deadline = time.monotonic() + 90
        alone = workers[names[0]]
        alone.start()
        stack.callback(alone.stop)
        ready = {names[0]: alone.wait_ready(deadline)}
        # The first configuration alone: what one hop asks of Redis, and publishing with nothing else running.
        _closed_loop(receiver, {names[0]: alone}, events, rounds=warmup, gap=gap)
        publish = _publish_figures(receiver, count=max(50, rounds // 2), db=db, queue=alone.queue, events=events)
        for worker in workers.values():
            if worker is not alone:
                worker.start()
                stack.callback(worker.stop)
        deadline = time.monotonic() + 90
        ready.update({name: worker.wait_ready(deadline) for name, worker in workers.items()})
        print(f"  {len(workers)} workers ready; {rounds} rounds", file=sys.stderr, flush=True)
        _closed_loop(receiver, workers, events, rounds=warmup, gap=gap)
        psutil.cpu_times_percent(interval=None)  # the next call reports the window since this one
        started = time.monotonic()
        samples = _closed_loop(receiver, workers, events, rounds=rounds, gap=gap)
        elapsed = time.monotonic() - started
        busy = 100 - psutil.cpu_times_percent(interval=None).idle
        bursts: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(3 if rounds < 100 else 6):
            for name, worker in workers.items():
                bursts[name].append(_burst(receiver, worker.queue))
                time.sleep(0.1)
        time.sleep(0.5)
        traces: dict[str, dict] = {}
        for worker in workers.values():
            for kind, task_id, at, extra in worker.trace():
                traces.setdefault(task_id, {})[kind] = extra if kind == "body" else at
    _flush_broker()
    return {
        "rounds": rounds,
        "warmup": warmup,
        "gap_ms": gap * 1000,
        "elapsed_s": round(elapsed, 1),
        "machine_busy_pct": round(busy, 1),
        "loadavg": os.getloadavg(),
        "first_publish_ms": first,
        "configs": {
            name: {
                "command": w.command,
                "env": CONFIGS[name][1],
                "ready": ready[name],
                "burst_ms_per_task": bursts[name],
            }
            for name, w in workers.items()
        },
        "samples": _stages(samples, traces),
        "publish": publish,
    }


# --- Setup, tables, entry points ------------------------------------------------------------------------------


def setup(context: object, env: dict[str, str]) -> None:
    """Team, model versions, a signed webhook and its automation through the API (the Procfile's ``web`` alone,
    events left undispatched), then one alias move: its ADD_ARTIFACT_ALIAS event is the one the workers dispatch
    copies of."""
    from harness.stack import Stack

    from ..api import PAYLOAD, admin_api, team_create

    work = context.scenario_dir(f"{NAME}-setup")
    with Stack(work, env, roles=("web",)) as stack:
        api = admin_api(stack)
        team = team_create(api, TEAM)
        # The measurement points it at its own receiver once that listens.
        team.automation("deploy", team.webhook("ci", "http://127.0.0.1:9/ci"), PAYLOAD)
        team.alias("production", "v0")


def _summaries(result: dict) -> dict:
    from ..report import summary

    grouped: dict[str, dict[str, dict[str, list[float]]]] = {}
    for row in result["samples"]:
        steps = grouped.setdefault(row["config"], {}).setdefault(row["kind"], {})
        for key, value in row.items():
            if isinstance(value, int | float):
                steps.setdefault(key, []).append(value)
    out = {}
    for name, kinds in grouped.items():
        out[name] = {kind: {k: summary(v) for k, v in steps.items()} for kind, steps in kinds.items()}
        out[name]["burst ms per task"] = summary(result["configs"][name]["burst_ms_per_task"])
    return out


def print_tables(result: dict) -> None:
    from collections import Counter

    from ..report import percentile, summary, table

    summaries = result["summary"]
    nan = float("nan")

    def cell(s: dict | None, key: str = "p50") -> float:
        return s.get(key, nan) if s else nan

    print(f"\n## hop: {result['rounds']} rounds (each configuration x each kind, one task in flight, "
          f"{result['gap_ms']:.0f} ms apart), machine {result['machine_busy_pct']}% busy\n")  # fmt: skip
    rows = []
    for name, s in summaries.items():
        ping, start, delivered = (s["ping"]["publish → arrival"], s["dispatch"]["publish → task start"],
                                  s["dispatch"]["publish → delivery arrival"])  # fmt: skip
        rows.append((
            name, cell(ping), cell(ping, "p99"), cell(start), cell(start, "p99"), cell(delivered),
            cell(delivered, "p95"), cell(delivered, "p99"), cell(s["burst ms per task"]),
        ))  # fmt: skip
    print(table(["worker, ms", "ping: publish → arrival p50", "p99", "dispatch: publish → task start p50", "p99",
                 "dispatch: publish → delivery arrival p50", "p95", "p99", f"burst of {BURST} pings: ms/task"],
                rows))  # fmt: skip

    print("\nwhere the time goes, p50 ms (dispatch = registry.tasks.event_dispatch; dispatch+ = instrumented):\n")
    steps = ("publish", "broker → received", "received → pool prerun", "prerun hooks", "POST → receiver",
             "task start → delivery arrival", "task body")  # fmt: skip
    rows = []
    for name, s in summaries.items():
        for kind in KINDS:
            rows.append((name if kind == "ping" else "", kind, *(cell(s[kind].get(step)) for step in steps)))
    print(table(["worker", "kind", *steps], rows))

    print("\ninside dispatch+ (outbox.event_dispatch and its first attempt), p50 ms:\n")
    inner = ("dispatch() ms", "CPU ms", "health checks", "health check ms", "dispatch transaction", "tx queries",
             "tx queries ms", "tx commit ms", "commit → delivery arrival", "after-commit ms", "after: queries",
             "after: queries ms", "after: commits", "after: commits ms")  # fmt: skip
    rows = [(name, *(cell(s["dispatch+"].get(k)) for k in inner)) for name, s in summaries.items()]
    print(table(["worker", *inner], rows))

    base = [r for r in result["samples"] if r["config"] == BASELINE and r.get("sql")]
    if base:
        print(f"\nqueries of one dispatch ({BASELINE}), p50 / p95 ms over {len(base)} dispatches:\n")
        rows = []
        for index, (sql, _) in enumerate(base[0]["sql"]):
            took = [r["sql"][index][1] for r in base if len(r["sql"]) > index]
            rows.append((index + 1, sql[:80], percentile(took, 50), percentile(took, 95)))
        print(table(["#", "SQL", "p50", "p95"], rows))

    publish = result["publish"]
    first = ", ".join(f"{k} {v:.1f}" for k, v in result["first_publish_ms"].items())
    print(f"\npublishing from a Django process, ms (its first publish: {first}):\n")
    rows = [(label, *(summary(v).get(k, nan) for k in ("n", "p50", "p95", "p99")))
            for label, v in publish["figures"].items()]  # fmt: skip
    print(table(["", "n", "p50", "p95", "p99"], rows))
    for kind, seen in publish["commands"].items():
        commands = Counter(command for _, command in seen)
        clients = len({client for client, _ in seen})
        print(f"\nRedis commands for one {kind} published and consumed ({clients} client connections):")
        print("  " + ", ".join(f"{command} x{n}" for command, n in sorted(commands.items())))


def run(context: object) -> dict:
    """``bench/run hop``: setup through the API, then the measurement in a Django process of its own."""
    env = dict(context.env)
    setup(context, env)
    out = context.scenario_dir(NAME) / "measure.json"
    spec = {"work": str(context.scenario_dir(NAME)), "count": 40 if context.quick else 200, "warmup": 5,
            "gap": 0.005, "only": getattr(context, "only", None), "out": str(out)}  # fmt: skip
    from ..stack import PYTHON, ROOT

    subprocess.run(  # noqa: S603
        [PYTHON, "-m", "bench.scenarios.hop", "measure", json.dumps(spec)], cwd=ROOT, env=env, check=True,
        timeout=1800,
    )  # fmt: skip
    result = json.loads(out.read_text())
    result["summary"] = _summaries(result)
    print_tables(result)
    return result


def _standalone(argv: list[str]) -> int:
    """Run the scenario on a database and Redis db of its own (not bench/run's), e.g. beside other benchmarks."""
    import argparse

    import psycopg
    import redis
    from cryptography.fernet import Fernet

    from ..report import RESULTS, Context, write_result
    from ..stack import PG_SERVER, PYTHON, ROOT, base_env

    parser = argparse.ArgumentParser(prog="python -m bench.scenarios.hop")
    parser.add_argument("--db", default="registry_hop")
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", choices=list(CONFIGS), metavar="CONFIG")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    work = RESULTS / "work-hop"
    (work / "var").mkdir(parents=True, exist_ok=True)
    env = base_env(secrets_key=Fernet.generate_key().decode(), var_dir=work / "var")
    env.update(DATABASE_URL=f"{PG_SERVER}/{args.db}", CELERY_BROKER_URL=f"redis://127.0.0.1:6379/{args.redis_db}")
    env.update(pair.split("=", 1) for pair in args.env)
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.db}"')
    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    with (work / "migrate.log").open("ab") as log:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, stdout=log, stderr=log,  # noqa: S603
                       check=True, timeout=300)  # fmt: skip
    context = Context(
        env=env, work_dir=work, quick=args.quick, command=shlex.join(["python", "-m", __spec__.name, *argv])
    )
    context.only = args.only  # type: ignore[attr-defined]
    result = run(context)
    print(f"\nwrote {write_result(NAME, context, result)}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["measure"]:
        spec = json.loads(argv[1])
        Path(spec["out"]).write_text(json.dumps(measure(spec)))
        return 0
    return _standalone(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
