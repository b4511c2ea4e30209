"""The launch agent: the local-process runner for real, and the CLI against a protocol-faithful test server.

No database here: the agent is a standalone program that speaks HTTP. The server below is a small double of the
registry's agent routes (identity, claim, report, heartbeat, read an item) that keeps items in memory, so these tests
pin the agent's side of the protocol; end-to-end runs against the real server live with the API tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from registry_client.agent.client import AgentAuthError, AgentClient, Item, LostItem, ServerUnreachable
from registry_client.agent.runner import LOG_TAIL_CHARS, LOG_TAIL_LINES, LocalProcessRunner, LogBuffer, RunnerError

from harness.util import wait_until

pytestmark = pytest.mark.e2e  # jobs, and the agent itself, run as processes

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "agt_test-" + uuid.uuid4().hex


# --- Helpers --------------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (zombies may linger unreaped under some init processes)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def make_item(entrypoint: list[str], **fields) -> Item:
    data = {
        "id": str(uuid.uuid4()),
        "state": "claimed",
        "queue": "gpu",
        "job_version": "train:v0",
        "entrypoint": entrypoint,
        "config": {},
        "destination_project": "runs",
        "event": None,
        "event_context": {},
        "automation": None,
        "attempts": 1,
        "lease_expires_at": "2026-11-24T19:00:30Z",
        "cancel_requested": False,
        **fields,
    }
    return Item.from_json(data)


# --- Runner ---------------------------------------------------------------------------------------------


def test_job_receives_config_file_and_environment(tmp_path):
    out = tmp_path / "seen.json"
    job = script(
        tmp_path,
        "job.py",
        f"""
        import json, os
        names = ["LAUNCH_CONFIG_FILE", "LAUNCH_CONFIG", "LAUNCH_EVENT", "LAUNCH_ITEM_ID",
                 "LAUNCH_DESTINATION_PROJECT", "LAUNCH_CAUSED_BY", "LAUNCH_JOB_VERSION", "LAUNCH_QUEUE",
                 "LAUNCH_ATTEMPT", "LAUNCH_AGENT_TOKEN", "KEEP_ME"]
        seen = {{name: os.environ.get(name) for name in names}}
        with open(os.environ["LAUNCH_CONFIG_FILE"], encoding="utf-8") as fh:
            seen["file"] = json.load(fh)
        seen["cwd"] = os.getcwd()
        seen["cwd_entries"] = os.listdir(".")
        with open({str(out)!r}, "w", encoding="utf-8") as fh:
            json.dump(seen, fh)
        """,
    )
    event_id = str(uuid.uuid4())
    config = {"lr": 0.01, "layers": [64, 64], "name": "é", "nested": {"a": True}}
    context = {"registered_model": "acme/fraud", "version": "v3", "alias": "production"}
    item = make_item(
        [sys.executable, str(job)], config=config, event=event_id, event_context=context, destination_project="runs"
    )
    env = {**os.environ, "LAUNCH_AGENT_TOKEN": TOKEN, "KEEP_ME": "yes", "LAUNCH_CAUSED_BY": "stale"}
    base = tmp_path / "work"
    base.mkdir()
    with LocalProcessRunner(item, base_dir=str(base), env=env) as runner:
        assert runner.run() == 0
        root = runner.root
        assert root is not None and Path(root).parent == base

    seen = json.loads(out.read_text())
    assert seen["file"] == config
    assert json.loads(seen["LAUNCH_CONFIG"]) == config
    assert json.loads(seen["LAUNCH_EVENT"]) == {**context, "event_id": event_id}
    assert seen["LAUNCH_ITEM_ID"] == item.id
    assert seen["LAUNCH_DESTINATION_PROJECT"] == "runs"
    assert seen["LAUNCH_CAUSED_BY"] == event_id
    assert (seen["LAUNCH_JOB_VERSION"], seen["LAUNCH_QUEUE"], seen["LAUNCH_ATTEMPT"]) == ("train:v0", "gpu", "1")
    assert seen["LAUNCH_AGENT_TOKEN"] is None, "a job must never see the agent's token"
    assert seen["KEEP_ME"] == "yes"
    # A fresh, empty working directory of its own, removed afterwards with the config file.
    assert Path(seen["cwd"]).parent == Path(root) and seen["cwd_entries"] == []
    assert not Path(root).exists()


def test_job_without_event_gets_null_event_id_and_no_caused_by(tmp_path):
    out = tmp_path / "seen.json"
    job = script(
        tmp_path,
        "job.py",
        f"""
        import json, os
        with open({str(out)!r}, "w") as fh:
            json.dump([os.environ["LAUNCH_EVENT"], os.environ.get("LAUNCH_CAUSED_BY")], fh)
        """,
    )
    with LocalProcessRunner(make_item([sys.executable, str(job)]), env={**os.environ, "LAUNCH_CAUSED_BY": "x"}) as r:
        assert r.run() == 0
    event, caused_by = json.loads(out.read_text())
    assert json.loads(event) == {"event_id": None}
    assert caused_by is None


def test_output_is_captured_merged_and_the_tail_is_bounded(tmp_path):
    job = script(
        tmp_path,
        "chatty.py",
        """
        import sys
        for i in range(1000):
            stream = sys.stdout if i % 2 == 0 else sys.stderr
            stream.write(f"line {i:04d} " + "x" * 40 + "\\n")
        sys.stdout.write("y" * 100_000 + "\\n")
        print("the end")
        """,
    )
    with LocalProcessRunner(make_item([sys.executable, str(job)])) as runner:
        assert runner.run() == 0
        tail = runner.tail()
    assert len(tail) <= LOG_TAIL_CHARS
    assert len(tail.splitlines()) <= LOG_TAIL_LINES
    assert tail.endswith("the end\n")
    assert "y" * 1000 in tail  # the long line, cut to fit

    short = script(tmp_path, "short.py", 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n')
    with LocalProcessRunner(make_item([sys.executable, str(short)])) as runner:
        assert runner.run() == 0
        assert sorted(runner.tail().splitlines()) == ["err", "out"]


def test_output_streams_while_the_job_runs(tmp_path):
    job = script(tmp_path, "slow.py", 'import time\nprint("started")\ntime.sleep(60)\n')
    with LocalProcessRunner(make_item([sys.executable, str(job)]), kill_grace=1) as runner:
        runner.start()
        assert wait_until(lambda: "started" in runner.tail())
        assert runner.poll() is None


def test_failing_job_gives_its_exit_code_and_last_lines(tmp_path):
    job = script(
        tmp_path,
        "fail.py",
        """
        import sys
        for i in range(500):
            print(f"step {i}")
        raise SystemExit("boom: the model diverged")
        """,
    )
    with LocalProcessRunner(make_item([sys.executable, str(job)])) as runner:
        assert runner.run() == 1
        lines = runner.tail().splitlines()
    assert lines[-1] == "boom: the model diverged"
    assert lines[-2] == "step 499"
    assert "step 0" not in lines

    code_job = script(tmp_path, "code.py", "import sys\nsys.exit(42)\n")
    with LocalProcessRunner(make_item([sys.executable, str(code_job)])) as runner:
        assert runner.run() == 42


def test_a_missing_program_fails_with_127(tmp_path):
    runner = LocalProcessRunner(make_item([str(tmp_path / "no-such-program")]))
    with pytest.raises(RunnerError) as info:
        runner.start()
    assert info.value.exit_code == 127
    assert "no-such-program" in runner.tail()
    runner.cleanup()

    with pytest.raises(RunnerError):
        LocalProcessRunner(make_item([])).start()


def test_cancel_kills_the_job_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    job = script(
        tmp_path,
        "parent.py",
        f"""
        import os, subprocess, sys, time
        # A grandchild that ignores SIGTERM, so only the SIGKILL after the grace stops it.
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('child up', flush=True);"
            " time.sleep(120)"])
        with open({str(pids)!r}, "w") as fh:
            fh.write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(120)
        """,
    )
    runner = LocalProcessRunner(make_item([sys.executable, str(job)]), kill_grace=1.0)
    runner.start()
    assert wait_until(lambda: pids.exists() and pids.read_text().count(" ") == 1 and "child up" in runner.tail())
    parent, child = map(int, pids.read_text().split())
    assert alive(parent) and alive(child)

    started = time.monotonic()
    code = runner.cancel()
    elapsed = time.monotonic() - started
    assert code == -signal.SIGTERM
    assert runner.cancelled
    assert elapsed < 5
    assert wait_until(lambda: not alive(parent) and not alive(child), timeout=3)
    assert "killed it" in runner.tail()
    runner.cleanup()


def test_processes_left_behind_are_stopped_when_the_job_ends(tmp_path):
    pid_file = tmp_path / "orphan"
    job = script(
        tmp_path,
        "leaver.py",
        f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        """,
    )
    with LocalProcessRunner(make_item([sys.executable, str(job)]), kill_grace=1.0) as runner:
        assert runner.run() == 0
    assert not alive(int(pid_file.read_text()))


