"""Health checks for load balancers and supervisors: ``/healthz`` (the process answers) and ``/readyz`` (it can do
its work: database reachable with every migration applied, broker reachable).

Both are answered by ``HealthMiddleware``, first in MIDDLEWARE, before anything else sees the request. A
Kubernetes probe arrives with the pod's IP as its Host header and over plain HTTP: answered later, it would meet
ALLOWED_HOSTS validation (400) and an HTTPS redirect (301), and weakening either for everyone is worse than
answering two fixed paths early. Nothing here touches sessions, users, CSRF or throttles.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse

# Seconds /readyz waits for the broker: a probe must answer well within its own timeout (Kubernetes' default: 1 s).
BROKER_CHECK_TIMEOUT = 1.0

_migrated = threading.Event()  # set once every migration was seen applied: they cannot become unapplied later


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is alive and answers; nothing else is consulted (no database, no broker)."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    """200 when the database and the broker are usable, else 503 naming each failing check and why."""
    checks = {"database": database_check(), "broker": broker_check()}
    failing = {name: why for name, why in checks.items() if why is not None}
    body = {"status": "unavailable" if failing else "ok", "checks": {name: why or "ok" for name, why in checks.items()}}
    return JsonResponse(body, status=503 if failing else 200)


def database_check() -> str | None:
    """None when the database answers and every migration is applied, else why not."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        connection.ensure_connection()
        if not _migrated.is_set():
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if plan:
                names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:5])
                more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
                return f"{len(plan)} migration(s) not applied: {names}{more}"
            _migrated.set()
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
    except Exception as exc:
        return _described(exc, secret=settings.DATABASES[DEFAULT_DB_ALIAS].get("PASSWORD") or "")
    return None


def broker_check(timeout: float = BROKER_CHECK_TIMEOUT) -> str | None:
    """None when the broker takes connections (Redis) or its folders exist and are writable (the embedded
    filesystem broker), else why not."""
    if getattr(settings, "CELERY_BROKER_TRANSPORT", "") == "config.filesystem_broker:Transport":
        return _folders_check(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    from config.celery import app

    try:
        with app.connection_for_write(settings.CELERY_BROKER_URL, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:
        return _described(exc, secret=urlsplit(settings.CELERY_BROKER_URL).password or "")
    return None


def _folders_check(options: dict) -> str | None:
    folders = {options[key] for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")}
    problems = []
    for folder in sorted(folders):
        path = Path(folder)
        if not path.is_dir():
            problems.append(f"{folder} is missing")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"{folder} is not writable")
    return "; ".join(problems) or None


def _described(exc: BaseException, *, secret: str) -> str:
    """The exception's type and first line, without the password should a driver quote its URL."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    return text.replace(secret, "***")[:300] if secret else text[:300]


PATHS: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}


class HealthMiddleware:
    """Answer GET and HEAD on ``PATHS`` before any other middleware (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = PATHS.get(request.path_info.rstrip("/") or "/")
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = JsonResponse({"detail": f"Method {request.method} not allowed: use GET."}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        response = view(request)
        response["Cache-Control"] = "no-store"
        return response
