"""Files stored by content: one blob per SHA-256 per team, kept in ``STORAGES["artifacts"]``.

An upload streams to a temporary file while its SHA-256 is computed, so a file never sits whole in memory and a
wrong digest or an interrupted body leaves nothing behind. A verified file is stored under its blob row's lock, and
the clean-up deletes an unused blob (row and object) under the same lock, skipping rows someone holds: an upload and
a clean-up of the same digest never interleave, so a blob row always has its object.

A blob is in use while a committed version's entry names it, or a pending version of its team names its digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from core.errors import ApplicationError, Conflict, LengthRequired, TooLarge

from .choices import VersionState
from .manifests import digest_check
from .models import ArtifactVersion, Blob, ManifestEntry, Team

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# Temporary files untouched this long belong to uploads whose process died; the clean-up removes them.
STALE_UPLOAD_SECONDS = 3600


def artifact_storage():
    return storages["artifacts"]


def blob_key(blob: Blob) -> str:
    return _key(blob.team_id, blob.sha256)


def _key(team_id: int, sha256: str) -> str:
    return f"{team_id}/{sha256[:2]}/{sha256}"


def blobs_missing(*, team: Team, digests: Iterable[str]) -> list[str]:
    """The digests (checked, lowercase, sorted) of which the team stores no file."""
    wanted = {digest_check(d, field="sha256") for d in digests}
    stored = set(Blob.objects.filter(team=team, sha256__in=wanted).values_list("sha256", flat=True))
    return sorted(wanted - stored)


# --- Upload ---------------------------------------------------------------------------------------------


class _Received(File):
    """A verified upload on disk. ``temporary_file_path`` lets the filesystem backend move it into place."""

    def temporary_file_path(self) -> str:
        return self.name


def blob_receive(*, team: Team, sha256: str, size: int | None, stream) -> tuple[Blob, bool]:
    """Store ``size`` bytes read from ``stream`` as the team's blob ``sha256``. Returns the blob and whether it was
    stored now (False: the team had it already, and the body was read and dropped).

    Refused, with nothing stored: a digest that is not a SHA-256, no size (411), a size over
    ``ARTIFACT_MAX_FILE_SIZE`` (413), a body whose SHA-256 differs, a body that ends early.
    """
    sha256 = digest_check(sha256, field="sha256")
    if size is None:
        raise LengthRequired("An upload needs a Content-Length header (the file's size in bytes).")
    if size > settings.ARTIFACT_MAX_FILE_SIZE:
        raise TooLarge(
            f"{size} bytes is over the limit of {settings.ARTIFACT_MAX_FILE_SIZE} bytes per file "
            "(ARTIFACT_MAX_FILE_SIZE).",
            field="Content-Length",
        )
    existing = Blob.objects.filter(team=team, sha256=sha256).first()
    if existing is not None and existing.size == size:
        _discard(stream, size)
        return existing, False
    path = _receive(stream, size=size, sha256=sha256)
    try:
        return _store(team=team, sha256=sha256, size=size, path=path)
    finally:
        _unlink(path)


def _receive(stream, *, size: int, sha256: str) -> str:
    """Copy the body to a temporary file, hashing it on the way; the file's path once the digest matches."""
    folder = settings.ARTIFACT_UPLOAD_TEMP_DIR
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="upload-", dir=folder)
    try:
        digest = hashlib.sha256()
        with open(fd, "wb") as out:
            for chunk in _body(stream, size):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ApplicationError(
                f"The body's SHA-256 is {digest.hexdigest()}, not {sha256}: nothing was stored.",
                field="sha256",
                code="digest_mismatch",
            )
    except BaseException:
        _unlink(path)
        raise
    return path


def _body(stream, size: int):
    left = size
    while left > 0:
        try:
            chunk = stream.read(min(CHUNK, left))
        except Exception as exc:  # the server's reader: the connection broke mid-body
            raise _incomplete(size, size - left) from exc
        if not chunk:
            raise _incomplete(size, size - left)
        left -= len(chunk)
        yield chunk


def _incomplete(size: int, received: int) -> ApplicationError:
    return ApplicationError(
        f"The body ended after {received} of {size} bytes (Content-Length): nothing was stored.",
        field="Content-Length",
        code="incomplete_body",
    )


def _discard(stream, size: int) -> None:
    for _ in _body(stream, size):
        pass


