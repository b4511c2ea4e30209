"""The client package is fully typed: ``mypy --strict`` (client/pyproject.toml's settings) finds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"


def test_the_client_package_passes_mypy_strict(tmp_path):
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), "registry_client"],
        cwd=CLIENT_DIR, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (CLIENT_DIR / "registry_client" / "py.typed").exists()
