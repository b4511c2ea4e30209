"""Small helpers every harness user needs: ports, polling, log tails."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nothing listens on at the moment of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 20,
    interval: float = 0.05,
    message: str = "condition",
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something true (returned), or fail naming ``message`` and, when given,
    what ``details()`` says of the state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    extra = f"\n{details()}" if details else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}{extra}")


def tail(text: str, *, lines: int = 40, chars: int = 4000) -> str:
    """The end of a log for an error message: its last ``lines`` lines, at most ``chars`` characters of them (a
    traceback's last frames are what explain a failure)."""
    return "\n".join(text.splitlines()[-lines:])[-chars:]
