"""SENTRY_DSN in real processes (the Procfile's gunicorn web process, a Celery worker): an error in a request or a
task is reported to a loopback receiver standing in for Sentry, and the report holds no secret in any encoding."""

from __future__ import annotations

import base64
import contextlib
import gzip
import os
import uuid
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings
from django.db import connection

from harness.processes import procfile_process
from harness.receiver import Receiver
from harness.util import free_port, wait_until
from registry.services import api_token_create
from secrets_vault.services import secret_create
from tests.conftest import _test_database_url
from tests.e2e.test_json_logs import answers
from tests.factories import make_team, make_user
from tests.unit.test_sentry_scrub import encodings

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

STORED = 'whsec_"stored"\\team-secret-value-91b2'  # in the database: the scrubber knows it
SENT = "value-in-the-request-body-never-stored-33c1"  # only in the failing request's body


def envelope_text(body: bytes, headers: dict[str, str]) -> str:
    encoding = {k.lower(): v for k, v in headers.items()}.get("content-encoding", "")
    if encoding == "gzip":
        body = gzip.decompress(body)
    elif encoding == "br":
        import brotli

        body = brotli.decompress(body)
    return body.decode()


@contextlib.contextmanager
def refusing_inserts(table: str) -> Iterator[None]:
    """Every INSERT into ``table`` fails with a database error whose message quotes a stored secret, as an error
    quoting an echoed value would."""
    quoted = f"{STORED} {base64.b64encode(STORED.encode()).decode()}"
    assert "'" not in quoted  # written into the SQL below as a literal
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE FUNCTION refuse_secret() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused: %', '{quoted}'; "
            "END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_secret BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_secret()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER refuse_secret ON {table}")
            cursor.execute("DROP FUNCTION refuse_secret()")


def test_a_failing_request_is_reported_without_any_secret(tmp_path):
    admin = make_user()
    team = make_team(admin=admin)
    secret_create(team=team, name="SIGNING", value=STORED, user=admin)
    _, token = api_token_create(user=admin)
    with Receiver() as sentry_receiver:
        port = free_port()
        env = {
            **os.environ, "DATABASE_URL": _test_database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PORT": str(port), "WEB_BIND": "127.0.0.1", "WEB_CONCURRENCY": "1",
            "SENTRY_DSN": f"http://public@127.0.0.1:{sentry_receiver.port}/1",
        }  # fmt: skip
        web = procfile_process("web", name="web", env=env, log_dir=tmp_path).start()
        try:
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, message="web", details=web.tail)
            with refusing_inserts("secrets_vault_secret"):
                response = requests.post(
                    f"http://127.0.0.1:{port}/api/v1/teams/{team.name}/secrets/",
                    json={"name": "NEW", "value": SENT}, headers={"Authorization": f"Token {token}"}, timeout=10,
                )  # fmt: skip
            assert response.status_code == 500
            assert SENT not in response.text and STORED not in response.text

            def event_arrived() -> list[str]:
                texts = [envelope_text(r.body, r.headers) for r in sentry_receiver.requests]
                return [t for t in texts if '"type":"event"' in t]

            wait_until(event_arrived, timeout=20, message="the error report", details=web.tail)
        finally:
            web.stop()
    assert all(r.path == "/api/1/envelope/" for r in sentry_receiver.requests)
    event = "\n".join(envelope_text(r.body, r.headers) for r in sentry_receiver.requests)  # every report, in full
    assert "/secrets/" in event and "refused: " in event  # the request and the error are reported
    for secret in (STORED, SENT, token):
        for form in encodings(secret):
            assert form not in event, form


def test_a_failing_task_in_a_worker_is_reported_without_any_secret(worker_factory):
    from automations.schedule import SEND_TASK
    from config.celery import app

    admin = make_user()
    team = make_team(admin=admin)
    secret_create(team=team, name="SIGNING", value=STORED, user=admin)
    with Receiver() as sentry_receiver:
        dsn = f"http://public@127.0.0.1:{sentry_receiver.port}/1"
        worker = worker_factory(queues="deliveries", pool="threads", concurrency=2, extra_env={"SENTRY_DSN": dsn})
        # The send slot the task takes first cannot be written: it fails with an error quoting a secret's value.
        with refusing_inserts("automations_sendslot"):
            app.send_task(SEND_TASK, args=[[str(uuid.uuid4())], "http://127.0.0.1:9", team.pk], queue="deliveries")
            worker.wait_for_log("raised unexpected", timeout=20)

        def event_arrived() -> bool:
            return any('"type":"event"' in envelope_text(r.body, r.headers) for r in sentry_receiver.requests)

        wait_until(event_arrived, timeout=20, message="the task's error report", details=worker.tail)
    event = "\n".join(envelope_text(r.body, r.headers) for r in sentry_receiver.requests)
    assert SEND_TASK in event and "refused: " in event
    for form in encodings(STORED):
        assert form not in event, form
