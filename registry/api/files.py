"""Model files over HTTP: a version's manifest, commit and deletion; file uploads and downloads; blobs by digest.

Bodies stream both ways: an upload is read in pieces while its SHA-256 is checked (``registry.blobs``), and a
download is sent from the storage in pieces, with ``ETag`` (the SHA-256), ``Range`` and ``If-None-Match``.
"""

from __future__ import annotations

import posixpath
import re

from django.http import FileResponse, HttpResponseNotModified, HttpResponseRedirect
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.inputs import no_body, validated
from core.api.mixins import TeamScopedMixin
from core.errors import ApplicationError, Conflict, RangeNotSatisfiable
from core.roles import Role
from registry import blobs, manifests, selectors
from registry.choices import VersionState
from registry.models import ArtifactVersion, Blob, Event
from registry.outbox import events_recorded

from . import serializers as s

MISSING_RESPONSE = inline_serializer(
    "MissingDigests", {"missing": serializers.ListField(child=serializers.CharField())}
)
UPLOAD_RESPONSE = inline_serializer(
    "StoredFile",
    {"sha256": serializers.CharField(), "size": serializers.IntegerField(), "stored": serializers.BooleanField()},
)


def version_answer(
    request, version: ArtifactVersion, *, status_code: int = status.HTTP_200_OK, events: list[Event] | None = None
) -> Response:
    """The version with its manifest: files with their URLs, references, and (pending) what is still missing; with
    ``events``, the answer to a change also names the events it fired."""
    files, references = [], []
    for entry in selectors.manifest_entries_of(artifact_version=version):
        if entry.reference:
            references.append(entry)
        else:
            url = request.build_absolute_uri(reverse("artifact-version-file", kwargs=_kwargs(version, entry.path)))
            files.append({"path": entry.path, "size": entry.size, "sha256": entry.sha256, "url": url})
    missing = [
        {"sha256": sha256, "size": size, "paths": paths, "upload_url": _blob_url(request, version, sha256)}
        for sha256, size, paths in selectors.manifest_missing(artifact_version=version)
    ]
    context = {"request": request, "files": files, "references": references, "missing": missing, "events": events}
    serializer = s.ArtifactVersionDetailSerializer if events is None else s.ArtifactVersionChangeSerializer
    return Response(serializer(version, context=context).data, status=status_code)


def _kwargs(version: ArtifactVersion, path: str | None = None) -> dict:
    collection = version.collection
    kwargs = {
        "team": collection.project.team.name,
        "project": collection.project.name,
        "collection": collection.name,
        "version": version.version,
    }
    if path is not None:
        kwargs["path"] = path
    return kwargs


def _blob_url(request, version: ArtifactVersion, sha256: str) -> str:
    return request.build_absolute_uri(
        reverse("blob", kwargs={"team": version.collection.project.team.name, "sha256": sha256})
    )


def _content_length(request) -> int | None:
    value = request.META.get("CONTENT_LENGTH")
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise ApplicationError(f"Content-Length {value!r} is not a number of bytes.", field="Content-Length")
    return int(value)


