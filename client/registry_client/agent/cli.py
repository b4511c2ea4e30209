"""``launch-agent``: claim launch jobs from the registry's queues and run them on this machine.

    launch-agent --url URL --token TOKEN --queue NAME [--queue NAME ...] [--max-jobs N]
                 [--poll-interval SECONDS] [--heartbeat SECONDS] [--grace SECONDS]

The token may come from ``LAUNCH_AGENT_TOKEN`` instead (better: a command line is visible to other users).

The main loop claims from the queues in turn while fewer than ``--max-jobs`` items run. Each claimed item gets a
worker thread that reports ``running``, runs it with the local-process runner, heartbeats (sending its log tail), and
reports ``finished`` or ``failed`` with the exit code and log tail, or ``cancelled`` when a heartbeat says someone
asked for it. If the server answers 409 the item went to another agent: the process is killed and the item forgotten.
When the item's job version asks for the event's model version (``download_artifact``), the worker first downloads
it into the job's working directory, every file checked against its SHA-256, heartbeating meanwhile; a version that
cannot be had (a digest mismatch, a version gone) fails the item with the reason, and the job never starts.

SIGTERM or SIGINT stops claiming and lets running jobs finish for ``--grace`` seconds; the rest are then stopped and
reported ``failed``. A second signal skips what is left of the grace. Exit status: 0 after a stop by signal, 1 when
the server cannot be reached or refuses the token at startup (or refuses it later), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from types import FrameType

from ..config import redact_url
from ..errors import ConfigError, RegistryError
from ..types import DownloadResult
from .client import (
    UNAVAILABLE,
    AgentAuthError,
    AgentClient,
    Identity,
    Item,
    LostItem,
    RequestRejected,
    ServerError,
    ServerUnreachable,
)
from .runner import KILL_GRACE_SECONDS, LocalProcessRunner, RunnerError, describe_exit

__all__ = ["Agent", "build_parser", "main"]

log = logging.getLogger("registry_client.agent")

FINAL_REPORT_PATIENCE = 30.0  # seconds to keep retrying a final report while the server is unavailable
MAX_POLL_BACKOFF = 30.0


def short(item_id: str) -> str:
    return item_id[:8]


class Agent:
    """The claim loop and its workers. ``run()`` returns the process exit status."""

    def __init__(
        self,
        client: AgentClient,
        identity: Identity,
        queues: Sequence[str],
        *,
        max_jobs: int = 1,
        poll_interval: float = 2.0,
        heartbeat: float = 5.0,
        grace: float = 30.0,
        kill_grace: float = KILL_GRACE_SECONDS,
        work_root: str | None = None,
    ) -> None:
        self.client = client
        self.identity = identity
        self.team = identity.team
        self.queues = list(queues)
        self.max_jobs = max_jobs
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self.grace = grace
        self.kill_grace = kill_grace
        self.work_root = work_root
        self.stopping = threading.Event()  # no more claims
        self.abort = threading.Event()  # stop running jobs now
        self.exit_status = 0
        self._wake = threading.Event()
        self._workers: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._signal: str | None = None
        self._signals = 0
        self._unreachable = False
        self._refused: dict[str, str] = {}  # queue -> why the server refused the last claim

    # -- Signals --

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Plain assignments only: a handler that took a lock the interrupted code holds would deadlock.
        self._signal = signal.Signals(signum).name
        self._signals += 1

    def _take_signals(self) -> None:
        """Act on signals received so far (main thread): the first stops claims, a second stops the jobs."""
        if self._signals and not self.stopping.is_set():
            log.info("received %s: no more claims", self._signal)
            self.stopping.set()
        if self._signals > 1 and not self.abort.is_set():
            log.info("received %s again: stopping running jobs now", self._signal)
            self.abort.set()

    def _pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``; wake early when a job ends or a signal arrives."""
        end = time.monotonic() + seconds
        while True:
            self._take_signals()
            left = end - time.monotonic()
            if self.stopping.is_set() or left <= 0:
                return
            if self._wake.wait(min(0.1, left)):
                self._wake.clear()
                return

    # -- Main loop --

    def active(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers.values() if w.is_alive())

    def run(self) -> int:
        log.info(
            "agent %s of team %s serving queue%s %s at %s (max %d job%s)",
            self.identity.name,
            self.team,
            "s" if len(self.queues) > 1 else "",
            ", ".join(self.queues),
            redact_url(self.client.base_url),
            self.max_jobs,
            "s" if self.max_jobs > 1 else "",
        )
        try:
            self._loop()
        except Exception:
            log.exception("the agent failed; stopping its jobs")
            self.exit_status = 1
            self.abort.set()
            self.stopping.set()
        self._shutdown()
        return self.exit_status

    def _loop(self) -> None:
        turn = 0
        delay = self.poll_interval
        while not self.stopping.is_set():
            claimed = False
            if self.active() < self.max_jobs:
                for k in range(len(self.queues)):
                    self._take_signals()
                    if self.stopping.is_set() or self.active() >= self.max_jobs:
                        break
                    item = self._claim(self.queues[(turn + k) % len(self.queues)])
                    if item is not None:
                        self._start_worker(item)
                        claimed = True
                turn = (turn + 1) % len(self.queues)
            delay = min(delay * 2, MAX_POLL_BACKOFF) if self._unreachable else self.poll_interval
            if self.stopping.is_set():
                break
            if claimed and self.active() < self.max_jobs:
                continue  # there may be more waiting
            self._pause(delay)

    def _claim(self, queue: str) -> Item | None:
        try:
            item = self.client.claim(self.team, queue)
        except AgentAuthError as exc:
            log.error("the server no longer accepts this agent's token: %s; stopping", exc)
            self.exit_status = 1
            self.abort.set()
            self.stopping.set()
            return None
        except RequestRejected as exc:
            if self._refused.get(queue) != str(exc):
                log.warning("queue %s: claim refused: %s; will keep trying", queue, exc)
                self._refused[queue] = str(exc)
            return None
        except UNAVAILABLE as exc:
            if not self._unreachable:
                log.warning("server unavailable (will keep polling): %s", exc)
                self._unreachable = True
            return None
        if self._unreachable:
            log.info("server reachable again")
            self._unreachable = False
        if self._refused.pop(queue, None):
            log.info("queue %s: claims accepted again", queue)
        if item is not None:
            log.info(
                "item %s claimed from queue %s (job %s, attempt %d, id %s)",
                short(item.id),
                queue,
                item.job_version or "?",
                item.attempts,
                item.id,
            )
        return item

    def _start_worker(self, item: Item) -> None:
        worker = threading.Thread(target=self._work, args=(item,), name=f"item-{short(item.id)}", daemon=True)
        with self._lock:
            self._workers = {k: w for k, w in self._workers.items() if w.is_alive()}
            self._workers[item.id] = worker
        worker.start()

    def _shutdown(self) -> None:
        self._take_signals()
        deadline = time.monotonic() + self.grace
        if self.active() and not self.abort.is_set():
            log.info("waiting up to %gs for %d running job%s", self.grace, self.active(), "s" * (self.active() > 1))
            while self.active() and time.monotonic() < deadline and not self.abort.is_set():
                self._wake.wait(min(0.1, max(0.0, deadline - time.monotonic())))
                self._wake.clear()
                self._take_signals()
        if self.active():
            count = self.active()
            why = "grace period over" if not self.abort.is_set() else "stopping at once"
            log.info("%s: stopping %d running job%s", why, count, "s" * (count > 1))
            self.abort.set()
        with self._lock:
            workers = list(self._workers.values())
        # Bounded: each worker needs at most the kill grace plus one report's retries.
        end = time.monotonic() + self.kill_grace + FINAL_REPORT_PATIENCE
        for worker in workers:
            worker.join(timeout=max(0.0, end - time.monotonic()))
        if any(w.is_alive() for w in workers):
            log.warning("some jobs could not be settled; the server will expire their leases")
        self.client.close()
        log.info("stopped")

    # -- One item --

    def _work(self, item: Item) -> None:
        runner = LocalProcessRunner(item, base_dir=self.work_root, kill_grace=self.kill_grace)
        try:
            self._run_item(item, runner)
        except Exception as exc:  # a bug must not leave the job running unreported
            log.error("item %s: unexpected error: %s", short(item.id), exc)
            code = runner.cancel() if runner.pid is not None else None
            runner.note(f"the agent failed while running the job: {traceback.format_exception_only(exc)[-1]}")
            self._final(item, runner, "failed", code)
        finally:
            runner.cleanup()
            self._wake.set()

    def _run_item(self, item: Item, runner: LocalProcessRunner) -> None:
        name = short(item.id)
        try:
            reported = self.client.report(self.team, item.id, "running")
        except LostItem:
            log.info("item %s lost (lease lapsed) before it started", name)
            return
        except AgentAuthError as exc:
            log.error("item %s not started: the server refused the token: %s", name, exc)
            return
        except RequestRejected as exc:
            log.warning("item %s not started: %s", name, exc)
            return
        except UNAVAILABLE as exc:
            log.warning("item %s: could not report running (%s); starting it anyway", name, exc)
            reported = {}
        if item.cancel_requested or reported.get("cancel_requested"):
            runner.note("cancelled before the job started")
            if self._final(item, runner, "cancelled", None):
                log.info("item %s cancelled before it started", name)
            return
        try:
            if item.download_artifact and not self._download(item, runner):
                return
            pid = runner.start()
        except RunnerError as exc:
            log.info("item %s failed %s: %s", name, describe_exit(exc.exit_code), exc)
            self._final(item, runner, "failed", exc.exit_code)
            return
        log.info("item %s running (pid %d)", name, pid)
        if not self._watch(item, runner, lambda timeout: runner.wait(timeout=timeout) is not None):
            return
        code = runner.returncode
        state = "finished" if code == 0 else "failed"
        if self._final(item, runner, state, code):
            log.info("item %s %s %s in %.1fs", name, state, describe_exit(code), runner.duration)

    def _download(self, item: Item, runner: LocalProcessRunner) -> bool:
        """Download the event's model version into the job's folder while heartbeating; False when the item ended
        (its reason reported) instead."""
        name = short(item.id)
        reference = item.artifact_version
        if reference is None:
            return self._refuse(
                item,
                runner,
                "the job version downloads the event's model version, but this item has no event naming one "
                "(it was queued by hand): queue it through an automation, or use a job version without "
                "download_artifact",
            )
        target = runner.artifact_target()  # RunnerError for an entrypoint that cannot run: before any download
        results: list[DownloadResult] = []
        errors: list[Exception] = []

        def fetch() -> None:
            try:
                results.append(self.client.download(self.team, reference, target))
            except Exception as exc:  # reported by the worker thread
                errors.append(exc)

        log.info("item %s: downloading %s", name, reference)
        thread = threading.Thread(target=fetch, name=f"download-{name}", daemon=True)
        thread.start()

        def done(timeout: float) -> bool:
            thread.join(timeout)
            return not thread.is_alive()

        if not self._watch(item, runner, done):
            return False
        if errors:
            error = errors[0]
            detail = str(error) if isinstance(error, RegistryError) else f"{type(error).__name__}: {error}"
            return self._refuse(item, runner, f"could not download the event's model version {reference}: {detail}")
        (result,) = results
        log.info("item %s: %s downloaded (%d files)", name, reference, len(result.written) + len(result.unchanged))
        runner.note(f"downloaded {reference} into LAUNCH_ARTIFACT_DIR={target}")
        return True

    def _refuse(self, item: Item, runner: LocalProcessRunner, reason: str) -> bool:
        """Fail the item before its job starts, saying why; always False."""
        runner.note(reason)
        if self._final(item, runner, "failed", None, reason=reason):
            log.info("item %s failed before it started: %s", short(item.id), reason)
        return False

    def _watch(self, item: Item, runner: LocalProcessRunner, done: Callable[[float], bool]) -> bool:
        """Heartbeat until ``done(timeout)`` says the work at hand (a download, the job) is over: True. False when
        the item ended meanwhile (agent shutting down, item lost or cancelled), the job stopped and reported."""
        name = short(item.id)
        next_beat = time.monotonic() + self.heartbeat
        sent_version = -1
        server_trouble = False
        while True:
            if done(max(0.0, min(0.2, next_beat - time.monotonic()))):
                return True
            if self.abort.is_set():
                code = runner.cancel()
                if runner.pid is None:
                    runner.note("the agent shut down before the job started")
                else:
                    runner.note(f"the agent shut down before the job finished; it was stopped: {describe_exit(code)}")
                if self._final(item, runner, "failed", code):
                    log.info("item %s failed (agent shut down) %s", name, describe_exit(code))
                return False
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.heartbeat
            version = runner.log.version
            try:
                beat = self.client.heartbeat(
                    self.team, item.id, log_tail=runner.tail() if version != sent_version else None
                )
            except LostItem:
                code = runner.cancel()
                log.info("item %s lost (lease lapsed); stopped it: %s", name, describe_exit(code))
                return False
            except AgentAuthError as exc:
                code = runner.cancel()
                log.error("item %s stopped: the server refused the token: %s", name, exc)
                return False
            except (ServerError, ServerUnreachable, RequestRejected) as exc:
                if not server_trouble:
                    log.warning("item %s: heartbeat failed (%s); will keep trying", name, exc)
                    server_trouble = True
                continue
            sent_version = version
            if server_trouble:
                log.info("item %s: heartbeat accepted again", name)
                server_trouble = False
            if beat.cancel_requested:
                log.info("item %s cancel requested; stopping it", name)
                code = runner.cancel()
                if self._final(item, runner, "cancelled", code):
                    log.info("item %s cancelled %s in %.1fs", name, describe_exit(code), runner.duration)
                return False

    def _final(
        self, item: Item, runner: LocalProcessRunner, state: str, code: int | None, *, reason: str | None = None
    ) -> bool:
        """Report the outcome; True once the server has it."""
        name = short(item.id)
        deadline = time.monotonic() + FINAL_REPORT_PATIENCE
        while True:
            try:
                self.client.report(self.team, item.id, state, exit_code=code, log_tail=runner.tail(), reason=reason)
                return True
            except LostItem:
                log.info("item %s lost (lease lapsed) before its outcome (%s) was reported", name, state)
                return False
            except (AgentAuthError, RequestRejected) as exc:
                log.error("item %s: the server refused its outcome (%s): %s", name, state, exc)
                return False
            except UNAVAILABLE as exc:
                if self.abort.is_set() or time.monotonic() >= deadline:
                    log.error("item %s: could not report %s: %s", name, state, exc)
                    return False
                log.warning("item %s: could not report %s yet (%s); retrying", name, state, exc)
                time.sleep(1.0)


