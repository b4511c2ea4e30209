"""The engineers' client (``registry``, installed in .venv) against the Procfile's ``web`` alone:

- ``registry get`` of a 1 GB version (``--quick``: 128 MB; one file of random bytes) into an empty folder: MB/s
  beside ``cp`` of the same file on the same disk in the same run, and the client process's peak RSS;
- ``registry artifact put`` of a folder of 1,000 files of 4 KiB: wall time and the requests the server received
  (counted in gunicorn's access log);
- ``registry artifact put`` of the 1 GB version again, its file unchanged: wall time and what was uploaded.

Each command runs as its own process, as an engineer runs it, with a config and digest cache of its own. The files
are written before anything is measured (so the digest cache may remember them, as it would after a training run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from ..report import Context, Target, table
from ..stack import ROOT, _vm_hwm
from .files import MIB, _cp, _make_file, _web

NAME = "client"
REGISTRY = ROOT / ".venv" / "bin" / "registry"
SMALL_FILES = 1000
SMALL_SIZE = 4096


class Command:
    """One ``registry`` command: its wall time, exit status, output, and peak RSS (VmHWM, read every 20 ms)."""

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.argv = [str(REGISTRY), "--quiet", *argv]
        self.env = env

    def run(self) -> dict:
        peak = 0
        started = time.monotonic()
        process = subprocess.Popen(  # noqa: S603
            self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _vm_hwm(process.pid))
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = process.communicate(timeout=1800)
        took = time.monotonic() - started
        done.set()
        sampler.join()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv)} exited {process.returncode}: {err.strip()}")
        return {"seconds": round(took, 3), "peak_rss_mb": round(peak / MIB, 1), "stdout": out}


def _requests(log: Path, start: int) -> dict[str, int]:
    """Requests from the client (its User-Agent) that gunicorn logged after byte ``start`` of its log, by method."""
    counts: dict[str, int] = {}
    with log.open("rb") as handle:
        handle.seek(start)
        for line in handle.read().decode(errors="replace").splitlines():
            for method in ("GET", "POST", "PUT", "DELETE"):
                if f'"{method} /api/' in line and '"registry-client/' in line:
                    counts[method] = counts.get(method, 0) + 1
    return counts


def _measured_put(env: dict[str, str], log: Path, source: Path, name: str) -> dict:
    time.sleep(0.5)  # the access lines of earlier requests are written
    start = log.stat().st_size
    result = Command(env, "artifact", "put", str(source), "--project", "training", "--name", name, "--json").run()
    time.sleep(0.5)  # gunicorn writes its access line after the answer
    requests = _requests(log, start)
    version = json.loads(result.pop("stdout"))
    return {**result, "requests": sum(requests.values()), "by_method": requests, "version": version["version"]}


def run(context: Context) -> dict:
    size = (128 if context.quick else 1024) * MIB
    work = context.scenario_dir(NAME)
    big = work / "big"
    big.mkdir(exist_ok=True)
    digest = _make_file(big / "model.bin", size)
    small = work / "small"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir()
    for i in range(SMALL_FILES):
        (small / f"shard-{i // 100:02d}" / f"part-{i:04d}.bin").parent.mkdir(exist_ok=True)
        (small / f"shard-{i // 100:02d}" / f"part-{i:04d}.bin").write_bytes(os.urandom(SMALL_SIZE))
    cp_s = min(_cp(big / "model.bin", work / "copy.bin") for _ in range(2))
    results: dict = {"size_mb": size // MIB, "cp_s": round(cp_s, 2), "cp_mb_s": round(size / MIB / cp_s, 1)}

    team = "client-bench"
    with _web(work, context, {"ARTIFACT_STORAGE_DIR": str(work / "store")}, team) as (stack, api, token):
        api.post(f"teams/{team}/projects/", {"name": "training"})
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(work / "home"),
            "REGISTRY_URL": stack.base_url,
            "REGISTRY_TOKEN": token,
            "REGISTRY_TEAM": team,
            "REGISTRY_CACHE_DIR": str(work / "home" / "cache"),
        }
        log = stack.process("web").log_path
        results["put_big"] = _measured_put(env, log, big, "model")
        results["put_big_again"] = _measured_put(env, log, big, "model")
        results["put_small"] = _measured_put(env, log, small, "shards")
        results["put_small_again"] = _measured_put(env, log, small, "shards")
        gets = []
        for i in range(2):
            target = work / f"get-{i}"
            shutil.rmtree(target, ignore_errors=True)
            got = Command(env, "get", f"{team}/training/model:v0", "-o", str(target)).run()
            got.pop("stdout")
            if (target / "model.bin").stat().st_size != size:
                raise RuntimeError("the download is not the file's size")
            shutil.rmtree(target)
            gets.append({**got, "mb_s": round(size / MIB / got["seconds"], 1)})
        results["get"] = max(gets, key=lambda g: g["mb_s"])
        results["get_runs"] = gets
    shutil.rmtree(work / "store", ignore_errors=True)
    shutil.rmtree(big)
    shutil.rmtree(small)
    results["digest"] = digest

    print(f"\n## client: registry get of a {size // MIB} MB version (the Procfile's web, loopback, same disk)\n")
    print(
        table(
            ["path", "seconds", "MB/s", "client peak RSS MB"],
            [
                ("cp of the same file (faster of two)", results["cp_s"], results["cp_mb_s"], "-"),
                *[(f"registry get, run {n}", g["seconds"], g["mb_s"], g["peak_rss_mb"]) for n, g in enumerate(gets, 1)],
            ],
        )
    )
    print("\n## client: registry artifact put\n")
    rows = []
    for key, label in (
        ("put_small", f"{SMALL_FILES} files of {SMALL_SIZE // 1024} KiB, new"),
        ("put_small_again", f"the same {SMALL_FILES} files again"),
        ("put_big", f"{size // MIB} MB file, new"),
        ("put_big_again", f"the same {size // MIB} MB file again"),
    ):
        r = results[key]
        methods = ", ".join(f"{m} {n}" for m, n in sorted(r["by_method"].items()))
        rows.append((label, r["seconds"], r["requests"], methods, r["by_method"].get("PUT", 0), r["peak_rss_mb"]))
    print(table(["put", "seconds", "requests", "by method", "files uploaded", "client peak RSS MB"], rows))

    again, peak = results["put_big_again"], results["get"]["peak_rss_mb"]
    uploaded = again["by_method"].get("PUT", 0)
    results["targets"] = [
        Target("client peak RSS MB, get", "< 100", peak, peak < 100),
        Target(f"re-log {size // MIB} MB unchanged, s", "< 1", again["seconds"], again["seconds"] < 1),
        Target("re-log unchanged, files uploaded", "0", uploaded, uploaded == 0),
    ]
    return results
