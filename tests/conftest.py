"""Test setup. The suite runs on PostgreSQL and Redis (``./dev test`` points it there); see tests/README."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.db import connection


def pytest_report_header(config) -> list[str]:
    db = settings.DATABASES["default"]
    return [
        f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or ''}:{db.get('PORT') or ''}/{db['NAME']}",
        f"broker: {settings.CELERY_BROKER_URL.split('@')[-1]}",
    ]


@pytest.fixture(autouse=True, scope="session")
def _real_services(django_db_setup, django_db_blocker) -> None:
    """Refuse to pass on SQLite unless asked to: the bar is the production stack."""
    if os.environ.get("ALLOW_SQLITE_TESTS") == "1":
        return
    with django_db_blocker.unblock():
        vendor = connection.vendor
    assert vendor == "postgresql", (
        "The suite runs on PostgreSQL: run it with ./dev test, or set DATABASE_URL=postgres://... "
        "(ALLOW_SQLITE_TESTS=1 to run on SQLite anyway)."
    )
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "The suite runs with a Redis broker (./dev test)."


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