def test_the_model_version_folder_is_named_to_the_job_only_when_it_was_downloaded(tmp_path):
    out = tmp_path / "seen.json"
    job = script(
        tmp_path,
        "job.py",
        f"""
        import json, os
        folder = os.environ.get("LAUNCH_ARTIFACT_DIR")
        seen = {{"folder": folder, "cwd": os.getcwd(), "files": sorted(os.listdir(folder)) if folder else None}}
        json.dump(seen, open({str(out)!r}, "w"))
        """,
    )
    env = {**os.environ, "LAUNCH_ARTIFACT_DIR": "/stale/from/the/agent"}
    with LocalProcessRunner(make_item([sys.executable, str(job)]), env=env) as runner:
        target = Path(runner.artifact_target())
        target.mkdir()
        (target / "model.bin").write_bytes(b"weights")
        assert runner.run() == 0
    seen = json.loads(out.read_text())
    assert seen["folder"] == str(target) and Path(seen["cwd"]) / "artifact" == target
    assert seen["files"] == ["model.bin"]

    with LocalProcessRunner(make_item([sys.executable, str(job)]), env=env) as runner:
        assert runner.run() == 0
    assert json.loads(out.read_text())["folder"] is None


def test_log_buffer_keeps_a_terminal_view():
    buffer = LogBuffer(max_chars=40, max_lines=3)
    buffer.append("one\ntwo\nthr")
    buffer.append("ee\nfour\n")
    assert buffer.tail() == "two\nthree\nfour\n"
    buffer.append("progress 10%\rprogress 90%")
    assert buffer.tail() == "three\nfour\nprogress 90%"
    buffer.append("\rdone\r\n")
    assert buffer.tail() == "three\nfour\ndone\n"
    buffer.append("z" * 100)
    assert buffer.tail() == "z" * 40


