"""`manage.py check --deploy` on the production environment the README documents reports no issue."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from tests.conftest import _test_database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]


def documented_production_environment() -> dict[str, str]:
    """The README's block under "Behind a TLS-terminating proxy", comments dropped."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Behind a TLS-terminating proxy.*?```sh\n(.*?)```", readme, re.S)
    assert block, "the README's production environment block is gone"
    pairs = (line.split("#")[0].strip() for line in block[1].splitlines())
    return dict(pair.split("=", 1) for pair in pairs if pair)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_documented_production_settings_pass_the_deploy_checks(tmp_path):
    documented = documented_production_environment()
    assert documented["SECURE_HSTS_SECONDS"] == "31536000" and documented["DEBUG"] == "false"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "VAR_DIR": str(tmp_path / "var"),
        **documented,
    }
    collected = manage("collectstatic", "--noinput", "-v", "0", env=env)
    assert collected.returncode == 0, collected.stderr

    checked = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout


def test_without_collectstatic_the_checks_say_so(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SECRETS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "VAR_DIR": str(tmp_path / "var"),
        **documented_production_environment(),
    }
    checked = manage("check", env=env)
    assert "core.W001" in checked.stderr + checked.stdout
    assert "collectstatic" in checked.stderr + checked.stdout
