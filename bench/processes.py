"""What both runners of the Procfile's lines as real processes need: the benchmarks (bench/stack.py) and the
fault-injection suite (tests/fault_stack.py, which imports this module as ``bench.processes``).

Only the standard library here: the test suite imports it without the bench extra (psutil) installed.
"""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback TCP port nothing listens on at the moment of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
