"""A progress bar for transfers, drawn on stderr (at most ten times a second) and only on a terminal."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Protocol, TextIO

__all__ = ["Bar", "NoProgress", "Progress", "bar_for", "human_bytes"]


class Progress(Protocol):
    """What transfers report to: ``start`` once with the total bytes, ``advance`` as bytes move, ``close`` last."""

    def start(self, label: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, count: int) -> None:
        pass

    def close(self) -> None:
        pass


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class Bar:
    """``label [#####.....]  45% 450.0 MB/1.0 GB 210.3 MB/s``, redrawn in place; thread-safe."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._lock = threading.Lock()
        self.label, self.total, self.done = "", 0, 0
        self._started = self._drawn = 0.0
        self._open = False

    def start(self, label: str, total: int) -> None:
        with self._lock:
            self.label, self.total, self.done = label, total, 0
            self._started = time.monotonic()
            self._drawn = 0.0
            self._open = True
            self._draw()

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count
            if time.monotonic() - self._drawn >= self.interval:
                self._draw()

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
                self._open = False

    def _draw(self) -> None:
        now = time.monotonic()
        self._drawn = now
        elapsed = max(now - self._started, 1e-6)
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        figures = (
            f"{fraction:4.0%} {human_bytes(self.done)}/{human_bytes(self.total)} {human_bytes(self.done / elapsed)}/s"
        )
        columns = shutil.get_terminal_size((80, 20)).columns
        width = max(10, min(40, columns - len(self.label) - len(figures) - 6))
        filled = int(width * fraction)
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {figures}"
        self.stream.write("\r" + line[: columns - 1])
        self.stream.flush()


def bar_for(*, quiet: bool, stream: TextIO | None = None) -> Progress:
    """A bar on stderr when it is a terminal and ``quiet`` is off; otherwise nothing is drawn."""
    stream = stream or sys.stderr
    if quiet or not stream.isatty():
        return NoProgress()
    return Bar(stream)