# --- Command line ---------------------------------------------------------------------------------------


def _positive(kind: Callable[[str], float], *, allow_zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero) or value != value:  # NaN
            raise argparse.ArgumentTypeError(f"must be {'zero or more' if allow_zero else 'more than zero'}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch-agent",
        description="Claim launch jobs from the registry's queues and run them on this machine.",
        epilog="The token may also come from the LAUNCH_AGENT_TOKEN environment variable (preferred: a command "
        "line is visible to other users of the machine). Jobs never see the token.",
    )
    parser.add_argument("--url", required=True, help="the registry's address, e.g. https://registry.example.com")
    parser.add_argument("--token", default=None, help="the agent token (agt_...); default: $LAUNCH_AGENT_TOKEN")
    parser.add_argument(
        "--queue",
        action="append",
        required=True,
        metavar="NAME",
        help="a queue to claim from; repeat for several (claimed from in turn)",
    )
    parser.add_argument("--max-jobs", type=_positive(int), default=1, metavar="N", help="jobs run at once (default 1)")
    parser.add_argument(
        "--poll-interval",
        type=_positive(float),
        default=2.0,
        metavar="SECONDS",
        help="pause between claims when nothing is pending (default 2)",
    )
    parser.add_argument(
        "--heartbeat",
        type=_positive(float),
        default=5.0,
        metavar="SECONDS",
        help="seconds between heartbeats of a running job; keep well under the server's lease (default 5)",
    )
    parser.add_argument(
        "--grace",
        type=_positive(float, allow_zero=True),
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running jobs may go on before they are stopped (default 30)",
    )
    return parser


