"""The engineers' client against the real server: pytest-django's live server on PostgreSQL, over HTTP.

Every test here gets an empty config file location and hash cache of its own (``REGISTRY_CONFIG``,
``REGISTRY_CACHE_DIR``), and none of the developer's ``REGISTRY_*`` settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from registry_client import Registry

from automations import services as automations
from automations.models import Automation
from registry import services
from registry.models import Team
from secrets_vault import services as vault

from ..factories import dispatch_all, make_project, make_team, make_user


@pytest.fixture(autouse=True)
def client_env(monkeypatch, tmp_path) -> Path:
    for name in [n for n in os.environ if n.startswith("REGISTRY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGISTRY_CONFIG", str(tmp_path / "home" / "registry" / "config.json"))
    monkeypatch.setenv("REGISTRY_CACHE_DIR", str(tmp_path / "home" / "cache"))
    return tmp_path / "home"


@dataclass
class Account:
    """A team admin with an API token, on the live server."""

    url: str
    team: Team
    user: object
    token: str


def make_account(url: str) -> Account:
    admin = make_user()
    team = make_team(admin=admin)
    make_project(team, "training")
    _, token = services.api_token_create(user=admin)
    return Account(url=url, team=team, user=admin, token=token)


@pytest.fixture
def account(live_server) -> Account:
    return make_account(live_server.url)


@pytest.fixture
def registry(account) -> Iterator[Registry]:
    with Registry(url=account.url, token=account.token, team=account.team.name) as client:
        yield client


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def deploy_automation(account: Account, url: str = "http://127.0.0.1:9/hook", **changes: object) -> Automation:
    """A webhook automation 'deploy' on classifier's production alias (by default to a port nothing answers), whose
    payload holds the team's secret TOKEN."""
    vault.secret_create(team=account.team, name="TOKEN", value="s3cr3t-value", user=account.user)
    webhook = automations.webhook_create(team=account.team, user=None, name="ci", url=url)
    values = {
        "name": "deploy", "event_type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$",
        "registered_model": "classifier", "action_type": "WEBHOOK", "webhook": webhook.pk,
        "payload": {"v": "${artifact_version_string}", "token": "${TOKEN}"},
    }  # fmt: skip
    return automations.automation_create(team=account.team, user=None, **{**values, **changes})


@pytest.fixture
def classifier_v0(registry, settings, tmp_path) -> None:
    """'classifier' v0 linked in the account's team, its events dispatched; webhooks to loopback admitted."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    (tmp_path / "m.bin").write_bytes(b"m")
    version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    registry.link(version.reference, "classifier")
    dispatch_all()