class _AnyAccept(BaseContentNegotiation):
    """Downloads answer bytes whatever the client accepts; their errors are JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _VersionMixin(TeamScopedMixin):
    agent_reads = True  # a launch job's model version

    def version(self) -> ArtifactVersion:
        k = self.kwargs
        return selectors.artifact_version_get(
            team=self.team, project=k["project"], collection=k["collection"], version=k["version"]
        )


class ArtifactVersionView(_VersionMixin, APIView):
    method_roles = {"DELETE": Role.ADMIN}

    @extend_schema(responses=s.ArtifactVersionDetailSerializer)
    def get(self, request, team, project, collection, version):
        return version_answer(request, self.version())

    @extend_schema(responses={204: None})
    def delete(self, request, team, project, collection, version):
        manifests.artifact_version_delete(artifact_version=self.version())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ArtifactVersionCommitView(_VersionMixin, APIView):
    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(
                s.ArtifactVersionChangeSerializer,
                description="Committed, now (`events` names its CREATE_ARTIFACT) or before (`events` is empty).",
            ),
            409: OpenApiResponse(description="Files not uploaded yet: the error names their paths."),
        },
    )
    def post(self, request, team, project, collection, version):
        no_body(request)
        with events_recorded() as events:
            committed, _ = manifests.artifact_version_commit(artifact_version=self.version())
        return version_answer(request, committed, events=events)


class ArtifactFileView(_VersionMixin, APIView):
    """GET downloads a committed version's file; PUT uploads a pending version's file (raw body)."""

    content_negotiation_class = _AnyAccept
    parser_classes: list = []

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(description="The file's bytes; ETag is its SHA-256."),
            (206, "application/octet-stream"): OpenApiResponse(description="The bytes of the requested Range."),
            302: OpenApiResponse(description="ARTIFACT_DOWNLOAD_REDIRECT: a short-lived signed URL of the store."),
            304: OpenApiResponse(description="If-None-Match names the file's ETag."),
            416: OpenApiResponse(description="The Range starts past the file's end."),
        }
    )
    def get(self, request, team, project, collection, version, path):
        artifact = self.version()
        if artifact.state != VersionState.COMMITTED:
            raise Conflict(f"{artifact.reference} is not committed yet: its files are served once it is.")
        entry = selectors.manifest_entry_get(artifact_version=artifact, path=path)
        if entry.reference:
            raise Conflict(f"{path!r} is a reference: its bytes are at {entry.reference}.", field="path")
        return download(request, entry.blob, filename=posixpath.basename(path))

    @extend_schema(
        request={"application/octet-stream": bytes},
        responses={201: UPLOAD_RESPONSE, 200: OpenApiResponse(UPLOAD_RESPONSE, description="Already stored.")},
    )
    def put(self, request, team, project, collection, version, path):
        entry = manifests.manifest_entry_for_upload(artifact_version=self.version(), path=path)
        size = _content_length(request)
        if size is not None and size != entry.size:
            raise ApplicationError(
                f"Content-Length is {size} bytes; the manifest says {path!r} has {entry.size}.", field="Content-Length"
            )
        return _receive(request, sha256=entry.sha256, size=size, team=self.team)


class BlobsMissingView(TeamScopedMixin, APIView):
    @extend_schema(request=s.DigestsSerializer, responses=MISSING_RESPONSE)
    def post(self, request, team):
        digests = validated(s.DigestsSerializer, request.data)["sha256"]
        return Response({"missing": blobs.blobs_missing(team=self.team, digests=digests)})


class BlobView(TeamScopedMixin, APIView):
    """PUT a file by its SHA-256 (raw body, Content-Length required), before or after logging its version."""

    parser_classes: list = []

    @extend_schema(
        request={"application/octet-stream": bytes},
        responses={201: UPLOAD_RESPONSE, 200: OpenApiResponse(UPLOAD_RESPONSE, description="Already stored.")},
    )
    def put(self, request, team, sha256):
        return _receive(request, sha256=sha256, size=_content_length(request), team=self.team)


def _receive(request, *, sha256: str, size: int | None, team) -> Response:
    blob, stored = blobs.blob_receive(team=team, sha256=sha256, size=size, stream=request.stream)
    answer = status.HTTP_201_CREATED if stored else status.HTTP_200_OK
    return Response({"sha256": blob.sha256, "size": blob.size, "stored": stored}, status=answer)


# --- Downloads ------------------------------------------------------------------------------------------

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def download(request, blob: Blob, *, filename: str):
    etag = f'"{blob.sha256}"'
    if _matches(request.headers.get("If-None-Match"), etag):
        response = HttpResponseNotModified()
        response["ETag"] = etag
        return response
    url = blobs.blob_signed_url(blob, filename=filename)
    if url is not None:
        response = HttpResponseRedirect(url)
        response["Cache-Control"] = "no-store"
        return response
    start, length, partial = _range(request, size=blob.size, etag=etag)
    response = FileResponse(
        blobs.blob_open_range(blob, start=start, length=length),
        status=status.HTTP_206_PARTIAL_CONTENT if partial else status.HTTP_200_OK,
        as_attachment=True,
        filename=filename,
        content_type="application/octet-stream",
    )
    response["Content-Length"] = str(length)
    response["ETag"] = etag
    response["Accept-Ranges"] = "bytes"
    if partial:
        response["Content-Range"] = f"bytes {start}-{start + length - 1}/{blob.size}"
    return response


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _range(request, *, size: int, etag: str) -> tuple[int, int, bool]:
    """(start, length, partial) for the request's ``Range``. One range of bytes is served; several, or one that
    does not parse, are ignored (the whole file, as RFC 9110 allows); one past the end is a 416."""
    header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    match = _RANGE_RE.match(header.strip()) if header else None
    if match is None or (if_range and if_range.strip() != etag):
        return 0, size, False
    first, last = match.groups()
    if not first and not last:
        return 0, size, False
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return 0, size, False  # not a valid range: ignored
    else:
        start, end = max(size - int(last), 0), size - 1
        if int(last) == 0:
            start = size  # an empty suffix is never satisfiable
    if start >= size:
        raise RangeNotSatisfiable(
            f"The range starts past the end of the file ({size} bytes).",
            field="Range",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end - start + 1, True
