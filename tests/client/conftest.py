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

from registry import services
from registry.models import Team

from ..factories import make_project, make_team, make_user


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
