"""SHA-256 of local files, remembered by their stat so an unchanged file is never read twice.

A file's digest is kept with its size, modification and change times (nanoseconds), inode and device, and reused
only while all of them are the same. It is remembered only if the file was last modified at least
``RECENT_SECONDS`` before it was read, and not during the read: file times come from a clock that ticks every few
milliseconds, so a write within the same tick as an earlier one could otherwise leave the times unchanged.

The cache is an SQLite file: ``$REGISTRY_CACHE_DIR``, else ``$XDG_CACHE_HOME/registry``, else ``~/.cache/registry``,
then ``hashes.sqlite3``. Any trouble with it (read-only home, a locked or damaged file) only means files are hashed
again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["CHUNK", "HashCache", "cache_dir", "sha256_file"]

CHUNK = 1 << 20
RECENT_SECONDS = 0.1


def cache_dir() -> Path:
    if explicit := os.environ.get("REGISTRY_CACHE_DIR"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "registry"


def sha256_file(path: Path, *, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def _key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class HashCache:
    """``digest(path)`` returns the file's SHA-256, from the cache when its stat is unchanged. ``enabled=False``
    always reads the file."""

    def __init__(self, path: Path | None = None, *, enabled: bool = True) -> None:
        self.path = path or cache_dir() / "hashes.sqlite3"
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._enabled = enabled

    def _connect(self) -> sqlite3.Connection | None:
        if not self._enabled:
            return None
        if self._db is None:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=5, check_same_thread=False, isolation_level=None)
                db.execute(
                    "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                    "ctime_ns INTEGER, ino INTEGER, dev INTEGER, sha256 TEXT)"
                )
            except (OSError, sqlite3.Error):
                self._enabled = False
                return None
            self._db = db
        return self._db

    def lookup(self, path: Path, st: os.stat_result) -> str | None:
        with self._lock:
            db = self._connect()
            if db is None:
                return None
            try:
                row = db.execute(
                    "SELECT size, mtime_ns, ctime_ns, ino, dev, sha256 FROM digests WHERE path = ?", (str(path),)
                ).fetchone()
            except sqlite3.Error:
                return None
        if row is None or tuple(row[:5]) != _key(st):
            return None
        return str(row[5])

    def remember(self, path: Path, st: os.stat_result, sha256: str, *, read_at: float | None = None) -> None:
        """Keep ``sha256`` for the file as ``st`` describes it, read (or written) at ``read_at`` (default: now)."""
        if (time.time() if read_at is None else read_at) - st.st_mtime < RECENT_SECONDS:
            return
        with self._lock:
            db = self._connect()
            if db is None:
                return
            with contextlib.suppress(sqlite3.Error):
                db.execute(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", (str(path), *_key(st), sha256)
                )

    def digest(self, path: Path, *, on_bytes: Callable[[int], None] | None = None) -> tuple[int, str]:
        """(size, SHA-256) of the file at ``path``."""
        path = path.absolute()
        before = path.stat()
        if (known := self.lookup(path, before)) is not None:
            return before.st_size, known
        read_at = time.time()
        sha256 = sha256_file(path, on_bytes=on_bytes)
        after = path.stat()
        if _key(after) == _key(before):  # not written to while it was read
            self.remember(path, after, sha256, read_at=read_at)
        return after.st_size, sha256

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