def test_the_agent_comes_with_the_client_and_imports_nothing_of_the_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    # Only the standard library, requests and the client: no Django, no server app.
    check = (
        "import sys; import registry_client.agent.cli, registry_client.agent.client, registry_client.agent.runner; "
        "server = ('django', 'rest_framework', 'registry', 'automations', 'secrets_vault', 'config', 'launch'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in server); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, check=True, timeout=60)
    # The server keeps no copy of it.
    assert not (ROOT / "launch" / "agent").exists()
    # The console script is the client's.
    script = Path(sys.executable).with_name("launch-agent")
    run = subprocess.run([str(script), "--help"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "--queue" in run.stdout
    assert "registry_client.agent.cli" in script.read_text()


# --- A protocol-faithful test server --------------------------------------------------------------------


ITEM_ROUTE = re.compile(r"^/api/v1/teams/(?P<team>[^/]+)/launch/items/(?P<id>[^/]+)/(?P<heartbeat>heartbeat/)?$")
CLAIM_ROUTE = re.compile(r"^/api/v1/teams/(?P<team>[^/]+)/launch/queues/(?P<queue>[^/]+)/claim/$")
ACTIVE = ("claimed", "running")


class FakeRegistry:
    """The registry's agent routes, in memory. ``requests`` records (method, path, body) of every call."""

    def __init__(self, *, team: str = "acme", name: str = "gpu-box-1", queues=("gpu", "cpu")) -> None:
        self.team, self.name, self.queues = team, name, list(queues)
        self.cond = threading.Condition()
        self.items: dict[str, dict] = {}
        self.requests: list[tuple[str, str, object]] = []
        self.authorizations: set[str] = set()
        self.fail_next = 0  # answer 503 to this many requests
        self.drop_next_report = False  # apply a PATCH but close the connection without an answer
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_item(
        self, entrypoint: list[str], *, queue: str = "gpu", config=None, event=None, context=None, **fields
    ) -> str:
        item_id = str(uuid.uuid4())
        with self.cond:
            self.items[item_id] = {
                "id": item_id,
                "state": "pending",
                "queue": queue,
                "job_version": "train:v0",
                "entrypoint": entrypoint,
                "config": config or {},
                "destination_project": "runs",
                "agent": None,
                "attempts": 0,
                "exit_code": None,
                "log_tail": "",
                "reason": "",
                "cancel_requested": False,
                "lease_expires_at": None,
                "event": event,
                "event_context": context or {},
                "automation": None,
                "automation_name": "",
                "created_at": f"2026-11-24T19:00:{len(self.items):02d}Z",
                "started_at": None,
                "finished_at": None,
                "download_artifact": False,
                **fields,
            }
        return item_id

    def item(self, item_id: str) -> dict:
        with self.cond:
            return dict(self.items[item_id])

    def update(self, item_id: str, **fields) -> None:
        with self.cond:
            self.items[item_id].update(fields)

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def calls(self, method: str, suffix: str = "") -> list[tuple[str, str, object]]:
        with self.cond:
            return [r for r in self.requests if r[0] == method and r[1].endswith(suffix)]

    def _handler(self):
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def _send(self, status: int, body=None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, detail: str, code: str) -> None:
                self._send(status, {"detail": detail, "code": code, "errors": {}})

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with registry.cond:
                    registry.requests.append((method, self.path, body))
                    registry.authorizations.add(self.headers.get("Authorization", ""))
                    try:
                        self._route(method, body)
                    finally:
                        registry.cond.notify_all()

            def _route(self, method: str, body) -> None:
                if registry.fail_next:
                    registry.fail_next -= 1
                    return self._error(503, "Try again later.", "unavailable")
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    return self._error(401, "Invalid or disabled agent token.", "authentication_failed")
                if method == "GET" and self.path == "/api/v1/launch/agent/":
                    return self._send(200, {"team": registry.team, "name": registry.name, "queues": registry.queues})
                if (m := CLAIM_ROUTE.match(self.path)) and method == "POST":
                    if m["team"] != registry.team:
                        return self._error(404, f"No team {m['team']!r}.", "not_found")
                    if m["queue"] not in registry.queues:
                        return self._error(403, f"Agent does not serve queue {m['queue']}.", "forbidden")
                    pending = [
                        i for i in registry.items.values() if i["queue"] == m["queue"] and i["state"] == "pending"
                    ]
                    if not pending:
                        return self._send(204)
                    item = min(pending, key=lambda i: i["created_at"])
                    item.update(state="claimed", agent=registry.name, attempts=item["attempts"] + 1)
                    item["lease_expires_at"] = "2026-11-24T19:01:00Z"
                    return self._send(200, item)
                if m := ITEM_ROUTE.match(self.path):
                    item = registry.items.get(m["id"])
                    if m["team"] != registry.team or item is None:
                        return self._error(404, "No such item.", "not_found")
                    if method == "GET" and not m["heartbeat"]:
                        return self._send(200, item)
                    held = item["agent"] == registry.name and item["state"] in ACTIVE
                    conflict = f"This agent no longer holds item {item['id']} (it is {item['state']})."
                    if method == "POST" and m["heartbeat"]:
                        if not held:
                            return self._error(409, conflict, "conflict")
                        if body and "log_tail" in body:
                            item["log_tail"] = body["log_tail"][-16384:]
                        return self._send(200, {"cancel_requested": item["cancel_requested"], "lease_expires_at": "x"})
                    if method == "PATCH" and not m["heartbeat"]:
                        if body.get("state") not in ("running", "finished", "failed", "cancelled"):
                            return self._error(400, "Bad state.", "invalid")
                        if not held:
                            return self._error(409, conflict, "conflict")
                        item["state"] = body["state"]
                        for key in ("exit_code", "log_tail", "reason"):
                            if key in body:
                                item[key] = body[key]
                        if registry.drop_next_report:
                            registry.drop_next_report = False
                            self.close_connection = True
                            return None  # the answer is lost on the way
                        return self._send(200, item)
                return self._error(404, "Not found.", "not_found")

        return Handler


@pytest.fixture
def registry():
    with FakeRegistry() as server:
        yield server


class AgentProcess:
    """``python -m registry_client.agent`` as a real process; its stderr goes to a file."""

    def __init__(self, tmp_path: Path, url: str, *args: str, token: str = TOKEN) -> None:
        self.log_path = tmp_path / "agent.log"
        env = {**os.environ, "LAUNCH_AGENT_TOKEN": token}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        cmd = [sys.executable, "-m", "registry_client.agent", "--url", url, "--poll-interval", "0.1"]
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*cmd, "--heartbeat", "0.3", *args], cwd=tmp_path, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log_file.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


@pytest.fixture
def agents():
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


# --- The CLI --------------------------------------------------------------------------------------------


def test_agent_claims_runs_heartbeats_and_reports_finished(registry, agents, tmp_path):
    job = script(
        tmp_path,
        "train.py",
        'import json, os, time\nprint("hello from", os.environ["LAUNCH_ITEM_ID"])\n'
        'print("lr", json.load(open(os.environ["LAUNCH_CONFIG_FILE"]))["lr"], flush=True)\ntime.sleep(1.0)\n',
    )
    item_id = registry.add_item([sys.executable, str(job)], config={"lr": 0.1})
    agent = AgentProcess(tmp_path, registry.url, "--queue", "gpu", "--queue", "cpu")
    agents.append(agent)

    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "finished"), agent.log
    item = registry.item(item_id)
    assert item["exit_code"] == 0
    assert f"hello from {item_id}" in item["log_tail"] and "lr 0.1" in item["log_tail"]

    assert agent.stop() == 0
    assert registry.calls("GET", "/launch/agent/")
    assert registry.calls("POST", "/launch/queues/gpu/claim/")
    path = f"/api/v1/teams/acme/launch/items/{item_id}/"
    reports = [body for method, p, body in registry.requests if method == "PATCH" and p == path]
    assert reports[0] == {"state": "running"}
    assert reports[-1]["state"] == "finished" and reports[-1]["exit_code"] == 0
    assert len(reports) == 2
    beats = registry.calls("POST", f"/items/{item_id}/heartbeat/")
    assert beats, "a job running longer than the heartbeat interval is heartbeaten"
    assert any("hello from" in (body or {}).get("log_tail", "") for _, _, body in beats)
    assert registry.authorizations == {f"Token {TOKEN}"}

    log = agent.log
    short = item_id[:8]
    assert re.search(
        rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ item {short} claimed from queue gpu \(job train:v0, attempt 1", log, re.M
    )
    assert f"item {short} running (pid " in log
    assert re.search(rf"item {short} finished exit=0 in \d+\.\ds", log)
    assert TOKEN not in log
    assert "\x1b[" not in log


def test_a_failing_job_is_reported_failed_with_its_exit_code(registry, agents, tmp_path):
    job = script(tmp_path, "bad.py", 'print("about to fail")\nraise SystemExit(3)\n')
    item_id = registry.add_item([sys.executable, str(job)], queue="cpu")
    missing = registry.add_item([str(tmp_path / "not-there")], queue="cpu")
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "cpu"))
    assert registry.wait_for(lambda: registry.items[missing]["state"] == "failed"), agent.log
    item = registry.item(item_id)
    assert item["state"] == "failed" and item["exit_code"] == 3 and "about to fail" in item["log_tail"]
    assert registry.item(missing)["exit_code"] == 127
    assert agent.stop() == 0
    assert f"item {item_id[:8]} failed exit=3" in agent.log


