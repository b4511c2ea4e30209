"""The benchmarks' side of the stack: the environment and the database every scenario starts from, and
``ResourceMonitor``, which samples the CPU time and memory of the stack's processes with psutil while a measurement
runs. The processes themselves are the harness's ``Stack`` (the Procfile's lines run through ``sh -c`` exactly as a
deployment would), here on the benchmark's own PostgreSQL database and Redis db, on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.stack import ROLES, stack_env
from harness.util import ROOT

VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python")

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
# Two checkouts benchmarking at once each need their own database and Redis db.
DB_NAME = os.environ.get("BENCH_DATABASE", "registry_bench")
DATABASE_URL = f"{PG_SERVER}/{DB_NAME}"
BROKER_URL = f"redis://127.0.0.1:6379/{os.environ.get('BENCH_REDIS_DB', '11')}"


def base_env(*, secrets_key: str, var_dir: Path) -> dict[str, str]:
    """The environment every benchmark process gets: production settings pointed at the benchmark's own database,
    Redis db and state directory, plus what only a benchmark needs (loopback receivers are allowed)."""
    return stack_env(
        database_url=DATABASE_URL, broker_url=BROKER_URL, var_dir=var_dir, secrets_key=secrets_key,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", SECRET_KEY="bench-" + secrets_key[:32],
        ALLOWED_HOSTS="127.0.0.1,localhost", DEBUG="false",
    )  # fmt: skip


def broker_reset() -> None:
    """Empty the benchmark's Redis db: a scenario never inherits tasks another one left queued."""
    import redis

    redis.Redis.from_url(BROKER_URL).flushdb()


