"""MLflow's side of the "side by side with MLflow" benchmark: the alias → webhook scenario against a real MLflow
tracking server, so our latencies have a reference measured on the same machine, in the same run, the same way.

MLflow runs from its own virtual environment (``work_dir/venv``, created once from ``mlflow_requirements.txt``) so
it never touches our ``.venv``; its server gets a fresh SQLite store under ``work_dir/run`` each time. The webhook
receiver is a loopback HTTP server in this process, timed with ``time.perf_counter`` like the API calls. The
scenario is bench/scenarios/latency.py's: ``production`` moves between two model versions, one change at a time,
each waiting for its delivery; the receiver is the harness's, answering as it does for our side.

What MLflow needs to deliver to a loopback ``http://`` receiver (read in ``mlflow/environment_variables.py``,
``mlflow/utils/validation.py`` and ``mlflow/webhooks/``): ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES`` (default ``https``
only), ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS`` (default false: loopback is refused, both when the webhook is saved and
at connect time), and ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``: without it every server worker generates its own
Fernet key for webhook secrets, so a signed webhook saved through one worker cannot be read by the others.

Run alone: ``.venv/bin/python -m bench.mlflow_side [COUNT]`` (default 100).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from harness.receiver import Received, Receiver
from harness.util import free_port

REQUIREMENTS = Path(__file__).resolve().with_name("mlflow_requirements.txt")
FALLBACK_REQUIREMENT = "mlflow==3.17.2"

WORKERS = 4  # `mlflow server`'s own default (uvicorn); passed explicitly so readiness can count them
WARMUP = 20  # unmeasured alias changes first: each uvicorn worker sets up its store, session and webhook cache lazily
DELIVERY_WAIT = 10.0  # seconds to wait for each delivery before counting it missing
API_TIMEOUT = 30.0
START_TIMEOUT = 180.0
INSTALL_TIMEOUT = 1200.0
WEBHOOK_SECRET = "bench-mlflow-secret"  # noqa: S105 - a throwaway secret for a loopback benchmark
MODEL = "bench-model"


# --- MLflow's virtual environment -------------------------------------------------------------------------------


def _venv_mlflow_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('mlflow'))"
    done = subprocess.run(  # noqa: S603
        [str(python), "-c", probe], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _pinned_requirement() -> str:
    if REQUIREMENTS.exists():
        for line in REQUIREMENTS.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("mlflow=="):
                return line
    return FALLBACK_REQUIREMENT


def ensure_venv(work_dir: Path) -> tuple[Path, str]:
    """Create ``work_dir/venv`` with the pinned MLflow once and reuse it (installing takes a minute and ~850 MB);
    returns its python and MLflow's version."""
    venv = work_dir / "venv"
    python = venv / "bin" / "python"
    wanted = _pinned_requirement().split("==", 1)[1]
    if _venv_mlflow_version(python) == wanted:
        return python, wanted
    if not python.exists():
        venv_cmd = [sys.executable, "-m", "venv", str(venv)]
        subprocess.run(venv_cmd, stdin=subprocess.DEVNULL, check=True, timeout=300)  # noqa: S603
    args = ["-r", str(REQUIREMENTS)] if REQUIREMENTS.exists() else [FALLBACK_REQUIREMENT]
    print(f"mlflow_side: installing MLflow {wanted} into {venv} (once)", file=sys.stderr, flush=True)
    subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        stdin=subprocess.DEVNULL,
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    version = _venv_mlflow_version(python)
    if version is None:
        raise RuntimeError(f"MLflow did not install into {venv}")
    return python, version


# --- The loopback receiver --------------------------------------------------------------------------------------


