"""gunicorn's settings beside the Procfile's flags (``--config python:config.gunicorn``): the hooks that keep
prometheus_client's multi-process directory (PROMETHEUS_MULTIPROC_DIR) right for /metrics."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _metrics_dir() -> str:
    from django.conf import settings  # the settings module alone: it sets PROMETHEUS_MULTIPROC_DIR

    return str(settings.PROMETHEUS_MULTIPROC_DIR)


def on_starting(server) -> None:
    """The web process starts: drop the files of processes that no longer run, so that counters of a previous
    run do not add up forever (Prometheus reads the drop as a counter reset). Files of live processes (Celery
    workers already running) stay."""
    from config.metrics_files import dead_files_remove

    dead_files_remove(_metrics_dir())


def child_exit(server, worker) -> None:
    """A web worker exited: its live gauges go (its counters stay counted, until the next start)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _metrics_dir())
