"""Writing a version's files into a folder, safely.

Nothing is written outside the folder, whatever the manifest says: every path must pass the manifest path rule
(no absolute path, no ``..``), each folder on the way is created one level at a time and a symbolic link met there
must lead back inside, and files are opened without following a link. Bytes go to a partial file
(``.registry-partial/<sha256>`` in the folder) and are moved under their final name only once their SHA-256 is the
manifest's; a file already there with that SHA-256 is left alone. A transfer cut off mid-body resumes with
``Range`` from the bytes received (``If-Range`` guards against a changed file); if it keeps failing, the partial
file stays and the next download of the same file resumes from it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
from pathlib import Path

from .errors import DigestMismatch, ServerError, ServerUnreachable, UnsafePath
from .hashcache import CHUNK, HashCache
from .manifest import path_check
from .progress import Progress
from .transport import CONNECTION_ERRORS, Transport

__all__ = ["PARTIAL_DIR", "Downloader"]

PARTIAL_DIR = ".registry-partial"
# Bytes per read of a download. When a connection is cut, the piece being read is lost (urllib3 drops what it
# buffered for it), so a resume starts at most this much before where the transfer stopped.
READ_SIZE = 1 << 18
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class _CutOff(Exception):
    """The body ended before Content-Length bytes."""


# A transfer failing with one of these is resumed from the bytes received.
_RESUMABLE: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, _CutOff, ServerUnreachable)


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


class Downloader:
    """Downloads files into ``directory`` (created if missing). ``retries`` is how often a cut-off transfer is
    resumed before giving up."""

    def __init__(
        self,
        transport: Transport,
        directory: str | os.PathLike[str],
        *,
        cache: HashCache,
        progress: Progress,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.transport = transport
        self.cache = cache
        self.progress = progress
        self.retries = retries
        self.backoff = backoff
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.root = Path(directory).resolve()
        self._written: dict[str, Path] = {}  # sha256 -> a file written in this run

    # -- Paths --

    def folder(self, relative: list[str]) -> Path:
        """The folder ``root/relative``, made one level at a time; a link on the way must stay inside."""
        current = self.root
        for name in relative:
            current = current / name
            if current.is_symlink():
                if not _inside(current.resolve(), self.root):
                    raise UnsafePath(f"{current} is a symbolic link leading out of {self.root}; nothing written.")
                current = current.resolve()
            try:
                current.mkdir()
            except FileExistsError:
                if not current.is_dir():
                    raise UnsafePath(f"{current} exists and is not a folder.") from None
        return current

    def target(self, path: str) -> Path:
        """Where the manifest's ``path`` is written: checked, its folders made, inside the root."""
        segments = path_check(path).split("/")
        return self.folder(segments[:-1]) / segments[-1]

    def unchanged(self, target: Path, *, size: int, sha256: str) -> bool:
        if target.is_symlink() or not target.is_file() or target.stat().st_size != size:
            return False
        return self.cache.digest(target)[1] == sha256

    # -- Transfer --

    def fetch(self, url_path: str, *, path: str, size: int, sha256: str) -> bool:
        """Write the manifest's file ``path``; False when it was already there with its SHA-256."""
        target = self.target(path)
        if self.unchanged(target, size=size, sha256=sha256):
            self.progress.advance(size)
            return False
        if target.is_dir() and not target.is_symlink():
            raise UnsafePath(f"{target} is a folder; the manifest names a file there.")
        if (copy := self._written.get(sha256)) is not None and copy.is_file():
            partial = self._partial(sha256)
            shutil.copyfile(copy, partial, follow_symlinks=False)
            self.progress.advance(size)
        else:
            partial = self._receive(url_path, path=path, size=size, sha256=sha256)
        os.replace(partial, target)
        self._written[sha256] = target
        self.cache.remember(target.absolute(), target.stat(), sha256)
        return True

    def finish(self) -> None:
        """Remove the partial files' folder if nothing is left in it."""
        with contextlib.suppress(OSError):
            (self.root / PARTIAL_DIR).rmdir()

    def _partial(self, sha256: str) -> Path:
        return self.folder([PARTIAL_DIR]) / sha256

    def _receive(self, url_path: str, *, path: str, size: int, sha256: str) -> Path:
        partial = self._partial(sha256)
        state = _State()
        if partial.is_symlink() or (partial.is_file() and partial.stat().st_size > size):
            partial.unlink()
        elif partial.is_file():
            with open(partial, "rb") as handle:  # what an earlier run received: resumed from its end
                while chunk := handle.read(CHUNK):
                    state.add(chunk)
            self.progress.advance(state.offset)
        if size == 0:
            os.close(os.open(partial, _OPEN_FLAGS | os.O_TRUNC, 0o644))
        failures = 0
        while state.offset < size:
            try:
                self._receive_once(url_path, partial, state=state, size=size, sha256=sha256)
            except _RESUMABLE as exc:
                failures += 1
                if failures > self.retries:
                    raise ServerUnreachable(
                        f"The download of {path} was cut off at {state.offset} of {size} bytes ({failures} tries); "
                        f"the bytes received are kept in {partial} and the next download resumes from them."
                    ) from exc
                time.sleep(self.backoff * failures)
        if state.offset != size or state.digest.hexdigest() != sha256:
            partial.unlink(missing_ok=True)
            raise DigestMismatch(
                f"{path}: received {state.offset} bytes with SHA-256 {state.digest.hexdigest()}; the manifest says "
                f"{size} bytes with {sha256}. Nothing was written under {path}."
            )
        return partial

    def _receive_once(self, url_path: str, partial: Path, *, state: _State, size: int, sha256: str) -> None:
        headers = {"Accept": "*/*"}
        if state.offset:
            # If-Range: a file that is not this SHA-256 any more is sent whole (200), never spliced.
            headers |= {"Range": f"bytes={state.offset}-", "If-Range": f'"{sha256}"'}
        response = self.transport.request("GET", url_path, headers=headers, stream=True)
        with response:
            if response.status_code == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {state.offset}-"):
                    raise ServerError(f"Asked for bytes {state.offset}- and got {content_range!r}.")
                mode = os.O_APPEND
            elif response.status_code == 200:
                self.progress.advance(-state.offset)
                state.reset()
                mode = os.O_TRUNC
            else:
                raise ServerError(f"A download answered {response.status_code}.", status=response.status_code)
            try:
                fd = os.open(partial, _OPEN_FLAGS | mode, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePath(f"{partial} is a symbolic link; nothing written.") from exc
                raise
            with os.fdopen(fd, "wb") as out:
                for chunk in response.iter_content(READ_SIZE):
                    out.write(chunk)
                    state.add(chunk)
                    self.progress.advance(len(chunk))
                    if state.offset > size:
                        break  # more than the manifest's size: the digest check refuses it
        if state.offset < size:
            raise _CutOff(f"{state.offset} of {size} bytes")


class _State:
    """Bytes of the partial file so far and their running SHA-256."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.offset = 0
        self.digest = hashlib.sha256()

    def add(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.offset += len(chunk)
