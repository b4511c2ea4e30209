"""``./dev up``'s supervisor (config/procfile.py) with real processes: restarts, giving up, and stopping."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from harness.util import wait_until

pytestmark = [pytest.mark.e2e]


def supervise(tmp_path, procfile: str, *args: str) -> tuple[subprocess.Popen, object]:
    (tmp_path / "Procfile").write_text(procfile)
    log = tmp_path / "supervisor.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "config.procfile", "--procfile", str(tmp_path / "Procfile"), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, lambda: log.read_text()


def test_a_process_that_exits_is_reported_by_name_and_code_and_started_again(tmp_path):
    mark = tmp_path / "ran-once"
    process, log = supervise(
        tmp_path,
        f"once: sh -c 'if [ -f {mark} ]; then echo second run; sleep 60; else touch {mark}; exit 3; fi'\n"
        "steady: sleep 60\n",
    )
    wait_until(lambda: "second run" in log(), timeout=15, message="the restarted process", details=log)
    assert "once exited with code 3; starting it again in 1 s" in log()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0
    assert "once stopped" in log() and "steady stopped" in log()
    assert "killing" not in log()


def test_a_process_that_keeps_exiting_stops_everything_with_a_message_naming_it(tmp_path):
    process, log = supervise(tmp_path, "bad: sh -c 'exit 7'\nsteady: sleep 60\n", "--give-up-after", "3")
    assert process.wait(timeout=30) == 1
    assert "giving up: bad exited 3 times within 120 s (last exit code 7)" in log()
    assert "steady stopped (exit code -15)" in log()


def test_ctrl_c_stops_every_process_and_kills_only_one_that_ignores_sigterm(tmp_path):
    stubborn = (
        f'{sys.executable} -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); '
        "print('stubborn up', flush=True); time.sleep(60)\""
    )
    process, log = supervise(tmp_path, f"stubborn: {stubborn}\npolite: sleep 60\n", "--stop-timeout", "1")
    wait_until(lambda: "stubborn up" in log(), timeout=15, message="the process to start", details=log)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert "SIGINT received: stopping every process" in log()
    assert "stubborn still running after 1 s: killing it" in log()
    assert "stubborn stopped (exit code -9)" in log()
    assert "polite stopped (exit code -15)" in log()


def test_an_unknown_process_name_is_refused_with_the_names_there_are(tmp_path):
    process, log = supervise(tmp_path, "web: sleep 60\n", "nosuch")
    assert process.wait(timeout=15) == 2
    assert "not in Procfile: nosuch (it has web)" in log()