def test_sigterm_stops_claiming_and_fails_jobs_still_running_after_the_grace(registry, agents, tmp_path):
    pid_file = tmp_path / "pid"
    job = script(
        tmp_path,
        "long.py",
        f'import os, time\nopen({str(pid_file)!r}, "w").write(str(os.getpid()))\n'
        'print("working", flush=True)\ntime.sleep(60)\n',
    )
    item_id = registry.add_item([sys.executable, str(job)])
    later = registry.add_item([sys.executable, str(job)])
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu", "--grace", "1"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "running"), agent.log
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text())
    job_pid = int(pid_file.read_text())

    started = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=15) == 0
    assert time.monotonic() - started < 8
    item = registry.item(item_id)
    assert item["state"] == "failed", agent.log
    assert item["exit_code"] == -signal.SIGTERM
    assert "working" in item["log_tail"] and "shut down" in item["log_tail"]
    assert wait_until(lambda: not alive(job_pid), timeout=3)
    assert registry.item(later)["state"] == "pending", "no claims after the signal"
    assert "received SIGTERM" in agent.log and "grace period over" in agent.log


def test_sigterm_lets_a_short_job_finish_within_the_grace(registry, agents, tmp_path):
    job = script(tmp_path, "short.py", 'import time\nprint("go", flush=True)\ntime.sleep(1.5)\nprint("done")\n')
    item_id = registry.add_item([sys.executable, str(job)])
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu", "--grace", "20"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "running"), agent.log
    agent.proc.send_signal(signal.SIGINT)
    assert agent.wait(timeout=15) == 0
    item = registry.item(item_id)
    assert (item["state"], item["exit_code"]) == ("finished", 0)
    assert item["log_tail"].endswith("done\n")


