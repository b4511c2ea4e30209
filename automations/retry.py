"""The webhook retry policy in one place: what a response means, and when to try again.

Settings (all optional):

- ``WEBHOOK_RETRY_SCHEDULE``: seconds to wait after the 1st, 2nd, ... failed attempt; its length is the number of
  retries (default :data:`DEFAULT_SCHEDULE`: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h, 24 h).
- ``WEBHOOK_RETRY_JITTER``: the fraction by which each wait is randomly stretched or shortened (default 0.1), so
  deliveries failed by one outage do not all come back at the same second.
- ``WEBHOOK_RETRY_AFTER_MAX``: the longest ``Retry-After`` honoured, in seconds (default 86400), so an endpoint
  cannot park a delivery for ever.
"""

from __future__ import annotations

import enum
import math
import random
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_SCHEDULE: tuple[int, ...] = (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
DEFAULT_JITTER = 0.1
DEFAULT_RETRY_AFTER_MAX = 86400.0
MIN_DELAY = 1.0

_DELTA_SECONDS_RE = re.compile(r"-?\d+")


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"  # fail, and disable the webhook: the endpoint says it will never come back


def classify(status_code: int | None, *, network_error: bool) -> Verdict:
    """What an attempt's outcome means. Only failures that may pass on their own are retried."""
    if network_error or status_code is None:
        return Verdict.RETRY  # connection refused, reset, timeout: the endpoint may be back soon
    if 200 <= status_code <= 299:
        return Verdict.SUCCEEDED
    if status_code == 410:
        return Verdict.GONE
    if status_code in (408, 429) or 500 <= status_code <= 599:
        return Verdict.RETRY
    # Redirects are not followed (the target was never checked), and other 4xx will not change by waiting.
    return Verdict.FAILED


def retry_schedule() -> tuple[float, ...]:
    """The waits between attempts, from ``WEBHOOK_RETRY_SCHEDULE`` or :data:`DEFAULT_SCHEDULE`."""
    schedule = getattr(settings, "WEBHOOK_RETRY_SCHEDULE", None)
    if schedule is None:
        return tuple(float(s) for s in DEFAULT_SCHEDULE)
    if isinstance(schedule, str | bytes) or not all(
        isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in schedule
    ):
        raise ImproperlyConfigured("WEBHOOK_RETRY_SCHEDULE must be a list of positive numbers of seconds.")
    return tuple(float(s) for s in schedule)


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date); None when absent or garbled.

    A negative delay or a date in the past means "now" (0).
    """
    if value is None or not (text := value.strip()):
        return None
    if _DELTA_SECONDS_RE.fullmatch(text):
        return max(0.0, float(int(text)))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_attempt_delay(
    *, attempts_made: int, retry_after: float | None, rng: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts failed; None when the schedule is spent.

    The schedule's wait is jittered by ``WEBHOOK_RETRY_JITTER`` (never below one second); a longer ``Retry-After``
    wins, capped at ``WEBHOOK_RETRY_AFTER_MAX``.
    """
    if attempts_made < 1:
        raise ValueError("attempts_made counts the attempts already made, so it is at least 1.")
    schedule = retry_schedule()
    if attempts_made > len(schedule):
        return None
    jitter = min(max(float(getattr(settings, "WEBHOOK_RETRY_JITTER", DEFAULT_JITTER)), 0.0), 0.9)
    spread = (rng or random).uniform(-jitter, jitter)
    delay = max(MIN_DELAY, schedule[attempts_made - 1] * (1 + spread))
    if retry_after is not None and retry_after > delay:
        cap = float(getattr(settings, "WEBHOOK_RETRY_AFTER_MAX", DEFAULT_RETRY_AFTER_MAX))
        delay = max(delay, min(retry_after, cap))
    return delay
