"""The storage backends behind ``STORAGES["artifacts"]``: Django's own, with the two reads Django's API lacks.

Model files are large, so reading one must stream a byte range (``open_range``) without loading the file, and an
object store may hand the client a short-lived signed URL instead (``signed_url``). Everything else (save, exists,
delete) is the backends' own code.
"""

from __future__ import annotations

from urllib.parse import quote

from django.core.files.storage import FileSystemStorage
from storages.backends.s3 import S3Storage
from storages.utils import clean_name


class RangeReader:
    """``length`` bytes of a stored file from where ``raw`` stands, read in pieces. It offers ``fileno`` when the
    bytes are a local file, so gunicorn sends them with ``sendfile`` (its ``Content-Length`` bounds the copy)."""

    mode = "rb"

    def __init__(self, raw, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        chunk = self._raw.read(size)
        if not chunk:
            raise OSError(f"the stored file ended {self._left} bytes early")
        self._left -= len(chunk)
        return chunk

    def fileno(self) -> int:
        return self._raw.fileno()  # OSError (or AttributeError) when the bytes are not a local file

    def close(self) -> None:
        self._raw.close()


class ArtifactFileSystemStorage(FileSystemStorage):
    """Files under ``ARTIFACT_STORAGE_DIR``. Blobs are named by content, so writing one again replaces it with the
    same bytes instead of picking another name."""

    def __init__(self, **options) -> None:
        options.setdefault("allow_overwrite", True)
        super().__init__(**options)

    def open_range(self, name: str, *, start: int, length: int) -> RangeReader:
        file = self.open(name, "rb")
        file.seek(start)
        return RangeReader(file, length)

    def signed_url(self, name: str, *, expire: int, filename: str) -> str | None:
        return None  # the web process serves these files itself


class ArtifactS3Storage(S3Storage):
    """Any S3-compatible object store. Reads go straight to ``GetObject`` with a ``Range``: the backend's own file
    object would first copy the whole object into memory."""

    def open_range(self, name: str, *, start: int, length: int) -> RangeReader:
        key = self._normalize_name(clean_name(name))
        params = {"Range": f"bytes={start}-{start + length - 1}"} if length > 0 else {}
        return RangeReader(self.bucket.Object(key).get(**params)["Body"], length)

    def signed_url(self, name: str, *, expire: int, filename: str) -> str | None:
        disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        return self.url(name, parameters={"ResponseContentDisposition": disposition}, expire=expire)
