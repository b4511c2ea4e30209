"""The database connection between API requests (``config.middleware.KeptDatabaseConnectionMiddleware``), on the
real PostgreSQL connection: a request right after another on its thread skips CONN_HEALTH_CHECKS' SELECT 1."""

from __future__ import annotations

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection
from django.http import HttpRequest, HttpResponse

import core.db
from config.middleware import KeptDatabaseConnectionMiddleware

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as in a web process: no test transaction


def test_a_request_right_after_another_skips_the_health_check_and_one_after_idling_does_not(monkeypatch):
    connection.close()  # a fresh connection: one an earlier test opened may be past CONN_MAX_AGE
    connection.ensure_connection()
    opened = connection.connection
    checked: list[bool] = []
    middleware = KeptDatabaseConnectionMiddleware(
        lambda request: checked.append(connection.health_check_done) or HttpResponse()
    )

    def request() -> None:
        request_started.send(sender=None)  # Django's close_old_connections: a health check is due again
        middleware(HttpRequest())
        request_finished.send(sender=None)

    request()
    request()
    assert checked[-1]  # no SELECT 1 before this request's first query
    monkeypatch.setattr(core.db, "HEALTH_CHECK_AFTER_IDLE", 0.0)
    request()
    assert not checked[-1]  # checked before its first query
    assert connection.connection is opened