def _configure_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("LAUNCH_AGENT_TOKEN", "")
    if not token:
        parser.error("an agent token is required: --token or the LAUNCH_AGENT_TOKEN environment variable")
    queues = list(dict.fromkeys(args.queue))  # in order, without repeats
    _configure_logging()
    try:
        client = AgentClient(args.url, token)
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))

    shown = redact_url(client.base_url)
    try:
        identity = client.identity()
    except AgentAuthError as exc:
        log.error("the server at %s refused the agent token: %s", shown, exc)
        return 1
    except RequestRejected as exc:
        log.error(
            "the server at %s refused the agent's identity request: %s; is this an agent token (agt_...)?", shown, exc
        )
        return 1
    except UNAVAILABLE as exc:
        log.error("cannot reach the registry at %s: %s", shown, exc)
        return 1
    except RegistryError as exc:  # pragma: no cover - every kind is handled above
        log.error("cannot start: %s", exc)
        return 1

    missing = [q for q in queues if q not in identity.queues]
    if missing:
        log.error(
            "agent %s does not serve queue%s %s (it serves: %s)",
            identity.name,
            "s" if len(missing) > 1 else "",
            ", ".join(missing),
            ", ".join(identity.queues) or "none",
        )
        return 1

    agent = Agent(
        client,
        identity,
        queues,
        max_jobs=args.max_jobs,
        poll_interval=args.poll_interval,
        heartbeat=args.heartbeat,
        grace=args.grace,
    )
    agent.install_signal_handlers()
    return agent.run()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
