"""The database connection around Celery tasks (``config.celery``), on the real PostgreSQL connection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection

import core.db
from config import celery as celery_app

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as in a worker: no test transaction around it

TASK = SimpleNamespace(request=SimpleNamespace(is_eager=False))


def test_a_task_right_after_another_skips_the_health_check_and_one_after_idling_does_not(monkeypatch):
    # A fresh connection: one an earlier test opened may be past CONN_MAX_AGE, and the hooks rightly drop it.
    connection.close()
    connection.ensure_connection()
    opened = connection.connection

    celery_app.task_db_connections_postrun(task=TASK)
    celery_app.task_db_connections_prerun(task=TASK)
    assert connection.health_check_done  # no SELECT 1 before this task's first query
    assert connection.connection is opened  # the same connection, kept

    monkeypatch.setattr(core.db, "HEALTH_CHECK_AFTER_IDLE", 0.0)
    celery_app.task_db_connections_postrun(task=TASK)
    celery_app.task_db_connections_prerun(task=TASK)
    assert not connection.health_check_done  # checked before its first query, as a request's would be
    assert connection.connection is opened


def test_an_eager_task_leaves_its_callers_connection_alone():
    connection.ensure_connection()
    connection.health_check_done = False
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))
    celery_app.task_db_connections_postrun(task=eager)
    celery_app.task_db_connections_prerun(task=eager)
    assert not connection.health_check_done
