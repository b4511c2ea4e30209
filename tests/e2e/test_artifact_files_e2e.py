"""Model files through the real web process (the Procfile's gunicorn line) on filesystem storage and on a real
S3-protocol server (moto's, a process on loopback): streamed uploads and downloads, a client that disconnects
mid-upload, and downloads redirected to signed URLs."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.conf import settings

from config.procfile import procfile
from core.roles import Role
from harness.processes import Process
from harness.s3 import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from harness.util import free_port, port_open, wait_until
from registry import blobs
from registry.models import ArtifactVersion, Blob
from tests import factories as f
from tests.conftest import _test_database_url

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
PAYLOAD = os.urandom(3 * MB) * 8  # 24 MB: many pieces each way
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
VERSIONS = "/api/v1/teams/acme/projects/training/artifacts/classifier/versions/"


class Web:
    """The Procfile's ``web`` line (gunicorn) on the test database, and a token of a member of team acme."""

    def __init__(self, process: Process, port: int, token: str, store: Path) -> None:
        self.process, self.base, self.store = process, f"http://127.0.0.1:{port}", store
        self.port = port
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=60, **kwargs)

    def upload(self, path: str, data: bytes) -> requests.Response:
        """PUT from a file object: requests sends its Content-Length and then its bytes in pieces."""
        headers = {"Content-Type": "application/octet-stream"}
        return self.call("PUT", path, data=io.BytesIO(data), headers=headers)

    def incoming(self) -> list[str]:
        folder = self.store / ".incoming"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def errors(self) -> list[str]:
        return [line for line in self.process.log().splitlines() if "Traceback" in line or '" 50' in line]


@pytest.fixture
def web_factory(transactional_db, tmp_path):
    admin = f.make_user("alice")
    team = f.make_team("acme", admin=admin)
    f.make_project(team, "training")
    _, token = f.services.api_token_create(user=f.add_member(team, f.make_user("mia"), Role.MEMBER))
    started: list[Process] = []

    def start(**env: str) -> Web:
        port = free_port()
        store = tmp_path / f"store-{len(started)}"
        full_env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "VAR_DIR": str(tmp_path / "var"),
            "PORT": str(port),
            "WEB_BIND": "127.0.0.1",
            "WEB_CONCURRENCY": "1",
            "ARTIFACT_STORAGE_DIR": str(store),
            **env,
        }
        process = Process(
            f"web-{len(started)}", ["sh", "-c", "exec " + procfile()["web"]], env=full_env, log_dir=tmp_path
        )
        started.append(process.start())
        wait_until(lambda: port_open(port), timeout=40, message="gunicorn", details=process.tail)
        return Web(process, port, token, store)

    yield start
    for process in started:
        process.stop()


def log_commit_download(web: Web) -> str:
    """Log v0 with one file, upload it streamed, commit; the file's download URL."""
    created = web.call(
        "POST",
        VERSIONS,
        json={"type": "model", "files": [{"path": "w/model.bin", "size": len(PAYLOAD), "sha256": DIGEST}]},
    )
    assert created.status_code == 201, created.text
    assert [m["sha256"] for m in created.json()["missing"]] == [DIGEST]
    uploaded = web.upload(f"{VERSIONS}v0/files/w/model.bin", PAYLOAD)
    assert uploaded.status_code == 201, (uploaded.text, web.process.tail())
    assert uploaded.json() == {"sha256": DIGEST, "size": len(PAYLOAD), "stored": True}
    committed = web.call("POST", f"{VERSIONS}v0/commit/")
    assert committed.status_code == 200, committed.text
    return committed.json()["files"][0]["url"]


def streamed(response: requests.Response) -> bytes:
    return b"".join(response.iter_content(MB))


def test_gunicorn_streams_a_file_in_and_out_of_filesystem_storage(web_factory):
    web = web_factory()
    url = log_commit_download(web)

    full = web.session.get(url, stream=True, timeout=60)
    assert full.status_code == 200 and full.headers["Content-Length"] == str(len(PAYLOAD))
    assert full.headers["ETag"] == f'"{DIGEST}"'
    assert hashlib.sha256(streamed(full)).hexdigest() == DIGEST
    ranged = web.session.get(url, headers={"Range": f"bytes={5 * MB}-{6 * MB - 1}"}, timeout=60)
    assert ranged.status_code == 206 and ranged.content == PAYLOAD[5 * MB : 6 * MB]
    assert web.session.get(url, headers={"If-None-Match": f'"{DIGEST}"'}, timeout=60).status_code == 304
    stored = [p for p in web.store.rglob("*") if p.is_file() and ".incoming" not in p.parts]
    assert [p.read_bytes() == PAYLOAD for p in stored] == [True]
    assert web.incoming() == [] and web.errors() == []


