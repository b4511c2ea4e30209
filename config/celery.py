"""The Celery application. Settings come from Django's settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("registry_automations")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect(dispatch_uid="config.celery.task_db_connections_prerun")
def task_db_connections_prerun(task=None, **kwargs) -> None:
    """Treat a task like a request: keep the database connection for DB_CONN_MAX_AGE seconds, and drop it once it
    failed or is too old (with CONN_HEALTH_CHECKS a connection that died in between is replaced at its first query).

    Celery's own Django fixup would close it around every task (CELERY_DB_REUSE_MAX in settings turns that off):
    a new PostgreSQL connection per task cost several milliseconds on the path of every event and every delivery.
    """
    if _eager(task):
        return
    from django.db import close_old_connections

    from core.db import connections_resume

    close_old_connections()
    connections_resume()  # one used a moment ago skips its health check (core.db.HEALTH_CHECK_AFTER_IDLE)


@task_postrun.connect(dispatch_uid="config.celery.task_db_connections_postrun")
def task_db_connections_postrun(task=None, **kwargs) -> None:
    """After a task, as after a request: drop a connection that failed or is too old."""
    if _eager(task):
        return
    from django.db import close_old_connections

    from core.db import connections_pause

    close_old_connections()
    connections_pause()


def _eager(task) -> bool:
    """The task runs inside its caller (tests), in the caller's transaction: its connection is left alone."""
    return task is not None and getattr(task.request, "is_eager", False)


@after_setup_logger.connect(dispatch_uid="config.celery.json_logs")
@after_setup_task_logger.connect(dispatch_uid="config.celery.json_task_logs")
def json_logs(logger=None, **kwargs) -> None:
    """Celery replaces the root logger's handlers with its own (worker, beat): under LOG_FORMAT=json, theirs write
    JSON too."""
    from django.conf import settings

    if settings.LOG_FORMAT == "json" and logger is not None:
        from config.logs import json_handlers

        json_handlers(logger)
