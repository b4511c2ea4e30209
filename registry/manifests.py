"""An artifact version's manifest: its files and references, their rules, canonical form and digest, and the
version's life from pending to committed.

Canonical form (what ``digest`` is the SHA-256 of): a JSON array with one object per entry, sorted by path (by
Unicode code point, which is also the order of the paths' UTF-8 bytes). A file is ``{"path", "sha256", "size"}``,
a reference ``{"path", "reference", "sha256", "size"}`` where ``reference`` is its URI; ``sha256`` is lowercase hex
and ``size`` an integer. The array is written with sorted keys, no whitespace (``,`` and ``:`` separators) and
non-ASCII characters as themselves, encoded in UTF-8. In Python::

    hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                   .encode()).hexdigest()

A version with files is created pending, receives them (``registry.blobs``), and is committed: then its digest is
set, each file entry names the team's blob, CREATE_ARTIFACT fires, and nothing about it changes again. A version
without files (references only, or nothing: the API's original form) is committed as it is created.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, Conflict, NotFound, TooLarge

from . import outbox, services
from .choices import VersionState
from .models import ArtifactVersion, Blob, ManifestEntry, Project

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_PATH = 1024
MAX_URI = 2048
REFERENCE_SCHEMES = ("s3", "gs", "https")
# Control characters (C0, DEL, C1) and backslashes: a path is the same on every machine that downloads it.
_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_BAD_URI_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f]")


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    sha256: str
    reference: str = ""  # a URI for bytes stored elsewhere; empty for a file the registry stores

    def canonical(self) -> dict:
        item = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.reference:
            item["reference"] = self.reference
        return item


# --- Rules ----------------------------------------------------------------------------------------------


def digest_check(value: object, *, field: str) -> str:
    """A SHA-256 as 64 hex digits (either case); returned in lowercase."""
    if isinstance(value, str) and SHA256_RE.match(value.lower()):
        return value.lower()
    raise ApplicationError(f"{value!r} is not a SHA-256: expected 64 hexadecimal digits.", field=field)


def path_check(value: object, *, field: str) -> str:
    """A relative POSIX path that means the same file everywhere: no absolute path, no ``.`` or ``..`` segment, no
    empty segment, no backslash, NUL or other control character."""
    if not isinstance(value, str) or not value:
        raise ApplicationError("A path is a non-empty string.", field=field)
    if len(value) > MAX_PATH:
        raise ApplicationError(f"A path has at most {MAX_PATH} characters.", field=field)
    if _BAD_PATH_CHARS.search(value):
        raise ApplicationError(
            f"Path {value!r} holds a backslash or a control character (NUL included); separate folders with '/'.",
            field=field,
        )
    if value.startswith("/"):
        raise ApplicationError(f"Path {value!r} is absolute; paths are relative to the version's root.", field=field)
    segments = value.split("/")
    if "" in segments:
        raise ApplicationError(f"Path {value!r} has an empty segment ('//' or a trailing '/').", field=field)
    if "." in segments or ".." in segments:
        raise ApplicationError(f"Path {value!r} has a '.' or '..' segment.", field=field)
    return value


def size_check(value: object, *, field: str, limit: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ApplicationError("A size is a whole number of bytes, 0 or more.", field=field)
    if limit is not None and value > limit:
        raise TooLarge(
            f"{value} bytes is over the limit of {limit} bytes per file (ARTIFACT_MAX_FILE_SIZE).", field=field
        )
    return value


def uri_check(value: object, *, field: str) -> str:
    """A reference's URI: ``s3://bucket/key``, ``gs://bucket/key`` or ``https://host/...``. It is recorded, never
    fetched."""
    if not isinstance(value, str) or not value:
        raise ApplicationError("A reference needs a URI.", field=field)
    if len(value) > MAX_URI or _BAD_URI_CHARS.search(value):
        raise ApplicationError(
            f"A URI has at most {MAX_URI} characters and no spaces or control characters.", field=field
        )
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ApplicationError(f"{value!r} is not a URI ({exc}).", field=field) from exc
    if parts.scheme not in REFERENCE_SCHEMES or not parts.netloc:
        schemes = ", ".join(f"{s}://" for s in REFERENCE_SCHEMES)
        raise ApplicationError(f"{value!r} is not a reference URI: use {schemes} with a bucket or host.", field=field)
    return value


def manifest_entries(*, files: Iterable[dict] = (), references: Iterable[dict] = ()) -> list[Entry]:
    """Check a manifest as the API receives it and return its entries, sorted by path. Errors name the entry, e.g.
    ``files.3.path`` (as the API names the fields of list items)."""
    entries: list[Entry] = []
    fields: dict[str, str] = {}  # path -> the field that named it first
    for kind, items in (("files", files), ("references", references)):
        for i, item in enumerate(items):
            where = f"{kind}.{i}"
            if not isinstance(item, dict):
                raise ApplicationError("An entry is an object.", field=where)
            path = path_check(item.get("path"), field=f"{where}.path")
            if path in fields:
                raise ApplicationError(f"Path {path!r} is already named by {fields[path]}.", field=f"{where}.path")
            fields[path] = where
            limit = settings.ARTIFACT_MAX_FILE_SIZE if kind == "files" else None
            entries.append(
                Entry(
                    path=path,
                    size=size_check(item.get("size"), field=f"{where}.size", limit=limit),
                    sha256=digest_check(item.get("sha256"), field=f"{where}.sha256"),
                    reference=uri_check(item.get("uri"), field=f"{where}.uri") if kind == "references" else "",
                )
            )
    if len(entries) > settings.ARTIFACT_MAX_ENTRIES:
        raise ApplicationError(
            f"A version holds at most {settings.ARTIFACT_MAX_ENTRIES} files and references (ARTIFACT_MAX_ENTRIES).",
            field="files",
        )
    for path, where in fields.items():
        # A path that is also another's folder could not be written out as both.
        folder = path.rpartition("/")[0]
        while folder:
            if folder in fields:
                raise ApplicationError(
                    f"{folder!r} ({fields[folder]}) is a file, so it cannot also be the folder of {path!r}.",
                    field=f"{where}.path",
                )
            folder = folder.rpartition("/")[0]
    return sorted(entries, key=lambda e: e.path)


def manifest_canonical(entries: Iterable[Entry]) -> bytes:
    items = sorted((e.canonical() for e in entries), key=lambda item: item["path"])
    return json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_digest(entries: Iterable[Entry]) -> str:
    return hashlib.sha256(manifest_canonical(entries)).hexdigest()


def _entries_of(version: ArtifactVersion) -> list[Entry]:
    rows = version.entries.order_by("path").values_list("path", "size", "sha256", "reference")
    return [Entry(path=p, size=n, sha256=h, reference=r) for p, n, h, r in rows]


# --- Services -------------------------------------------------------------------------------------------


def artifact_version_log(
    *,
    project: Project,
    collection_name: str,
    type: str,
    user: AbstractBaseUser | None,
    metadata: dict | None = None,
    digest: str = "",
    description: str = "",
    files: Sequence[dict] = (),
    references: Sequence[dict] = (),
) -> ArtifactVersion:
    """Log a new version with its manifest. With files it stays pending until ``artifact_version_commit``; without,
    it is committed at once. ``digest``, if given with a manifest, must be the manifest's; a version without one
    keeps the digest given (the API's original, free-text form)."""
    entries = manifest_entries(files=files, references=references)
    if entries and digest and digest.lower() != (expected := manifest_digest(entries)):
        raise ApplicationError(
            f"digest {digest!r} is not the SHA-256 of this manifest's canonical form ({expected}).", field="digest"
        )
    with transaction.atomic():
        version = services.artifact_version_create(
            project=project,
            collection_name=collection_name,
            type=type,
            user=user,
            metadata=metadata,
            description=description,
            state=VersionState.PENDING,
        )
        ManifestEntry.objects.bulk_create(
            ManifestEntry(artifact_version=version, path=e.path, size=e.size, sha256=e.sha256, reference=e.reference)
            for e in entries
        )
        if all(e.reference for e in entries):
            version = _commit(version, files=[], blobs={}, digest=digest.lower() if not entries else "")
    return version


def artifact_version_commit(*, artifact_version: ArtifactVersion) -> tuple[ArtifactVersion, bool]:
    """Commit a pending version: every file must be stored. Returns the version and whether this call committed
    it (committing a committed version changes nothing).

    The team's blobs are locked while the entries are tied to them, so a clean-up deleting an unused blob either
    finishes first (and the commit names that file as missing) or waits until the entries protect it.
    """
    with transaction.atomic():
        version = ArtifactVersion.objects.select_for_update().filter(pk=artifact_version.pk).first()
        if version is None:
            raise NotFound(f"{artifact_version.reference} no longer exists (pending versions expire).")
        if version.state == VersionState.COMMITTED:
            return version, False
        version.collection = artifact_version.collection  # already loaded with its project and team
        files = list(version.entries.filter(reference="").order_by("path"))
        blobs = {
            b.sha256: b
            for b in Blob.objects.select_for_update()
            .filter(team_id=version.collection.project.team_id, sha256__in={e.sha256 for e in files})
            .order_by("sha256")
        }
        missing = [e.path for e in files if e.sha256 not in blobs]
        if missing:
            raise Conflict(f"Not uploaded yet: {_listing(missing)}. Upload them, then commit again.", field="files")
        wrong = [f"{e.path} ({e.size}, stored {blobs[e.sha256].size})" for e in files if e.size != blobs[e.sha256].size]
        if wrong:
            raise Conflict(f"Declared sizes differ from the stored files: {_listing(wrong)}.", field="files")
        return _commit(version, files=files, blobs=blobs), True


def _commit(
    version: ArtifactVersion, *, files: list[ManifestEntry], blobs: dict[str, Blob], digest: str = ""
) -> ArtifactVersion:
    """Tie each file to its blob, set the digest and fire CREATE_ARTIFACT, in the caller's transaction."""
    for entry in files:
        entry.blob = blobs[entry.sha256]
    ManifestEntry.objects.bulk_update(files, ["blob"], batch_size=1000)
    version.state = VersionState.COMMITTED
    version.committed_at = timezone.now()
    version.digest = digest or manifest_digest(_entries_of(version))
    version.save(update_fields=["state", "committed_at", "digest"])
    outbox.event_record_artifact_created(artifact_version=version)
    return version


def artifact_version_delete(*, artifact_version: ArtifactVersion) -> None:
    """Delete a version that no registered model links. Its files' blobs stay until the clean-up finds no version
    naming them."""
    with transaction.atomic():
        version = ArtifactVersion.objects.select_for_update().filter(pk=artifact_version.pk).first()
        if version is None:
            return
        linked = sorted(version.links.values_list("registered_model__name", "index"))
        if linked:
            names = ", ".join(f"{name}:v{index}" for name, index in linked)
            raise Conflict(
                f"{artifact_version.reference} is linked ({names}); unlink it before deleting it.", field="version"
            )
        version.delete()


def _listing(items: list[str], most: int = 20) -> str:
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def manifest_entry_for_upload(*, artifact_version: ArtifactVersion, path: str) -> ManifestEntry:
    """The file entry at ``path`` that an upload to the version fills; refused once the version is committed."""
    if artifact_version.state == VersionState.COMMITTED:
        raise Conflict(f"{artifact_version.reference} is committed: its files no longer change.", field="version")
    entry = ManifestEntry.objects.filter(artifact_version=artifact_version, path=path).first()
    if entry is None:
        raise NotFound(f"{artifact_version.reference} has no file {path!r} in its manifest.", field="path")
    if entry.reference:
        raise ApplicationError(f"{path!r} is a reference to {entry.reference}: its bytes stay there.", field="path")
    return entry
