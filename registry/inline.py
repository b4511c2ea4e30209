"""Work done right after commit in the process that committed, when it has a thread to spare.

The outbox makes every event and delivery durable before anything is sent, so where the work runs is only a matter
of speed: a web process that just committed an alias change (and, with it, the event and its deliveries) can send
those deliveries from a background thread, without two trips through the broker and two Celery workers (about
15 ms of the event → delivery time). When no thread is idle, or this is switched off (``DISPATCH_INLINE``), the work
goes to Celery as before. If the process dies midway, the rows say what is left: unsent deliveries are picked up by
the beat sweep, so an inline failure is late, never lost.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_idle: threading.BoundedSemaphore | None = None
_size = 0
_pid = 0
_here: contextvars.ContextVar[bool] = contextvars.ContextVar("inline_here", default=False)


def enabled() -> bool:
    return bool(getattr(settings, "DISPATCH_INLINE", False)) and settings.DISPATCH_INLINE_THREADS > 0


@contextlib.contextmanager
def here() -> Iterator[None]:
    """Mark work done in the committing process (a dispatch with its change): what it starts may stay here."""
    token = _here.set(True)
    try:
        yield
    finally:
        _here.reset(token)


def is_here() -> bool:
    return _here.get()


def _pool() -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
    global _executor, _idle, _size, _pid
    with _lock:
        if _executor is None or _size != settings.DISPATCH_INLINE_THREADS or _pid != os.getpid():
            if _executor is not None and _pid == os.getpid():
                _executor.shutdown(wait=False)
            # A forked child (a prefork worker, gunicorn --preload) inherits the pool without its threads.
            _pid, _size = os.getpid(), settings.DISPATCH_INLINE_THREADS
            _executor = ThreadPoolExecutor(max_workers=_size, thread_name_prefix="inline")
            _idle = threading.BoundedSemaphore(_size)
        return _executor, _idle


def _tidy_connections() -> None:
    """Keep this thread's database connection for the next job, as a request would (``DB_CONN_MAX_AGE``), but drop
    it once it failed or aged. Unlike ``close_old_connections`` this does not ask for a health check query before
    the next job: a connection that died in between fails that job, which falls back and closes it here."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        aged = conn.close_at is not None and time.monotonic() >= conn.close_at
        if conn.errors_occurred or aged or not conn.get_autocommit():
            conn.close()


def shutdown() -> None:
    """Wait for the work under way and drop the threads (the next ``run_soon`` starts new ones)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)


def run_soon(work: Callable[[], None], *, fallback: Callable[[], object]) -> bool:
    """Run ``work`` in an idle background thread of this process; if none is idle (or inline work is off), call
    ``fallback`` at once instead. Returns True when ``work`` was taken.

    ``work`` must be safe to lose with the process: it is only ever a faster way to do what a sweep would do later.
    If ``work`` raises, ``fallback`` runs in the thread, so a failure costs the Celery round trip and nothing else.
    """
    if not enabled():
        fallback()
        return False
    executor, idle = _pool()
    if not idle.acquire(blocking=False):
        fallback()
        return False

    def run() -> None:
        try:
            work()
        except Exception as exc:
            # Only the type: messages may quote payloads. The rows are intact; the fallback takes over.
            logger.warning("inline work failed (%s); handed to the workers", type(exc).__name__)
            try:
                fallback()
            except Exception as again:
                logger.warning("inline fallback failed too (%s); the sweep will pick it up", type(again).__name__)
        finally:
            _tidy_connections()
            idle.release()

    try:
        executor.submit(run)
    except RuntimeError:  # the interpreter is shutting down
        idle.release()
        fallback()
        return False
    return True