def test_a_client_that_disconnects_mid_upload_leaves_no_blob_no_object_and_no_temporary_file(web_factory):
    web = web_factory()
    head = (
        f"PUT /api/v1/teams/acme/blobs/{DIGEST}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {web.session.headers['Authorization']}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(PAYLOAD)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        sock.sendall(head + PAYLOAD[: 4 * MB])
        wait_until(web.incoming, timeout=10, message="the upload's temporary file")
    # The connection is closed: the body stops 4 MB into 24.

    wait_until(lambda: web.incoming() == [], timeout=20, message="the temporary file to go")
    time.sleep(0.5)
    assert not Blob.objects.exists()
    assert [p for p in web.store.rglob("*") if p.is_file()] == []
    assert web.errors() == []
    # The worker is still there and the next upload of the same file goes through.
    assert web.upload(f"/api/v1/teams/acme/blobs/{DIGEST}/", PAYLOAD).status_code == 201


@pytest.fixture
def s3(tmp_path):
    with S3Server(tmp_path) as server:
        yield server


def test_s3_storage_stores_by_content_streams_downloads_and_the_clean_up_deletes_objects(web_factory, s3, settings):
    bucket = s3.bucket(f"artifacts-{uuid.uuid4().hex[:8]}")
    web = web_factory(**s3.env(bucket, ARTIFACT_S3_PREFIX="registry"))
    wrong = web.upload(f"/api/v1/teams/acme/blobs/{'0' * 64}/", PAYLOAD[:MB])
    assert wrong.status_code == 400 and s3.keys(bucket) == []

    url = log_commit_download(web)

    team_id = Blob.objects.get().team_id
    assert s3.keys(bucket) == [f"registry/{team_id}/{DIGEST[:2]}/{DIGEST}"]
    assert s3.client().get_object(Bucket=bucket, Key=s3.keys(bucket)[0])["Body"].read() == PAYLOAD
    full = web.session.get(url, stream=True, timeout=60)
    assert full.status_code == 200 and hashlib.sha256(streamed(full)).hexdigest() == DIGEST
    ranged = web.session.get(url, headers={"Range": "bytes=-1000"}, timeout=60)
    assert ranged.status_code == 206 and ranged.content == PAYLOAD[-1000:]
    assert web.errors() == []

    # Deleted by an admin, then collected by the clean-up: row and object.
    ArtifactVersion.objects.all().delete()
    settings.ARTIFACT_BLOB_GRACE = 0
    options = {**s3.storage_options(bucket), "location": "registry"}
    settings.STORAGES = {
        **settings.STORAGES,
        "artifacts": {"BACKEND": "registry.storages.ArtifactS3Storage", "OPTIONS": options},
    }
    assert blobs.blobs_collect() == 1
    assert s3.keys(bucket) == [] and not Blob.objects.exists()


def test_s3_downloads_redirect_to_a_url_signed_for_that_object_with_the_configured_expiry(web_factory, s3):
    """moto serves presigned URLs but checks neither their signature nor their expiry, so the test checks the URL
    itself: it names the one object, carries the configured expiry, and its signature is the one SigV4 computes for
    exactly that request with the store's secret key (a different key or expiry would sign differently)."""
    bucket = s3.bucket(f"artifacts-{uuid.uuid4().hex[:8]}")
    web = web_factory(**s3.env(bucket, ARTIFACT_DOWNLOAD_REDIRECT="true", ARTIFACT_DOWNLOAD_URL_EXPIRY="90"))
    url = log_commit_download(web)

    redirect = web.session.get(url, allow_redirects=False, timeout=60)

    assert redirect.status_code == 302 and redirect.headers["Cache-Control"] == "no-store"
    location = redirect.headers["Location"]
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    key = f"{Blob.objects.get().team_id}/{DIGEST[:2]}/{DIGEST}"
    assert f"{parts.scheme}://{parts.netloc}" == s3.endpoint and unquote(parts.path) == f"/{bucket}/{key}"
    assert query["X-Amz-Expires"] == "90" and query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/") and query["X-Amz-SignedHeaders"] == "host"
    assert query["response-content-disposition"] == "attachment; filename*=UTF-8''model.bin"
    assert resign(location, expires=90) == query["X-Amz-Signature"]
    assert resign(location.replace(DIGEST, "0" * 64), expires=90) != query["X-Amz-Signature"]
    assert resign(location, expires=3600) != query["X-Amz-Signature"]
    cached = web.session.get(url, headers={"If-None-Match": f'"{DIGEST}"'}, allow_redirects=False, timeout=60)
    assert cached.status_code == 304
    followed = requests.get(location, timeout=60)  # the bytes come from the store, not the web process
    assert followed.status_code == 200 and hashlib.sha256(followed.content).hexdigest() == DIGEST


def resign(url: str, *, expires: int) -> str:
    """SigV4's query signature of ``url`` (its signature removed) at the time it names, with the store's key."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    stamp = query["X-Amz-Date"]
    kept = {k: v for k, v in query.items() if not k.startswith("X-Amz-")}
    request = AWSRequest(method="GET", url=f"{parts.scheme}://{parts.netloc}{parts.path}", params=kept)
    signer = S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION, expires=expires)
    signer._get_current_timestamp = lambda: stamp
    request.context["timestamp"] = stamp
    signer.add_auth(request)
    return parse_qs(urlsplit(request.url).query)["X-Amz-Signature"][0]


def test_a_kept_alive_connection_serves_the_next_request_after_a_refused_unread_body(web_factory):
    # Bodies gunicorn would not drain (over 64 KiB), refused before the application read them.
    web = web_factory()
    refused = [
        ("POST", "/api/v1/teams/acme/registered-models/", b'{"name": "' + b"x" * 3 * MB + b'"}', "application/json"),
        ("POST", "/api/v1/teams/acme/registered-models/", b"x" * 500_000, "text/plain"),
        ("PUT", "/api/v1/teams/acme/blobs/not-a-digest/", b"x" * 500_000, "application/octet-stream"),
    ]
    for n, (method, path, body, content_type) in enumerate(refused):
        answer = web.call(method, path, data=body, headers={"Content-Type": content_type})
        assert 400 <= answer.status_code < 500, answer.text
        # At once, on the same kept-alive connection; a POST, which no client library sends twice.
        after = web.call("POST", "/api/v1/teams/acme/registered-models/", json={"name": f"model-{n}"})
        assert after.status_code == 201, after.text
    assert web.errors() == []
