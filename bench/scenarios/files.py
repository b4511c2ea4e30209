"""Model files: upload and download of one large file (1 GB; --quick: 128 MB) through the API and the Procfile's
``web`` process, on filesystem storage beside ``cp`` of the same file on the same disk in the same run, then through
S3 storage (moto's server on loopback) for information; and a slow client (1 MB/s for longer than gunicorn's 30 s
timeout) with the Procfile's worker class and with gunicorn's default sync worker.

The client sends and receives with ``http.client`` in 1 MiB pieces from and to files on the same disk, and hashes
the file beforehand (not timed with the transfer). Peak RSS is the web processes' (master and worker) during each
transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from harness.s3 import S3Server
from harness.stack import Stack

from ..api import admin_api
from ..report import Context, Target, table

NAME = "files"
MIB = 1024 * 1024


def _make_file(path: Path, size: int) -> str:
    block = os.urandom(64 * MIB)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            piece = block[: min(len(block), left)]
            out.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def _cp(source: Path, target: Path) -> float:
    started = time.monotonic()
    subprocess.run(["cp", str(source), str(target)], check=True)  # noqa: S603, S607
    took = time.monotonic() - started
    target.unlink()
    return took


def _put(stack: Stack, token: str, path: str, source: Path, *, rate: float | None = None) -> tuple[int, float]:
    """PUT the file (1 MiB pieces; ``rate`` bytes/s paces them like a slow client). (status, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=600, blocksize=MIB)
    size = source.stat().st_size
    started = time.monotonic()
    try:
        conn.putrequest("PUT", path)
        conn.putheader("Authorization", f"Token {token}")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        with source.open("rb") as file:
            while piece := file.read(MIB):
                conn.send(piece)
                if rate:
                    time.sleep(len(piece) / rate)
        status = conn.getresponse().status
    except (TimeoutError, ConnectionError, http.client.HTTPException):
        status = 0  # the server closed the connection: its worker was killed
    finally:
        conn.close()
    return status, time.monotonic() - started