def _store(*, team: Team, sha256: str, size: int, path: str) -> tuple[Blob, bool]:
    """Write the row and the object in one transaction, the row locked throughout. The insert waits for a clean-up
    deleting the same digest to finish, so the object written here is never the one it deletes."""
    for _ in range(3):
        with transaction.atomic():
            try:
                with transaction.atomic():
                    blob = Blob.objects.create(team=team, sha256=sha256, size=size)
                created = True
            except IntegrityError:  # stored meanwhile by another upload
                blob = Blob.objects.select_for_update().filter(team=team, sha256=sha256).first()
                if blob is None:
                    continue  # deleted by the clean-up meanwhile: insert again
                created = False
            if created:
                with open(path, "rb") as file:
                    artifact_storage().save(_key(team.pk, sha256), _Received(file, name=path))
            return blob, created
    raise Conflict("The file was being stored and deleted at the same time; send it again.", field="sha256")


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):  # moved into place by the filesystem backend
        os.unlink(path)


# --- Download -------------------------------------------------------------------------------------------


def blob_open_range(blob: Blob, *, start: int, length: int):
    """``length`` bytes of the blob from ``start``, to be read in pieces (``registry.storages.RangeReader``)."""
    return artifact_storage().open_range(blob_key(blob), start=start, length=length)


def blob_signed_url(blob: Blob, *, filename: str) -> str | None:
    """A short-lived URL the object store serves the blob at, or None when the web process serves it."""
    if not settings.ARTIFACT_DOWNLOAD_REDIRECT:
        return None
    return artifact_storage().signed_url(
        blob_key(blob), expire=settings.ARTIFACT_DOWNLOAD_URL_EXPIRY, filename=filename
    )


# --- Clean-up -------------------------------------------------------------------------------------------


def _in_use() -> Exists:
    """Whether a blob (the outer row) is named by a committed entry or by a pending version of its team."""
    return Exists(ManifestEntry.objects.filter(blob=OuterRef("pk"))) | Exists(
        ManifestEntry.objects.filter(
            reference="",
            sha256=OuterRef("sha256"),
            artifact_version__state=VersionState.PENDING,
            artifact_version__collection__project__team=OuterRef("team"),
        )
    )


def pending_versions_expire(*, limit: int = 500) -> int:
    """Delete versions still pending ``ARTIFACT_PENDING_MAX_AGE`` seconds after they were created. Each is locked
    (skipping one being committed), so a commit and its expiry never overlap."""
    cutoff = timezone.now() - timedelta(seconds=settings.ARTIFACT_PENDING_MAX_AGE)
    with transaction.atomic():
        stale = list(
            ArtifactVersion.objects.select_for_update(skip_locked=True)
            .filter(state=VersionState.PENDING, created_at__lt=cutoff)
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        ArtifactVersion.objects.filter(pk__in=stale).delete()
    return len(stale)


def blobs_collect(*, limit: int = 500) -> int:
    """Delete blobs (row and stored object) no version names, once older than ``ARTIFACT_BLOB_GRACE``."""
    cutoff = timezone.now() - timedelta(seconds=settings.ARTIFACT_BLOB_GRACE)
    unused = Blob.objects.filter(created_at__lt=cutoff).exclude(_in_use())
    deleted = 0
    for pk in list(unused.order_by("pk").values_list("pk", flat=True)[:limit]):
        with transaction.atomic():
            # Checked again under the lock: a commit may have tied an entry to it meanwhile.
            blob = unused.select_for_update(skip_locked=True).filter(pk=pk).first()
            if blob is None:
                continue
            blob.delete()
            artifact_storage().delete(blob_key(blob))  # a failure rolls the row back: tried again next time
        deleted += 1
    return deleted


def stale_uploads_remove() -> int:
    """Remove temporary upload files left by a process that died mid-upload (this machine's only)."""
    folder = settings.ARTIFACT_UPLOAD_TEMP_DIR
    removed = 0
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith("upload-") and entry.stat().st_mtime < cutoff:
            _unlink(entry.path)
            removed += 1
    return removed


def artifacts_clean() -> dict[str, int]:
    """Beat's clean-up: expired pending versions first, so the blobs only they named are collected in this run."""
    found = {
        "pending_versions": pending_versions_expire(),
        "blobs": blobs_collect(),
        "stale_uploads": stale_uploads_remove(),
    }
    if any(found.values()):
        logger.info("artifacts clean-up: %s", ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in found.items()))
    return found
