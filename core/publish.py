"""Publishing Celery tasks whose work is also recorded in a row, so a periodic sweep can send them again."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def task_send(task, *args: object, countdown: float | None = None) -> bool:
    """Send a task whose work is also recorded in the database. Never raises: when the broker is unreachable,
    the row stays as it is and a periodic sweep sends it again."""
    try:
        task.apply_async(args=args, countdown=countdown)
    except Exception as exc:  # the broker is down or unreachable
        logger.warning(
            "%s%s not sent to the broker (%s); the sweeper will resend it", task.name, args, type(exc).__name__
        )
        return False
    return True
