"""The Celery application. Settings come from Django's settings under the CELERY_ namespace."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("registry_automations")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect(dispatch_uid="config.celery.task_db_connections_prerun")
@task_postrun.connect(dispatch_uid="config.celery.task_db_connections_postrun")
def task_db_connections(task=None, **kwargs) -> None:
    """Treat a task like a request: keep the database connection for DB_CONN_MAX_AGE seconds, and drop it once it
    failed or is too old (with CONN_HEALTH_CHECKS a connection that died in between is replaced at its first query).

    Celery's own Django fixup would close it around every task (CELERY_DB_REUSE_MAX in settings turns that off):
    a new PostgreSQL connection per task cost several milliseconds on the path of every event and every delivery.
    """
    if task is not None and getattr(task.request, "is_eager", False):
        return  # runs inside the caller's transaction (tests): leave its connection alone
    from django.db import close_old_connections

    close_old_connections()
