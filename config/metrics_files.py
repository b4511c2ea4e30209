"""The files of prometheus_client's multi-process directory: ``<kind>_<pid>.db``, one set per process."""

from __future__ import annotations

import os
import re
from pathlib import Path

_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_files_remove(directory: str | Path) -> list[Path]:
    """Remove the files of processes that are not running; returns them."""
    removed = []
    for path in Path(directory).glob("*.db"):
        match = _FILE.match(path.name)
        if match and not _running(int(match[1])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