class _Receiver:
    """Records, in order, when each webhook request arrived (its whole body read, before answering) and what it
    carried, and checks MLflow's signature. It answers like the benchmarks' own receivers (200, ``Connection:
    close``), so neither side keeps a connection to the receiver alive."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.cond = threading.Condition()
        self.arrivals: list[tuple[float, str, str]] = []  # (perf_counter, alias, version)
        self.delivery_ids: set[str] = set()
        self.duplicates = 0
        self.bad_signatures = 0
        self.server = Receiver(close_connections=True, on_request=self.record)

    @property
    def url(self) -> str:
        return self.server.url

    def record(self, received: Received) -> None:
        arrived = time.perf_counter()
        body, headers = received.body, {k.lower(): v for k, v in received.headers.items()}
        # MLflow signs "{delivery id}.{timestamp}.{body}" and sends "v1,<base64 HMAC-SHA256>".
        delivery_id = headers.get("x-mlflow-delivery-id", "")
        signed = f"{delivery_id}.{headers.get('x-mlflow-timestamp', '')}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(self.secret, signed, hashlib.sha256).digest()).decode()
        try:
            data = json.loads(body)["data"]
            alias, version = str(data["alias"]), str(data["version"])
        except (ValueError, KeyError, TypeError):
            alias = version = ""
        with self.cond:
            self.bad_signatures += not hmac.compare_digest(expected, headers.get("x-mlflow-signature", ""))
            self.duplicates += delivery_id in self.delivery_ids  # the same id on each of urllib3's retries
            self.delivery_ids.add(delivery_id)
            self.arrivals.append((arrived, alias, version))
            self.cond.notify_all()

    def wait_past(self, seen: int, timeout: float) -> tuple[float, str, str] | None:
        """The first arrival after the first ``seen`` ones, waiting up to ``timeout`` seconds for it."""
        with self.cond:
            self.cond.wait_for(lambda: len(self.arrivals) > seen, timeout=timeout)
            return self.arrivals[seen] if len(self.arrivals) > seen else None


# --- CPU and memory of the server's process tree ----------------------------------------------------------------

try:
    import psutil
except ImportError:  # pragma: no cover - depends on what .venv holds
    psutil = None

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, user+sys seconds, RSS bytes) from /proc, for when psutil is not installed."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK, int(fields[21]) * _PAGE


def _tree(root: int) -> dict[int, tuple[float, int]]:
    """PID → (cpu seconds, RSS bytes) of ``root`` and all its descendants."""
    found: dict[int, tuple[float, int]] = {}
    if psutil is not None:
        try:
            top = psutil.Process(root)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return found
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    found[proc.pid] = (times.user + times.system, proc.memory_info().rss)
            except psutil.NoSuchProcess:
                continue
        return found
    stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _proc_stat(int(p))) is not None}
    wanted = {root}
    changed = True
    while changed:
        grown = {pid for pid, (ppid, _, _) in stats.items() if ppid in wanted}
        changed = not grown <= wanted
        wanted |= grown
    return {pid: stats[pid][1:] for pid in wanted if pid in stats}


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine: tells whether something else competed for the cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _role(pid: int) -> str:
    cmd = _cmdline(pid)
    if "spawn_main" in cmd:
        return "uvicorn worker"
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "uvicorn" in cmd:
        return "uvicorn supervisor"
    if "mlflow server" in cmd:
        return "mlflow cli"
    return "other"


class _TreeMeter:
    """Samples the server tree: CPU over a window (a process born inside it counts from zero) and peak RSS."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak_total = 0
        self.peak_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlflow-meter", daemon=True)

    def _sample(self) -> None:
        tree = _tree(self.root)
        for pid, (cpu, rss) in tree.items():
            self.last[pid] = cpu
            self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), rss)
        self.peak_total = max(self.peak_total, sum(rss for _, rss in tree.values()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def window_start(self) -> None:
        self._sample()
        self.base = dict(self.last)

    def window_cpu(self) -> float:
        self._sample()
        return sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def breakdown(self) -> str:
        by_role: dict[str, list[int]] = {}
        for pid, rss in self.peak_by_pid.items():
            by_role.setdefault(_role(pid), []).append(rss)
        return ", ".join(
            f"{role} {len(v)}x{max(v) / 2**20:.0f}" if len(v) > 1 else f"{role} {v[0] / 2**20:.0f}"
            for role, v in sorted(by_role.items())
        )


# --- The MLflow server ------------------------------------------------------------------------------------------


# Exec'd in front of `mlflow server`: SIGTERM it when the process that started it dies (PR_SET_PDEATHSIG survives
# exec), so a benchmark killed without cleanup never leaves a server running; the CLI forwards SIGTERM to uvicorn,
# which stops its workers. A launcher rather than preexec_fn, which is unsafe in a process with threads.
_LAUNCHER = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def server_env(run_dir: Path) -> dict[str, str]:
    """The server's environment: ours minus anything MLflow or Python would pick up from it, plus the settings a
    loopback receiver needs (see the module docstring) and two that keep unrelated work out of the measurement."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # The job runner (huey consumers for GenAI evaluation jobs) has nothing to do with the registry: 8 more
        # processes, ~500 MB, that would count against MLflow. Telemetry would only try to reach the internet.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        TMPDIR=str(run_dir),
    )
    return env


def _start_server(python: Path, run_dir: Path, port: int) -> tuple[subprocess.Popen, Path]:
    log = run_dir / "server.log"
    cmd = [
        str(python),
        "-c",
        _LAUNCHER,
        str(os.getpid()),
        str(python.parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{run_dir / 'mlflow.db'}",
        "--default-artifact-root",
        str(run_dir / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603
            cmd,
            cwd=run_dir,
            env=server_env(run_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def _wait_ready(proc: subprocess.Popen, log: Path, base: str) -> None:
    """Until every uvicorn worker has started its application and the server answers."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{_tail(log)}")
        if log.read_text(errors="replace").count("Application startup complete") >= WORKERS:
            try:
                if requests.get(f"{base}/health", timeout=5).ok:
                    return
            except requests.RequestException:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"mlflow server not ready after {START_TIMEOUT:.0f} s:\n{_tail(log)}")
        time.sleep(0.2)


