"""System checks that turn late failures into a message at deploy time: each fires on the mistake and is quiet
once it is fixed."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.core.management import call_command

MANIFEST_STORAGE = {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}


def ids(**kwargs) -> set[str]:
    return {message.id for message in run_checks(**kwargs)}


def test_a_missing_static_manifest_is_named_until_collectstatic_has_run(settings, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": MANIFEST_STORAGE}

    assert "core.W001" in ids()

    call_command("collectstatic", "--noinput", verbosity=0)
    assert "core.W001" not in ids()


def test_the_file_broker_with_a_server_database_is_named(settings):
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    settings.CELERY_BROKER_URL = "filesystem://"
    assert "core.W002" in ids()

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert "core.W002" not in ids()


@pytest.mark.parametrize(("workers", "named"), [("2", True), ("1", False)])
def test_a_process_local_cache_with_several_web_workers_is_named(settings, monkeypatch, workers, named):
    monkeypatch.setenv("WEB_CONCURRENCY", workers)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert ("core.W003" in ids()) is named


def test_the_shared_cache_the_settings_choose_is_not_named(settings, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert settings.CACHES["default"]["BACKEND"].endswith("RedisCache")  # the tests' broker is Redis
    assert "core.W003" not in ids()


def test_alert_emails_that_would_only_be_printed_are_named_at_deploy(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    assert "alerts.W001" in ids(include_deployment_checks=True)
    assert "alerts.W001" not in ids()  # the embedded default prints them, and says nothing

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "alerts.W001" not in ids(include_deployment_checks=True)
