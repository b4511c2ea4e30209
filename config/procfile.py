"""Run the Procfile's processes under one supervisor: ``python -m config.procfile [NAME ...]``.

``./dev up`` runs the whole system this way. Every line of output is prefixed with its process's name. A process
that exits on its own is reported with its name and exit code and started again after a short pause; one that keeps
exiting (``--give-up-after`` exits within ``--window`` seconds) stops everything with a message that names it, so
the stack is never left half-running. Ctrl-C or SIGTERM stops every process with SIGTERM (Celery finishes its
running tasks, gunicorn its requests) and only kills what is still running after ``--stop-timeout`` seconds.

Each process runs in a session of its own, so the terminal's Ctrl-C reaches the supervisor alone, which then stops
the processes in order instead of all of them being interrupted at once mid-task.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent


def procfile(path: Path = ROOT / "Procfile") -> dict[str, str]:
    """The Procfile's processes: name → command line."""
    commands = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


@dataclass
class Child:
    name: str
    command: str
    process: subprocess.Popen | None = None
    exits: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class Supervisor:
    def __init__(
        self,
        commands: dict[str, str],
        *,
        give_up_after: int = 5,
        window: float = 120.0,
        stop_timeout: float = 20.0,
        out=sys.stdout,
    ) -> None:
        self.children = [Child(name, command) for name, command in commands.items()]
        self.give_up_after = give_up_after
        self.window = window
        self.stop_timeout = stop_timeout
        self.out = out
        self.width = max(len(name) for name in commands) if commands else 6
        self.write_lock = threading.Lock()
        self.stopping = threading.Event()
        self.interrupts = 0

    def say(self, name: str, text: str) -> None:
        with self.write_lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {text}\n")
            self.out.flush()

    def start(self, child: Child) -> None:
        # exec: the shell expands the line's ${VARS}, then becomes the process, so signals reach it.
        child.process = subprocess.Popen(  # noqa: S603 (the operator's own Procfile)
            ["/bin/sh", "-c", f"exec {child.command}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        child.restart_at = None
        self.say("system", f"{child.name} started (pid {child.process.pid})")
        threading.Thread(target=self.relay, args=(child, child.process), daemon=True).start()

    def relay(self, child: Child, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            self.say(child.name, raw.decode(errors="replace").rstrip("\n"))

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.say("system", f"{signal.Signals(signum).name} received: stopping every process")
            self.stopping.set()
        else:
            self.say("system", "second interrupt: killing every process now")
            self.signal_all(signal.SIGKILL)

    def signal_all(self, signum: int) -> None:
        """Signal each process; SIGKILL goes to its whole group, so that no pool child outlives it. Anything else
        only to the process itself, which stops its own children in order (Celery's pool, gunicorn's workers)."""
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    if signum == signal.SIGKILL:
                        os.killpg(child.process.pid, signum)
                    else:
                        child.process.send_signal(signum)

    def exited(self, child: Child, code: int) -> str | None:
        """Note an unexpected exit; the reason to give up, if it keeps happening."""
        now = time.monotonic()
        child.exits.append(now)
        while child.exits and child.exits[0] < now - self.window:
            child.exits.popleft()
        if len(child.exits) >= self.give_up_after:
            return f"{child.name} exited {len(child.exits)} times within {self.window:.0f} s (last exit code {code})"
        pause = min(2 ** (len(child.exits) - 1), 10)
        child.restart_at = now + pause
        self.say("system", f"{child.name} exited with code {code}; starting it again in {pause} s")
        return None

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        for child in self.children:
            self.start(child)
        failure = None
        while not self.stopping.is_set():
            for child in self.children:
                if child.process is not None and (code := child.process.poll()) is not None:
                    child.process = None
                    failure = self.exited(child, code)
                    if failure:
                        break
                elif child.process is None and child.restart_at is not None and time.monotonic() >= child.restart_at:
                    self.start(child)
            if failure:
                break
            self.stopping.wait(0.2)
        if failure:
            self.say("system", f"giving up: {failure}. Its output is above; stopping every process.")
        self.stop()
        return 1 if failure else 0

    def stop(self) -> None:
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                code = child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("system", f"{child.name} still running after {self.stop_timeout:.0f} s: killing it")
                os.killpg(child.process.pid, signal.SIGKILL)
                code = child.process.wait()
            self.say("system", f"{child.name} stopped (exit code {code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.procfile", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="processes to run (default: every line of the Procfile)")
    parser.add_argument("--procfile", type=Path, default=ROOT / "Procfile")
    parser.add_argument("--give-up-after", type=int, default=5, help="exits within the window that stop everything")
    parser.add_argument("--window", type=float, default=120.0, help="seconds")
    parser.add_argument("--stop-timeout", type=float, default=20.0, help="seconds to wait before killing")
    args = parser.parse_args(argv)
    commands = procfile(args.procfile)
    unknown = [name for name in args.names if name not in commands]
    if unknown:
        parser.error(f"not in {args.procfile.name}: {', '.join(unknown)} (it has {', '.join(commands)})")
    if args.names:
        commands = {name: commands[name] for name in args.names}
    supervisor = Supervisor(
        commands, give_up_after=args.give_up_after, window=args.window, stop_timeout=args.stop_timeout
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
