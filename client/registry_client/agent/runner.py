"""The ``local-process`` runner: one queue item as a subprocess on this machine.

The job runs its ``entrypoint`` (an argument list, never a shell line) in a fresh temporary working directory, in a
process group of its own, with its inputs in the environment:

``LAUNCH_CONFIG_FILE``           path of a JSON file holding the merged config
``LAUNCH_CONFIG``                the same JSON
``LAUNCH_EVENT``                 JSON of the triggering event's context plus ``"event_id"`` (null without an event)
``LAUNCH_ITEM_ID``               the queue item's id
``LAUNCH_DESTINATION_PROJECT``   the project the run belongs to
``LAUNCH_CAUSED_BY``             the event id (only with an event): send it as ``X-Registry-Caused-By`` on API calls
``LAUNCH_ARTIFACT_DIR``         the folder holding the event's model version (only for a job version that asks
                               for it: ``download_artifact``), ``artifact/`` in the working directory
``LAUNCH_JOB_VERSION``, ``LAUNCH_QUEUE``, ``LAUNCH_ATTEMPT``   for the job's own logs

The rest of the agent's environment is inherited, except ``LAUNCH_AGENT_TOKEN``: a job never sees the agent's
credentials. ``PYTHONUNBUFFERED=1`` is set unless already present, so Python jobs' output streams as it is written.

stdout and stderr are merged into a bounded ring buffer (the last 200 lines / 16 KiB) read while the job runs.
``cancel()`` sends SIGTERM to the whole group, then SIGKILL to whatever is left after ``kill_grace`` seconds. When the
job's main process exits, processes it left running in its group are stopped the same way. An exit code is the
process's own, or minus the signal number when a signal ended it (``-15`` for SIGTERM), as in ``subprocess``.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import NoReturn

from .client import Item

__all__ = ["LOG_TAIL_CHARS", "LOG_TAIL_LINES", "LocalProcessRunner", "LogBuffer", "RunnerError", "describe_exit"]

LOG_TAIL_CHARS = 16 * 1024
LOG_TAIL_LINES = 200
KILL_GRACE_SECONDS = 5.0
ARTIFACT_DIR = "artifact"  # in the job's working directory
SECRET_ENV = ("LAUNCH_AGENT_TOKEN",)
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


def describe_exit(code: int | None) -> str:
    """``exit=1``, or ``exit=-15 (SIGTERM)`` for a signal."""
    if code is None:
        return "exit=?"
    if code < 0:
        try:
            return f"exit={code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"exit={code} (signal {-code})"
    return f"exit={code}"


class LogBuffer:
    """The last ``max_lines`` lines and at most ``max_chars`` characters of a stream; thread-safe.

    A carriage return rewrites its line, as on a terminal, so progress bars keep only their latest state.
    ``version`` grows with every append (to tell whether the tail changed).
    """

    def __init__(self, max_chars: int = LOG_TAIL_CHARS, max_lines: int = LOG_TAIL_LINES) -> None:
        if max_chars < 1 or max_lines < 1:
            raise ValueError("A log buffer keeps at least one character and one line.")
        self.max_chars = max_chars
        self.max_lines = max_lines
        self._lines: collections.deque[str] = collections.deque()
        self._chars = 0  # characters in self._lines
        self._partial = ""  # the unfinished last line, raw
        self._lock = threading.Lock()
        self.version = 0
        self.total_lines = 0

    def append(self, text: str) -> None:
        if not text:
            return
        with self._lock:
            self.version += 1
            *complete, rest = (self._partial + text).split("\n")
            for raw in complete:
                line = _terminal_line(raw)[-self.max_chars :] + "\n"
                self._lines.append(line)
                self._chars += len(line)
                self.total_lines += 1
            self._partial = rest[-self.max_chars :]
            partial = _terminal_line(self._partial)
            max_lines = self.max_lines - (1 if partial else 0)
            # Drop old lines while there are too many, or while the rest still fills the character budget.
            while self._lines and (
                len(self._lines) > max_lines or self._chars - len(self._lines[0]) + len(partial) >= self.max_chars
            ):
                self._chars -= len(self._lines.popleft())

    def tail(self) -> str:
        with self._lock:
            text = "".join(self._lines) + _terminal_line(self._partial)
        return text[-self.max_chars :]


def _terminal_line(raw: str) -> str:
    """What a terminal shows for a line (without its newline): the text after the last carriage return."""
    body = raw[:-1] if raw.endswith("\r") else raw
    if "\r" in body:
        parts = [p for p in body.split("\r") if p]
        body = parts[-1] if parts else ""
    return body


class RunnerError(Exception):
    """The job could not be started; ``exit_code`` is what to report (127: not found, 126: cannot execute)."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LocalProcessRunner:
    """Runs one item. Use from a single thread: ``start()``, then ``wait()``/``poll()`` or ``cancel()``, then
    ``cleanup()`` (or use it as a context manager, which cleans up).

    ``base_dir`` is where the per-item temporary directory is made (the system's temp dir by default); ``env`` is
    the environment to start from (this process's by default).
    """

    def __init__(
        self,
        item: Item,
        *,
        base_dir: str | None = None,
        env: dict[str, str] | None = None,
        kill_grace: float = KILL_GRACE_SECONDS,
        log_chars: int = LOG_TAIL_CHARS,
        log_lines: int = LOG_TAIL_LINES,
    ) -> None:
        self.item = item
        self.base_dir = base_dir
        self.base_env = env
        self.kill_grace = kill_grace
        self.log = LogBuffer(log_chars, log_lines)
        self.root: str | None = None
        self.work_dir: str | None = None
        self.config_path: str | None = None
        self.artifact_dir: str | None = None
        self._config_json = ""
        self.returncode: int | None = None
        self.cancelled = False
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stop_reading = threading.Event()
        self._finished = False
        self._notes: list[str] = []  # the agent's own lines, added after the job's last output

    # -- Life cycle --

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def duration(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at if self.ended_at is not None else time.monotonic()) - self.started_at

    def tail(self) -> str:
        return self.log.tail()

    def note(self, message: str) -> None:
        """Add a line of the agent's own to the job's log."""
        tail = self.log.tail()
        self.log.append(("" if not tail or tail.endswith("\n") else "\n") + f"[launch-agent] {message}\n")

    def prepare(self) -> None:
        """Check the entrypoint and make the item's folders and config file (``start`` does it if not done yet).

        Raises ``RunnerError`` (with the reason in the log) for an entrypoint that cannot run.
        """
        if self.root is not None:
            return
        argv = self.item.entrypoint
        if not argv or not all(isinstance(a, str) and a and "\x00" not in a for a in argv):
            self._cannot_start(f"the entrypoint {argv!r} is not a non-empty list of strings", EXIT_NOT_FOUND)
        self.root = tempfile.mkdtemp(prefix=f"launch-{_safe(self.item.id)[:8]}-", dir=self.base_dir)
        self.work_dir = os.path.join(self.root, "work")
        os.mkdir(self.work_dir, 0o700)
        self.config_path = os.path.join(self.root, "config.json")
        self._config_json = json.dumps(self.item.config, ensure_ascii=False)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self._config_json)

    def artifact_target(self) -> str:
        """The folder the event's model version goes into, named to the job in ``LAUNCH_ARTIFACT_DIR``."""
        self.prepare()
        assert self.work_dir is not None
        self.artifact_dir = os.path.join(self.work_dir, ARTIFACT_DIR)
        return self.artifact_dir

    def start(self) -> int:
        """Start the job; returns its pid. Raises ``RunnerError`` (with the reason in the log) if it cannot start."""
        if self._proc is not None or self.returncode is not None:
            raise RuntimeError("This runner was already started.")
        self.prepare()
        argv = self.item.entrypoint
        self.started_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - an argument list from the queue item, no shell
                argv,
                cwd=self.work_dir,
                env=self._env(self._config_json),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session and process group, so cancel() reaches its children
                close_fds=True,
            )
        except FileNotFoundError as exc:
            self._cannot_start(f"cannot start {argv[0]!r}: {exc.strerror or exc}", EXIT_NOT_FOUND)
        except OSError as exc:
            self._cannot_start(f"cannot start {argv[0]!r}: {exc.strerror or exc}", EXIT_CANNOT_EXECUTE)
        self._reader = threading.Thread(target=self._read, name=f"launch-log-{self._proc.pid}", daemon=True)
        self._reader.start()
        return self._proc.pid

    def poll(self) -> int | None:
        return self.wait(timeout=0)

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code once the job ended (waiting up to ``timeout`` seconds), else None."""
        if self._proc is None:
            return self.returncode
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self._finish()

    def run(self) -> int:
        """Start and wait for the end."""
        self.start()
        code = self.wait()
        assert code is not None
        return code

    def cancel(self, grace: float | None = None) -> int | None:
        """Stop the job and everything in its process group: SIGTERM, then SIGKILL after ``grace`` seconds.

        Returns the exit code (None if it was never started).
        """
        self.cancelled = True
        if self._proc is None:
            return self.returncode
        grace = self.kill_grace if grace is None else grace
        if self._proc.poll() is None or self._group_alive():
            self._signal_group(signal.SIGTERM)
            if not self._wait_group(time.monotonic() + grace):
                self._signal_group(signal.SIGKILL)
                self._wait_group(time.monotonic() + 2.0)
                self._notes.append(f"the job did not stop within {grace:g}s of SIGTERM; killed it")
        self._proc.wait()
        return self._finish()

    def cleanup(self) -> None:
        """Stop anything still running and remove the item's temporary directory."""
        if self._proc is not None and not self._finished:
            self.cancel(grace=min(self.kill_grace, 1.0))
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalProcessRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- Internals --

    def _env(self, config_json: str) -> dict[str, str]:
        env = dict(os.environ if self.base_env is None else self.base_env)
        for name in (*SECRET_ENV, "LAUNCH_CAUSED_BY", "LAUNCH_ARTIFACT_DIR"):
            env.pop(name, None)
        item = self.item
        env.update(
            {
                "LAUNCH_CONFIG_FILE": self.config_path or "",
                "LAUNCH_CONFIG": config_json,
                "LAUNCH_EVENT": json.dumps({**item.event_context, "event_id": item.event}, ensure_ascii=False),
                "LAUNCH_ITEM_ID": item.id,
                "LAUNCH_DESTINATION_PROJECT": item.destination_project,
                "LAUNCH_JOB_VERSION": item.job_version,
                "LAUNCH_QUEUE": item.queue,
                "LAUNCH_ATTEMPT": str(item.attempts),
            }
        )
        if item.event:
            env["LAUNCH_CAUSED_BY"] = item.event
        if self.artifact_dir is not None:
            env["LAUNCH_ARTIFACT_DIR"] = self.artifact_dir
        env.setdefault("PYTHONUNBUFFERED", "1")
        return {k: v.replace("\x00", "") for k, v in env.items()}

    def _cannot_start(self, reason: str, exit_code: int) -> NoReturn:
        self.note(reason)
        self.returncode = exit_code
        self.started_at = self.ended_at = time.monotonic()
        self._finished = True
        raise RunnerError(reason, exit_code=exit_code)

    def _read(self) -> None:
        """Feed the job's merged output to the log buffer until EOF (or until told to stop)."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while not self._stop_reading.is_set():
                if not selector.select(timeout=0.2):
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.log.append(decoder.decode(chunk))
        self.log.append(decoder.decode(b"", final=True))

    def _finish(self) -> int:
        assert self._proc is not None
        if self._finished:
            assert self.returncode is not None
            return self.returncode
        self.returncode = self._proc.returncode
        self.ended_at = time.monotonic()
        if self._group_alive():  # processes the job left behind
            self._signal_group(signal.SIGTERM)
            if not self._wait_group(time.monotonic() + self.kill_grace):
                self._signal_group(signal.SIGKILL)
                self._wait_group(time.monotonic() + 1.0)
            self._notes.append("stopped processes the job left running")
        if self._reader is not None:
            self._reader.join(timeout=2.0)  # EOF comes once the group is gone
            self._stop_reading.set()  # a process that left the group may still hold the pipe: stop anyway
            self._reader.join(timeout=1.0)
        if self._proc.stdout is not None and (self._reader is None or not self._reader.is_alive()):
            self._proc.stdout.close()
        for message in self._notes:
            self.note(message)
        self._notes.clear()
        self._finished = True
        return self.returncode

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        # Only while the group can still be ours: the leader unreaped, or members left.
        if self._proc.returncode is not None and not self._group_alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def _group_alive(self) -> bool:
        assert self._proc is not None
        return group_alive(self._proc.pid)

    def _wait_group(self, deadline: float) -> bool:
        """Wait until the leader exited and no member of the group is left; False at the deadline."""
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None and not self._group_alive():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def group_members(pgid: int) -> list[int] | None:
    """Live (not zombie) processes of a process group, from /proc; None where there is no /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    if "self" not in entries:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()  # state, ppid, pgrp, ...
        if len(fields) >= 3 and fields[2] == str(pgid).encode() and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return members


def group_alive(pgid: int) -> bool:
    members = group_members(pgid)
    if members is not None:
        return bool(members)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c == "-") or "item"
