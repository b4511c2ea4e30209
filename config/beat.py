"""Beat's scheduler, with a heartbeat that ``manage.py workers_alive`` reads.

Beat answers no remote control (``celery inspect`` reaches workers only), so its liveness is a file it touches
beside its schedule file on every tick. A file works the same with Redis and with the embedded filesystem broker
(neither a broker key nor the database would: the filesystem broker has no keys, and a database check would tell
about the database, not about beat); it is local, which is what a supervisor of this machine's beat asks about. The
schedule file's own modification time would not do: beat syncs it only every few minutes, and its name depends on
the dbm module.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery.beat import PersistentScheduler

# Beat wakes at least this often, so its heartbeat is never older than this while it runs, whatever the schedule.
HEARTBEAT_EVERY = 10.0


def heartbeat_path(schedule_filename: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(schedule_filename)}.alive")


class HeartbeatScheduler(PersistentScheduler):
    def tick(self, *args, **kwargs) -> float:
        delay = super().tick(*args, **kwargs)
        now = time.time()
        if now - getattr(self, "_beat_at", 0.0) >= 1.0:
            heartbeat_path(self.schedule_filename).touch()
            self._beat_at = now
        return min(delay, HEARTBEAT_EVERY)
