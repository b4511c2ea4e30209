"""Manifests on this side: the path rule, the entries of a local file or folder, references, the canonical digest.

The rules are the server's (README "Model files"): a path is relative POSIX, with no leading ``/``, no ``.`` or
``..`` segment, no empty segment, no backslash or control character. The client checks them both ways: before it
logs a folder, and before it writes anything a downloaded manifest names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadRequest, UnsafePath
from .hashcache import HashCache

__all__ = [
    "LocalFile",
    "Reference",
    "canonical_digest",
    "parse_reference",
    "path_check",
    "scan",
]

MAX_PATH = 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def path_check(path: object) -> str:
    """``path`` if it is a safe relative POSIX path, else ``UnsafePath`` saying why."""
    if not isinstance(path, str) or not path:
        raise UnsafePath(f"Manifest path {path!r} is not a non-empty string.")
    if len(path) > MAX_PATH:
        raise UnsafePath(f"Manifest path {path[:60]!r}... is longer than {MAX_PATH} characters.")
    if _BAD_PATH_CHARS.search(path):
        raise UnsafePath(f"Manifest path {path!r} holds a backslash or a control character.")
    if path.startswith("/"):
        raise UnsafePath(f"Manifest path {path!r} is absolute.")
    segments = path.split("/")
    if "" in segments:
        raise UnsafePath(f"Manifest path {path!r} has an empty segment.")
    if "." in segments or ".." in segments:
        raise UnsafePath(f"Manifest path {path!r} has a '.' or '..' segment.")
    return path


@dataclass(frozen=True)
class LocalFile:
    """A file to log: its path in the version, size, SHA-256, and where it is on this machine."""

    path: str
    size: int
    sha256: str
    source: Path

    def entry(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Reference:
    """Bytes stored elsewhere: recorded with the version, never fetched."""

    path: str
    uri: str
    size: int
    sha256: str

    def entry(self) -> dict[str, Any]:
        return {"path": self.path, "uri": self.uri, "size": self.size, "sha256": self.sha256}


def scan(
    source: str | os.PathLike[str],
    *,
    cache: HashCache,
    name: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> list[LocalFile]:
    """The files of ``source``: a file (logged as ``name`` or its own name) or every file under a folder, by path
    relative to it. Symbolic links to files are logged as the file they point to; links to folders are not
    followed."""
    root = Path(source)
    if root.is_file():
        size, sha256 = cache.digest(root, on_bytes=on_bytes)
        return [LocalFile(path=path_check(name or root.name), size=size, sha256=sha256, source=root)]
    if not root.is_dir():
        raise BadRequest(f"{root} is neither a file nor a folder.", field="path")
    files: list[LocalFile] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            local = Path(folder) / filename
            if not local.is_file():  # sockets, FIFOs, broken links
                continue
            relative = local.relative_to(root).as_posix()
            size, sha256 = cache.digest(local, on_bytes=on_bytes)
            files.append(LocalFile(path=path_check(relative), size=size, sha256=sha256, source=local))
    return sorted(files, key=lambda f: f.path)


_REFERENCE_KEYS = ("path", "uri", "size", "sha256")
_REFERENCE_SPLIT = re.compile(r",(?=(?:path|uri|size|sha256)=)")


def parse_reference(spec: str | dict[str, Any]) -> Reference:
    """A reference from a dict, a JSON object, or ``path=P,uri=U,size=N,sha256=H`` (the command line's form)."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("{"):
            try:
                spec = json.loads(text)
            except ValueError as exc:
                raise BadRequest(f"Reference {text!r} is not JSON: {exc}.", field="references") from exc
        else:
            pairs = [part.partition("=") for part in _REFERENCE_SPLIT.split(text)]
            spec = {key.strip(): value for key, sep, value in pairs if sep}
    if not isinstance(spec, dict) or any(key not in spec for key in _REFERENCE_KEYS):
        raise BadRequest(
            f"A reference needs {', '.join(_REFERENCE_KEYS)} (e.g. path=data/train.parquet,uri=s3://bucket/key,"
            f"size=52,sha256=<64 hex digits>); got {spec!r}.",
            field="references",
        )
    try:
        size = int(spec["size"])
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"Reference size {spec['size']!r} is not a whole number.", field="references") from exc
    sha256 = str(spec["sha256"]).lower()
    if not SHA256_RE.match(sha256):
        raise BadRequest(f"Reference sha256 {spec['sha256']!r} is not 64 hex digits.", field="references")
    return Reference(path=path_check(str(spec["path"])), uri=str(spec["uri"]), size=size, sha256=sha256)


def canonical_digest(files: Iterable[LocalFile], references: Iterable[Reference] = ()) -> str:
    """The SHA-256 of the canonical manifest, as the server computes the version's ``digest``."""
    items: list[dict[str, Any]] = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files]
    items += [{"path": r.path, "reference": r.uri, "sha256": r.sha256, "size": r.size} for r in references]
    items.sort(key=lambda item: str(item["path"]))
    text = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
