"""Tell a supervisor whether this machine's Celery workers and beat are alive: exit 0 when they are, 1 with a message
naming what is not.

Workers are asked through Celery's remote control (``active_queues``, a broadcast with a timeout), which works the
same on Redis and on the filesystem broker: a worker that answers is consuming, and its answer says which queues.
Only the nodes of this host count (the host part of a node name: the Procfile's ``-n events@%h``), so a healthy
worker on another machine never covers for a dead one here. A broadcast, not ``inspect``: ``inspect`` merges the
answers of workers sharing a node name into one. (Sharing one also shares a control queue, which on the filesystem
broker only one of them reads: each worker on a machine needs a name of its own.) Beat answers no remote control;
it touches a heartbeat file (config/beat.py).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.beat import heartbeat_path

QUEUES = ("events", "deliveries")


class Command(BaseCommand):
    help = "Exit 0 when this machine's Celery workers (events and deliveries queues) and beat are alive, else 1."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--queues",
            default=",".join(QUEUES),
            help="comma-separated queues some worker of this host must consume (empty: check no worker)",
        )
        parser.add_argument("--no-beat", action="store_true", help="do not check beat (it runs on another machine)")
        parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the workers' answers")
        parser.add_argument(
            "--beat-schedule",
            default=settings.CELERY_BEAT_SCHEDULE_FILENAME,
            help="beat's schedule file (beat --schedule), beside which it keeps its heartbeat",
        )
        parser.add_argument(
            "--beat-max-age", type=float, default=60.0, help="seconds after which beat's heartbeat is stale"
        )
        parser.add_argument("--hostname", default=socket.gethostname(), help="the host whose workers count")

    def handle(self, *args, **options) -> None:
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()]
        problems = []
        if queues:
            problems += workers_problems(queues, hostname=options["hostname"], timeout=options["timeout"])
        if not options["no_beat"]:
            problem = beat_problem(Path(options["beat_schedule"]), max_age=options["beat_max_age"])
            if problem:
                problems.append(problem)
        if problems:
            raise CommandError("; ".join(problems), returncode=1)
        checked = [f"workers ({', '.join(queues)})"] if queues else []
        checked += [] if options["no_beat"] else ["beat"]
        self.stdout.write(f"alive: {' and '.join(checked) or 'nothing checked'}")


def workers_problems(queues: list[str], *, hostname: str, timeout: float) -> list[str]:
    """What is wrong with this host's workers: an empty list when some worker consumes each of ``queues``."""
    from config.celery import app

    try:
        replies = app.control.broadcast("active_queues", reply=True, timeout=timeout)
    except Exception as exc:
        return [f"broker unreachable ({type(exc).__name__}), so no worker could be asked"]
    consumed: set[str] = set()
    for reply in replies or []:
        for node, answer in reply.items():
            if node.rsplit("@", 1)[-1] == hostname and isinstance(answer, list):
                consumed.update(q.get("name", "") for q in answer if isinstance(q, dict))
    missing = [q for q in queues if q not in consumed]
    if not missing:
        return []
    return [f"no worker of {hostname} consuming {', '.join(missing)} answered within {timeout:g} s"]


def beat_problem(schedule: Path, *, max_age: float) -> str | None:
    """Why beat is not alive (no heartbeat, or an old one), or None."""
    path = heartbeat_path(schedule)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"beat has no heartbeat at {path} (not started here, or another --beat-schedule)"
    if age > max_age:
        return f"beat's heartbeat is {age:.0f} s old (more than {max_age:g} s)"
    return None