def _stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after ``timeout``, and any descendant that left it."""
    descendants = {pid: _cmdline(pid) for pid in _tree(proc.pid) if pid != proc.pid}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the CLI, or its zombie keeps the group alive
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid, cmdline in descendants.items():
        if cmdline and _cmdline(pid) == cmdline:  # still that process, not a reused PID
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- The scenario -----------------------------------------------------------------------------------------------


def _call(session: requests.Session, base: str, path: str, body: dict) -> dict:
    response = session.post(f"{base}/api/2.0/mlflow/{path}", json=body, timeout=API_TIMEOUT)
    if not response.ok:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    return response.json()


def _setup(session: requests.Session, base: str, hook_url: str) -> None:
    """A registered model with two versions and one signed webhook for alias-created events.

    A model version with a local source must name a run whose artifact directory holds it, so a run is made first.
    """
    run = _call(session, base, "runs/create", {"experiment_id": "0"})["run"]
    source = run["info"]["artifact_uri"].rstrip("/") + "/model"
    _call(session, base, "registered-models/create", {"name": MODEL})
    for _ in range(2):
        _call(
            session, base, "model-versions/create", {"name": MODEL, "source": source, "run_id": run["info"]["run_id"]}
        )
    event = {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"}
    hook = {"name": "bench", "url": hook_url, "events": [event], "secret": WEBHOOK_SECRET}
    _call(session, base, "webhooks", hook)


def measure(count: int, work_dir: Path) -> dict:
    """Move alias ``production`` between two MLflow model versions ``count`` times, one at a time (closed loop, as
    bench/scenarios/latency.py does on our stack), timing each API call and its webhook's arrival at a loopback
    receiver; CPU (user+sys) and peak RSS of the server's process tree over those calls."""
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    python, version = ensure_venv(work_dir)
    run_dir = work_dir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "artifacts").mkdir(parents=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, log = _start_server(python, run_dir, port)
    receiver: _Receiver | None = None
    meter: _TreeMeter | None = None
    session = requests.Session()
    # A new connection per call, as our gunicorn sync workers force (they close after each response). On a kept-alive
    # connection MLflow's default server stalls ~45 ms per response: with more than one worker uvicorn binds the
    # socket itself as socket.socket(family) (proto 0), so asyncio never sets TCP_NODELAY on accepted connections, and
    # headers and body go out as two writes (Nagle holds the body until the client's delayed ACK).
    session.headers["Connection"] = "close"
    try:
        receiver = _Receiver(WEBHOOK_SECRET)
        receiver.server.__enter__()
        started = time.monotonic()
        _wait_ready(proc, log, base)
        startup_s = time.monotonic() - started
        meter = _TreeMeter(proc.pid)
        meter.start()
        _setup(session, base, receiver.url)
        wrong = 0

        def change(index: int) -> tuple[float, float | None]:
            nonlocal wrong
            seen = len(receiver.arrivals)
            target = str(index % 2 + 1)  # the other version each time: a real move
            t0 = time.perf_counter()
            _call(session, base, "registered-models/alias", {"name": MODEL, "alias": "production", "version": target})
            api = (time.perf_counter() - t0) * 1000
            arrival = receiver.wait_past(seen, DELIVERY_WAIT)
            if arrival is None:
                return api, None
            wrong += arrival[1:] != ("production", target)
            return api, (arrival[0] - t0) * 1000

        for index in range(WARMUP):
            change(index)
        if not receiver.arrivals:
            raise RuntimeError(f"MLflow delivered none of {WARMUP} warm-up webhooks; server log:\n{_tail(log)}")
        wrong = 0
        expected = len(receiver.arrivals)

        api_ms: list[float] = []
        delivery_ms: list[float] = []
        missing = in_a_row = 0
        meter.window_start()
        machine = _machine_cpu()
        wall = time.perf_counter()
        for index in range(WARMUP, WARMUP + count):
            api, delivered = change(index)
            api_ms.append(api)
            if delivered is None:
                missing += 1
                in_a_row += 1
                if in_a_row >= 5:
                    raise RuntimeError(f"MLflow stopped delivering (5 in a row missing); server log:\n{_tail(log)}")
            else:
                in_a_row = 0
                delivery_ms.append(delivered)
        wall = time.perf_counter() - wall
        cpu_s = meter.window_cpu()
        busy, total = (b - a for a, b in zip(machine, _machine_cpu(), strict=True))
        time.sleep(1.0)  # anything arriving now is late or a duplicate
        extra = len(receiver.arrivals) - expected - (count - missing)
        tenth = max(1, count // 10)
        first, last = statistics.median(api_ms[:tenth]), statistics.median(api_ms[-tenth:])
        drift = f"API p50 of the first/last {tenth}: {first:.2f}/{last:.2f} ms; " if count >= 20 else ""
        notes = (
            f"MLflow {version}: `mlflow server` as shipped (uvicorn, {WORKERS} workers, FastAPI around Flask), SQLite "
            f"store. Set: MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https; MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true (loopback; "
            f"also turns off its SSRF checks); MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY shared by the workers (without it "
            f"each worker has its own key and 3 of 4 deliveries fail); MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (no "
            f"huey job runner: 8 processes, ~500 MB, unrelated to the registry); MLFLOW_DISABLE_TELEMETRY=true. "
            f"Webhook timeout/retries/threads/cache at defaults (30 s, 3, 10, 60 s). Delivery is fire-and-forget: "
            f"the alias handler, after its commit, submits the POST to an in-process thread pool; no outbox, lost if "
            f"the worker dies, retries only inside urllib3 (429/5xx/connection errors). One new connection per API "
            f"call (Connection: close, as gunicorn does for ours). {WARMUP} unmeasured warm-up moves. Missing "
            f"{missing} of {count} (omitted from delivery_ms), late or duplicate {extra} (duplicate delivery ids "
            f"{receiver.duplicates}), wrong alias/version {wrong}, bad signatures {receiver.bad_signatures}; "
            f"{drift}{count / wall:.0f} moves/s; machine CPU busy {busy / max(total, 1):.0%} while measuring (every "
            f"process, all cores); server ready in {startup_s:.1f} s. CPU over the measured loop only; peak RSS is "
            f"the peak of the tree's sum, per process (MB): {meter.breakdown()}."
        )
        return {
            "version": version,
            "api_ms": api_ms,
            "delivery_ms": delivery_ms,
            "cpu_s": round(cpu_s, 3),
            "peak_rss_mb": round(meter.peak_total / 2**20, 1),
            "notes": notes,
        }
    finally:
        if meter is not None:
            meter.stop()
        session.close()
        _stop_server(proc)
        if receiver is not None:
            receiver.server.__exit__()


# --- Run alone --------------------------------------------------------------------------------------------------


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return (values[0],) * 3 if values else (float("nan"),) * 3
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def main(argv: list[str]) -> int:
    """Measure and print a p50/p95/p99 table; SIGTERM unwinds through measure()'s cleanup."""
    count = int(argv[1]) if len(argv) > 1 else 100

    def _terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    result = measure(count, Path("bench/results/mlflow-work"))
    print(f"MLflow {result['version']}, {count} alias moves")
    print(f"{'':12} {'n':>6} {'p50':>9} {'p95':>9} {'p99':>9}")
    for key in ("api_ms", "delivery_ms"):
        p50, p95, p99 = _percentiles(result[key])
        print(f"{key:12} {len(result[key]):>6} {p50:>9.2f} {p95:>9.2f} {p99:>9.2f}")
    print(f"cpu_s {result['cpu_s']:.2f}  peak_rss_mb {result['peak_rss_mb']:.0f}")
    print(result["notes"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