def _get(stack: Stack, token: str, url: str, target: Path) -> tuple[int, float, str]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=600)
    digest = hashlib.sha256()
    started = time.monotonic()
    conn.request("GET", url, headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    with target.open("wb") as out:
        while piece := response.read(MIB):
            digest.update(piece)
            out.write(piece)
    took = time.monotonic() - started
    conn.close()
    target.unlink()
    return response.status, took, digest.hexdigest()


@contextlib.contextmanager
def _web(work: Path, context: Context, env: dict, team: str) -> Iterator[tuple[Stack, object, str]]:
    """The Procfile's web alone, with a team of its own (no file of another run's team counts as stored)."""
    with Stack(work, {**context.env, **env}, roles=("web",)) as stack:
        api = admin_api(stack)
        api.post("teams/", {"name": team})
        yield stack, api, api.session.headers["Authorization"].split()[1]


def _transfer(context: Context, label: str, source: Path, digest: str, env: dict) -> dict:
    """Log a version naming the file, upload it, commit, download it: figures of each way."""
    work = context.scenario_dir(f"{NAME}-{label}")
    size = source.stat().st_size
    team = f"files-{label}"
    with _web(work, context, env, team) as (stack, api, token):
        api.post(f"teams/{team}/projects/", {"name": "training"})
        versions = f"teams/{team}/projects/training/artifacts/model/versions/"
        version = api.post(
            versions, {"type": "model", "files": [{"path": "model.bin", "size": size, "sha256": digest}]}
        )
        upload_path = f"/api/v1/{versions}{version['version']}/files/model.bin"
        with context.monitor(stack, f"{label}-upload") as up_monitor:
            status, up_s = _put(stack, token, upload_path, source)
        if status != 201:
            raise RuntimeError(f"upload answered {status} (see {work})")
        committed = api.post(f"{versions}{version['version']}/commit/")
        with context.monitor(stack, f"{label}-download") as down_monitor:
            got, down_s, got_digest = _get(stack, token, committed["files"][0]["url"], work / "downloaded.bin")
        if got != 200 or got_digest != digest:
            raise RuntimeError(f"download answered {got} with digest {got_digest} (see {work})")
    return {
        "upload_s": round(up_s, 2),
        "upload_mb_s": round(size / MIB / up_s, 1),
        "download_s": round(down_s, 2),
        "download_mb_s": round(size / MIB / down_s, 1),
        "web_peak_rss_mb_upload": up_monitor.peak_rss_mb(["web"]),
        "web_peak_rss_mb_download": down_monitor.peak_rss_mb(["web"]),
        "web_cpu_s_upload": round(sum(p["cpu_s"] for p in up_monitor.processes() if p["role"] == "web"), 2),
        "web_cpu_s_download": round(sum(p["cpu_s"] for p in down_monitor.processes() if p["role"] == "web"), 2),
    }


def _slow_client(context: Context, label: str, source: Path, digest: str, env: dict) -> dict:
    work = context.scenario_dir(f"{NAME}-slow-{label}")
    size = source.stat().st_size
    with _web(work, context, env, f"slow-{label}") as (stack, _, token):
        status, took = _put(stack, token, f"/api/v1/teams/slow-{label}/blobs/{digest}/", source, rate=MIB)
        killed = "WORKER TIMEOUT" in stack.process("web").log()
    return {"status": status, "seconds": round(took, 1), "size_mb": size // MIB, "worker_timeout_logged": killed}


def run(context: Context) -> dict:
    size = (128 if context.quick else 1024) * MIB
    work = context.scenario_dir(NAME)
    source = work / "model.bin"
    digest = _make_file(source, size)
    store = work / "store"
    fs_env = {"ARTIFACT_STORAGE_DIR": str(store)}
    cp_s = min(_cp(source, work / "copy.bin") for _ in range(2))
    results = {"size_mb": size // MIB, "cp_s": round(cp_s, 2), "cp_mb_s": round(size / MIB / cp_s, 1)}
    results["filesystem"] = _transfer(context, "filesystem", source, digest, fs_env)
    shutil.rmtree(store, ignore_errors=True)
    with S3Server(work) as s3:
        bucket = s3.bucket("bench-artifacts")
        results["s3"] = _transfer(context, "s3", source, digest, {**fs_env, **s3.env(bucket)})
    slow_source = work / "slow.bin"
    slow_digest = _make_file(slow_source, 40 * MIB)  # 40 s at 1 MB/s
    results["slow_client"] = {
        "procfile": _slow_client(context, "procfile", slow_source, slow_digest, fs_env),
        "sync": _slow_client(
            context, "sync", slow_source, slow_digest, {**fs_env, "WEB_WORKER_CLASS": "sync", "WEB_THREADS": "1"}
        ),
    }
    source.unlink()
    slow_source.unlink()
    shutil.rmtree(store, ignore_errors=True)

    fs, s3r = results["filesystem"], results["s3"]
    print(f"\n## files: one {size // MIB} MB file through the API (web = the Procfile's gunicorn line)\n")
    print(
        table(
            ["path", "upload MB/s", "download MB/s", "web peak RSS MB (up / down)", "web CPU s (up / down)"],
            [
                (f"cp on the same disk ({results['cp_s']} s)", results["cp_mb_s"], results["cp_mb_s"], "-", "-"),
                ("API, filesystem storage", fs["upload_mb_s"], fs["download_mb_s"],
                 f"{fs['web_peak_rss_mb_upload']} / {fs['web_peak_rss_mb_download']}",
                 f"{fs['web_cpu_s_upload']} / {fs['web_cpu_s_download']}"),
                ("API, S3 storage (moto, for information)", s3r["upload_mb_s"], s3r["download_mb_s"],
                 f"{s3r['web_peak_rss_mb_upload']} / {s3r['web_peak_rss_mb_download']}",
                 f"{s3r['web_cpu_s_upload']} / {s3r['web_cpu_s_download']}"),
            ],
        )
    )  # fmt: skip
    slow = results["slow_client"]
    print("\n## a client sending 40 MB at 1 MB/s (gunicorn's timeout is 30 s)\n")
    print(
        table(
            ["worker class", "answer", "seconds", "WORKER TIMEOUT logged"],
            [
                (name, r["status"] or "connection closed", r["seconds"], r["worker_timeout_logged"])
                for name, r in slow.items()
            ],
        )
    )
    peak = max(fs["web_peak_rss_mb_upload"], fs["web_peak_rss_mb_download"])
    results["targets"] = [
        Target("upload MB/s (filesystem)", "≥ 100", fs["upload_mb_s"], fs["upload_mb_s"] >= 100),
        Target("download MB/s (filesystem)", "≥ 100", fs["download_mb_s"], fs["download_mb_s"] >= 100),
        Target("web peak RSS MB (filesystem)", "< 150", peak, peak < 150),
        Target(
            "slow client completes (Procfile)", "201", slow["procfile"]["status"], slow["procfile"]["status"] == 201
        ),
    ]
    return results