def test_a_cancel_request_kills_the_job_and_reports_cancelled(registry, agents, tmp_path):
    pid_file = tmp_path / "pid"
    job = script(
        tmp_path,
        "long.py",
        f'import os, time\nopen({str(pid_file)!r}, "w").write(str(os.getpid()))\n'
        'print("working", flush=True)\ntime.sleep(60)\n',
    )
    item_id = registry.add_item([sys.executable, str(job)])
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "running"), agent.log
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text())
    job_pid = int(pid_file.read_text())

    registry.update(item_id, cancel_requested=True)
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "cancelled", timeout=10), agent.log
    item = registry.item(item_id)
    assert item["exit_code"] == -signal.SIGTERM and "working" in item["log_tail"]
    assert wait_until(lambda: not alive(job_pid), timeout=3)
    assert agent.proc.poll() is None, "the agent goes on serving"
    assert agent.stop() == 0
    assert f"item {item_id[:8]} cancelled exit=-15 (SIGTERM)" in agent.log


def test_a_lost_lease_kills_the_job_and_forgets_the_item(registry, agents, tmp_path):
    pid_file = tmp_path / "pid"
    job = script(
        tmp_path, "long.py", f'import os, time\nopen({str(pid_file)!r}, "w").write(str(os.getpid()))\ntime.sleep(60)\n'
    )
    item_id = registry.add_item([sys.executable, str(job)])
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "running"), agent.log
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text())
    job_pid = int(pid_file.read_text())

    registry.update(item_id, state="claimed", agent="another-box")  # its lease lapsed; another agent took it
    assert wait_until(lambda: not alive(job_pid), timeout=10, details=lambda: agent.log)
    assert wait_until(lambda: f"item {item_id[:8]} lost (lease lapsed)" in agent.log, timeout=5)
    assert agent.stop() == 0
    assert registry.item(item_id)["state"] == "claimed", "nothing is reported for an item the agent lost"


