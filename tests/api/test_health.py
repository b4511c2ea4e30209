"""/healthz and /readyz: unauthenticated, answered before host checks, on the real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from django.db.migrations.recorder import MigrationRecorder

from core import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_migrations_seen(monkeypatch):
    monkeypatch.setattr(health, "_migrated", type(health._migrated)())


def test_healthz_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_probes_answer_whatever_the_host_header(client):
    # A Kubernetes probe's Host is the pod's IP, which ALLOWED_HOSTS does not list.
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/readyz/", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert client.get("/api/v1/teams/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_readyz_is_ready_on_a_migrated_database_and_a_live_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_an_unapplied_migration(client):
    last = MigrationRecorder.Migration.objects.filter(app="automations").order_by("-id").first()
    last.delete()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == "ok"
    assert f"automations.{last.name}" in body["checks"]["database"]
    assert "1 migration(s) not applied" in body["checks"]["database"]


def test_readyz_names_an_unreachable_broker_without_its_password(client, settings):
    from harness.util import free_port

    settings.CELERY_BROKER_URL = f"redis://:hunter2-broker-password@127.0.0.1:{free_port()}/5"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] != "ok"
    assert "hunter2" not in response.content.decode()


def test_readyz_names_an_unreachable_database_without_its_password(client, monkeypatch):
    from django.db import OperationalError, connection

    def refuse() -> None:
        raise OperationalError('connection to "db" failed: password "pg-secret-pw" refused\nmore detail')

    monkeypatch.setitem(connection.settings_dict, "PASSWORD", "pg-secret-pw")
    monkeypatch.setattr(connection, "ensure_connection", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("OperationalError: ")
    assert "pg-secret-pw" not in response.content.decode()


def test_readyz_checks_the_filesystem_brokers_folders(client, settings, tmp_path):
    for name in ("queue", "processed"):
        (tmp_path / name).mkdir()
    settings.CELERY_BROKER_TRANSPORT = "config.filesystem_broker:Transport"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(tmp_path / "queue"),
        "data_folder_out": str(tmp_path / "queue"),
        "processed_folder": str(tmp_path / "processed"),
        "control_folder": str(tmp_path / "control"),
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == f"{tmp_path / 'control'} is missing"
    (tmp_path / "control").mkdir()
    assert client.get("/readyz").status_code == 200


def test_probes_refuse_other_methods(client):
    response = client.post("/healthz", data="{}", content_type="application/json")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert "GET" in response.json()["detail"]
