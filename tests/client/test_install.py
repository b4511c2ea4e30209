"""The client as an engineer installs it: ``pip install ./client`` into a fresh virtualenv, without Django, then
the ``registry`` command against the live server. One virtualenv serves the whole session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"
# requests and what it needs, pip and (on Python 3.11) the setuptools venv brings
ALLOWED = {"registry-client", "requests", "urllib3", "idna", "certifi", "charset-normalizer", "pip", "setuptools"}


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("client-venv")
    # A copy: pip's build folder stays out of the work tree.
    source = shutil.copytree(
        CLIENT_DIR, root / "client", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*cache")
    )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        timeout=300, capture_output=True, text=True,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    return venv


def test_the_client_installs_without_django_and_its_command_works_against_the_server(client_venv, account, tmp_path):
    python = client_venv / "bin" / "python"
    env = {
        "PATH": f"{client_venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "REGISTRY_URL": account.url,
        "REGISTRY_TOKEN": account.token,
    }

    def run(*argv) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    django = run(python, "-c", "import django")
    assert django.returncode == 1 and "No module named 'django'" in django.stderr
    installed = {p["name"].lower() for p in json.loads(run(python, "-m", "pip", "list", "--format", "json").stdout)}
    assert installed <= ALLOWED, installed - ALLOWED
    where = run(python, "-c", "import registry_client; print(registry_client.__file__)").stdout
    assert where.startswith(str(client_venv)), where

    source = write_tree(tmp_path / "out", {"model.bin": os.urandom(100_000), "README": b"hello"})
    put = run("registry", "artifact", "put", str(source), "--project", "training", "--name", "classifier", "--json")
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["state"] == "committed"
    get = run("registry", "get", "training/classifier", "-o", str(tmp_path / "got"))
    assert get.returncode == 0, get.stderr
    assert (tmp_path / "got" / "model.bin").read_bytes() == (source / "model.bin").read_bytes()
    missing = run("registry", "resolve", "training/nothing:v0")
    assert missing.returncode == 5 and missing.stderr.startswith("registry: error: Not found")
    assert run("registry", "--version").stdout.strip() == "registry-client 0.1.0"