def test_bad_token_or_unreachable_server_or_unserved_queue_exit_non_zero(registry, agents, tmp_path):
    bad = AgentProcess(tmp_path, registry.url, "--queue", "gpu", token="agt_wrong-token")
    assert bad.wait() == 1
    assert "refused the agent token" in bad.log and "agt_wrong-token" not in bad.log

    (tmp_path / "second").mkdir()
    unserved = AgentProcess(tmp_path / "second", registry.url, "--queue", "gpu", "--queue", "tpu")
    assert unserved.wait() == 1
    assert "does not serve queue tpu (it serves: gpu, cpu)" in unserved.log

    with FakeRegistry() as gone:
        url = gone.url
    (tmp_path / "third").mkdir()
    started = time.monotonic()
    unreachable = AgentProcess(tmp_path / "third", url, "--queue", "gpu")
    assert unreachable.wait(timeout=30) == 1
    assert "cannot reach the registry at" in unreachable.log
    assert time.monotonic() - started < 15
    assert TOKEN not in unreachable.log


def test_arguments_are_checked(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LAUNCH_AGENT_TOKEN"}
    run = subprocess.run(
        [sys.executable, "-m", "registry_client.agent", "--url", "http://127.0.0.1:9", "--queue", "gpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and "LAUNCH_AGENT_TOKEN" in run.stderr
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry_client.agent",
            "--url",
            "http://127.0.0.1:9",
            "--queue",
            "gpu",
            "--max-jobs",
            "0",
        ],
        cwd=ROOT,
        env={**env, "LAUNCH_AGENT_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and "--max-jobs" in run.stderr


# --- The client -----------------------------------------------------------------------------------------


def test_client_retries_server_errors_and_maps_statuses(registry):
    client = AgentClient(registry.url, TOKEN, backoff=0)
    registry.fail_next = 2
    identity = client.identity()
    assert (identity.team, identity.name, identity.queues) == ("acme", "gpu-box-1", ("gpu", "cpu"))
    assert len(registry.calls("GET", "/launch/agent/")) == 3

    assert client.claim("acme", "gpu") is None
    registry.fail_next = 1
    with pytest.raises(Exception) as info:  # a claim is never repeated
        client.claim("acme", "gpu")
    assert getattr(info.value, "status", None) == 503

    item_id = registry.add_item(["true"])
    item = client.claim("acme", "gpu")
    assert item is not None and item.id == item_id and item.entrypoint == ["true"]
    registry.update(item_id, agent="another-box")
    with pytest.raises(LostItem):
        client.heartbeat("acme", item_id)
    with pytest.raises(LostItem):
        client.report("acme", item_id, "failed", exit_code=1)

    with pytest.raises(AgentAuthError) as auth:
        AgentClient(registry.url, "agt_nope", backoff=0).identity()
    assert "agt_nope" not in str(auth.value) and "agt_nope" not in repr(auth.value)
    assert TOKEN not in repr(client)
    client.close()


def test_client_confirms_a_report_whose_answer_was_lost(registry):
    client = AgentClient(registry.url, TOKEN, backoff=0)
    item_id = registry.add_item(["true"])
    assert client.claim("acme", "gpu").id == item_id
    registry.drop_next_report = True
    item = client.report("acme", item_id, "finished", exit_code=0, log_tail="ok\n")
    assert item["state"] == "finished"
    assert len(registry.calls("PATCH", f"/items/{item_id}/")) == 2  # the retry met a 409 and read the item back
    client.close()


def test_client_gives_up_on_an_unreachable_server():
    with FakeRegistry() as gone:
        url = gone.url
    client = AgentClient(url, TOKEN, retries=2, backoff=0)
    with pytest.raises(ServerUnreachable) as info:
        client.identity()
    assert TOKEN not in str(info.value)


def test_an_item_asking_for_its_events_model_version_without_an_event_fails_with_the_reason(registry, agents, tmp_path):
    marker = tmp_path / "ran"
    item_id = registry.add_item([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], download_artifact=True)
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "failed"), agent.log
    assert agent.stop() == 0
    item = registry.item(item_id)
    assert "has no event naming one" in item["reason"] and item["reason"] in item["log_tail"]
    assert item["exit_code"] is None
    assert not marker.exists(), "the job never starts"
    assert f"item {item_id[:8]} failed before it started" in agent.log


def test_an_item_cancelled_between_claim_and_start_is_not_run(registry, agents, tmp_path):
    marker = tmp_path / "ran"
    item_id = registry.add_item([sys.executable, "-c", f"open({str(marker)!r}, 'w')"])
    registry.update(item_id, cancel_requested=True)  # as if a cancel landed right after the claim
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "cancelled"), agent.log
    assert agent.stop() == 0
    assert not marker.exists()
    assert "cancelled before the job started" in registry.item(item_id)["log_tail"]


def test_a_second_signal_skips_the_rest_of_the_grace(registry, agents, tmp_path):
    job = script(tmp_path, "long.py", 'import time\nprint("working", flush=True)\ntime.sleep(60)\n')
    item_id = registry.add_item([sys.executable, str(job)])
    agents.append(agent := AgentProcess(tmp_path, registry.url, "--queue", "gpu", "--grace", "60"))
    assert registry.wait_for(lambda: registry.items[item_id]["state"] == "running"), agent.log
    started = time.monotonic()
    agent.proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: "waiting up to 60s" in agent.log)
    agent.proc.send_signal(signal.SIGINT)
    assert agent.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert registry.item(item_id)["state"] == "failed"
    assert "received SIGINT again: stopping running jobs now" in agent.log