def database_reset(env: dict[str, str], *, log: Path) -> None:
    """Drop and recreate the benchmark database, then migrate it; empty the benchmark's Redis db."""
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    with log.open("ab") as out:
        subprocess.run(  # noqa: S603
            [PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, stdout=out, stderr=out, check=True,
            timeout=300,
        )  # fmt: skip
    broker_reset()


# --- Measuring the processes -------------------------------------------------------------------------------


_KIND = {
    ("web", True): "gunicorn master",
    ("web", False): "gunicorn worker",
    ("worker", True): "celery events (main)",
    ("worker", False): "celery events (pool child)",
    ("deliveries", True): "celery deliveries (threads)",
    ("deliveries", False): "celery deliveries (child)",
    ("beat", True): "celery beat",
    ("beat", False): "celery beat (child)",
}


@dataclass
class _Seen:
    role: str
    kind: str
    cpu_start: float
    cpu_end: float = 0.0
    peak_rss: int = 0
    hwm: int = 0


@dataclass
class ResourceMonitor:
    """CPU time (user+sys) and peak RSS of each process of the stack while a measurement runs.

    CPU is the difference between the end and the start of the window (a process born inside the window counts from
    zero); peak RSS is the largest of the sampled RSS and the kernel's high-water mark (VmHWM) at the end. The
    PostgreSQL backends serving the benchmark database and redis-server are measured alongside, as shared
    infrastructure (``infra``), not as our processes.
    """

    roots: dict[str, int]
    interval: float = 0.1
    infra: Callable[[], dict[int, str]] | None = None
    seen: dict[int, _Seen] = field(default_factory=dict)
    started: float = 0.0
    elapsed: float = 0.0
    peak_total_rss: int = 0  # largest sum of our processes' RSS in one sample
    machine_busy: float = 0.0  # share of the machine's CPU time (all cores, every process) that was busy
    # (role, output path): py-spy records that role's process tree for the whole window (speedscope JSON).
    profile: tuple[str, Path] | None = None
    profile_gil: bool = False  # sample only the thread holding the GIL: where the CPU goes, not the waiting
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _profiler: subprocess.Popen | None = None
    _machine_start: object = None

    def _processes(self) -> list[tuple[str, bool, psutil.Process]]:
        found = []
        for role, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                found.append((role, True, root))
                found.extend((role, False, child) for child in root.children(recursive=True))
            except psutil.NoSuchProcess:
                continue
        return found

    def _infra(self) -> list[tuple[str, bool, psutil.Process]]:
        if self.infra is None:
            return []
        found = []
        for pid, kind in self.infra().items():
            try:
                found.append((kind, True, psutil.Process(pid)))
            except psutil.NoSuchProcess:
                continue
        return found

    def _sample(self, *, first: bool = False, infra: list | None = None) -> None:
        total = 0
        for role, is_root, proc in self._processes() + (infra or []):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu = times.user + times.system
                    rss = proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            seen = self.seen.get(proc.pid)
            if seen is None:
                kind = _KIND.get((role, is_root), role)
                seen = self.seen[proc.pid] = _Seen(role=role, kind=kind, cpu_start=cpu if first else 0.0)
            seen.cpu_end = cpu
            seen.peak_rss = max(seen.peak_rss, rss)
            total += rss if role in ROLES else 0
        self.peak_total_rss = max(self.peak_total_rss, total)

    def _run(self) -> None:
        infra: list = []
        last_infra = 0.0
        while not self._stop.wait(self.interval):
            if time.monotonic() - last_infra > 1.0:
                infra, last_infra = self._infra(), time.monotonic()
            self._sample(infra=infra)

    def _profile_start(self) -> None:
        role, out = self.profile
        command = [str(VENV_BIN / "py-spy"), "record", "--pid", str(self.roots[role]), "--subprocesses"]
        command += ["--rate", "250", "--format", "speedscope", "--output", str(out), "--nonblocking"]
        command += ["--gil"] if self.profile_gil else []
        self._profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        time.sleep(0.5)  # let it attach

    def _profile_stop(self) -> None:
        self._profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            self._profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._profiler.kill()
            self._profiler.wait(timeout=10)

    def __enter__(self) -> ResourceMonitor:
        if self.profile is not None:
            self._profile_start()
        self._machine_start = psutil.cpu_times()
        self._sample(first=True, infra=self._infra())
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="resource-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sample(infra=self._infra())
        self.elapsed = time.monotonic() - self.started
        end = psutil.cpu_times()
        busy = sum(
            getattr(end, f) - getattr(self._machine_start, f) for f in ("user", "system", "nice", "irq", "softirq")
        )
        total = busy + (end.idle - self._machine_start.idle) + (end.iowait - self._machine_start.iowait)
        self.machine_busy = round(busy / total, 3) if total > 0 else 0.0
        if self._profiler is not None:
            self._profile_stop()
        for pid, seen in self.seen.items():
            seen.hwm = _vm_hwm(pid)
        if hasattr(self.infra, "close"):
            self.infra.close()

    def processes(self) -> list[dict]:
        """One row per process of ours (role, kind, pid, cpu_s, peak_rss_mb), then one per kind of infrastructure
        (all PostgreSQL backends of the benchmark database together: CPU summed, the largest RSS)."""
        rows = []
        infra: dict[str, dict] = {}
        for pid, s in self.seen.items():
            cpu, rss = max(0.0, s.cpu_end - s.cpu_start), max(s.peak_rss, s.hwm) / 2**20
            if s.role in ROLES:
                rows.append({"role": s.role, "kind": s.kind, "pid": pid, "cpu_s": round(cpu, 3),
                             "peak_rss_mb": round(rss, 1), "ours": True})  # fmt: skip
                continue
            row = infra.setdefault(s.role, {"role": s.role, "kind": s.role, "pid": 0, "cpu_s": 0.0,
                                            "peak_rss_mb": 0.0, "ours": False, "processes": 0})  # fmt: skip
            row["cpu_s"] = round(row["cpu_s"] + cpu, 3)
            row["peak_rss_mb"] = round(max(row["peak_rss_mb"], rss), 1)
            row["processes"] += 1
        for row in infra.values():
            row["kind"] = f"{row['role']} ({row['processes']} processes, shared)"
            row["pid"] = "-"
        rows.sort(key=lambda r: (ROLES.index(r["role"]), r["pid"]))
        return rows + sorted(infra.values(), key=lambda r: r["role"])

    def cpu_total(self, *, ours: bool = True) -> float:
        return round(sum(r["cpu_s"] for r in self.processes() if r["ours"] == ours), 3)

    def peak_rss_mb(self, roles: Iterable[str]) -> float:
        wanted = set(roles)
        return max((r["peak_rss_mb"] for r in self.processes() if r["role"] in wanted), default=0.0)


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class InfraProcesses:
    """PostgreSQL backends connected to the benchmark database, and redis-server: PID → label. One connection to
    each, kept for the whole measurement (asked once a second)."""

    def __init__(self) -> None:
        self._pg = None
        self._redis = None

    def __call__(self) -> dict[int, str]:
        import psycopg
        import redis

        found: dict[int, str] = {}
        try:
            if self._pg is None:
                self._pg = psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=2)
            rows = self._pg.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [DB_NAME]
            ).fetchall()
            found.update({pid: "postgres" for (pid,) in rows})
        except psycopg.Error:
            self._pg = None
        try:
            if self._redis is None:
                self._redis = redis.Redis.from_url(BROKER_URL, socket_timeout=2)
            found[int(self._redis.info("server")["process_id"])] = "redis"
        except (redis.RedisError, KeyError, ValueError):
            self._redis = None
        return found

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._redis is not None:
            self._redis.close()
