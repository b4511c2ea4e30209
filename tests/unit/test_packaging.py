"""The server's distribution carries every package the settings load: a non-editable install (a wheel on a
production machine) would otherwise fail at start with an import error that no editable checkout shows."""

from __future__ import annotations

import tomllib
from pathlib import Path

from django.conf import settings
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]


def test_every_project_app_and_the_config_package_are_in_the_distribution():
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_packages(where=str(ROOT), include=found["include"]))
    ours = {app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()}
    assert ours, "no project app found in INSTALLED_APPS"
    missing = sorted((ours | {"config"}) - shipped)
    assert not missing, f"pyproject.toml's package list leaves out {missing}"
    assert not {"tests", "bench", "harness"} & shipped
