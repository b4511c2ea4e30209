"""System checks for mistakes that otherwise show up late, as a bare "Server Error (500)" or as limits that do not
hold: each names the setting and the fix."""

from __future__ import annotations

import os

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage
from django.core.checks import CheckMessage, Warning
from django.core.files.storage import storages


def static_manifest_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    """Without ``collectstatic``, a manifest storage cannot name any static file, and every admin page fails."""
    storage = storages["staticfiles"]
    if settings.DEBUG or not isinstance(storage, ManifestStaticFilesStorage):
        return []
    if storage.exists(storage.manifest_name):
        return []
    return [
        Warning(
            f"{settings.STATIC_ROOT}/{storage.manifest_name} does not exist: every admin page will fail with a "
            "server error.",
            hint="Run `manage.py collectstatic --noinput` (STATIC_ROOT) before starting the web processes.",
            id="core.W001",
        )
    ]


def broker_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The filesystem broker is one machine's folders; with a server database the workers are usually elsewhere."""
    server_database = settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
    if server_database and settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return [
            Warning(
                "CELERY_BROKER_URL is the embedded filesystem broker while the database is a server: tasks "
                "published here reach only workers on this machine.",
                hint="Set CELERY_BROKER_URL to a Redis, e.g. redis://host:6379/0.",
                id="core.W002",
            )
        ]
    return []


def cache_check(app_configs=None, **kwargs) -> list[CheckMessage]:
    """A process-local cache gives every web worker its own login counts: the limit multiplies with the workers."""
    backend = settings.CACHES["default"]["BACKEND"]
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
    if backend.endswith(("LocMemCache", "DummyCache")) and workers > 1:
        return [
            Warning(
                f"The default cache ({backend.rsplit('.', 1)[-1]}) is not shared by the {workers} web workers: the "
                "login limit counts per process.",
                hint="Set CACHE_URL to a Redis (or leave it unset with a Redis broker).",
                id="core.W003",
            )
        ]
    return []
