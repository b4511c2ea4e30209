"""The webhook retry policy in one place: what an attempt's outcome means for its delivery (the next status, how
long until the next attempt) and for its webhook (whether it is disabled).

An outcome is the endpoint's answer (``safe_http.HttpResponse``) or why none came (``safe_http.SendError``, whose
``permanent`` flag says whether waiting could help). Settings (defaults in ``config.settings``):

- ``WEBHOOK_RETRY_SCHEDULE``: seconds to wait after the 1st, 2nd, ... failed attempt; its length is the number of
  retries.
- ``WEBHOOK_RETRY_JITTER``: the fraction by which each wait is randomly stretched or shortened, so deliveries failed
  by one outage do not all come back at the same second.
- ``WEBHOOK_RETRY_AFTER_MAX``: the longest ``Retry-After`` honoured, in seconds, so an endpoint cannot park a
  delivery for ever.
- ``WEBHOOK_DISABLE_AFTER``: seconds a webhook may fail every delivery before it is disabled.
"""

from __future__ import annotations

import enum
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .choices import DeliveryStatus
from .safe_http import HttpResponse, SendError

MIN_DELAY = 1.0

_DELTA_SECONDS_RE = re.compile(r"-?\d+")

Outcome = HttpResponse | SendError


class Verdict(enum.Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"  # fail, and disable the webhook: the endpoint says it will never come back


def classify(outcome: Outcome) -> Verdict:
    """What an attempt's outcome means. Only failures that may pass on their own are retried."""
    if isinstance(outcome, SendError):
        # A refused destination or a request that cannot be built fails for good; a connection refused or reset,
        # or a timeout, may pass: the endpoint may be back soon.
        return Verdict.FAILED if outcome.permanent else Verdict.RETRY
    status_code = outcome.status_code
    if status_code is not None and 200 <= status_code <= 299:
        return Verdict.SUCCEEDED
    if status_code == 410:
        return Verdict.GONE
    if status_code in (408, 429) or (status_code is not None and 500 <= status_code <= 599):
        return Verdict.RETRY
    # Redirects are not followed (the target was never checked), and other 4xx will not change by waiting.
    return Verdict.FAILED


@dataclass(frozen=True)
class Decision:
    """What becomes of a delivery after one attempt."""

    verdict: Verdict
    status: DeliveryStatus  # SUCCEEDED, RETRYING or FAILED
    wait: float | None  # seconds until the next attempt, when RETRYING
    error: str  # the delivery's last error ("" once it succeeded)

    def next_attempt_at(self, now: datetime) -> datetime | None:
        return None if self.wait is None else now + timedelta(seconds=self.wait)


def decide(outcome: Outcome, *, attempts_made: int, now: datetime) -> Decision:
    """The delivery's next status and wait after its ``attempts_made``-th attempt ended in ``outcome``."""
    verdict = classify(outcome)
    if verdict is Verdict.SUCCEEDED:
        return Decision(verdict, DeliveryStatus.SUCCEEDED, None, "")
    error = described(outcome)
    if verdict is Verdict.RETRY:
        retry_after = parse_retry_after(_header(outcome, "retry-after"), now=now)
        delay = next_attempt_delay(attempts_made=attempts_made, retry_after=retry_after)
        if delay is not None:
            return Decision(verdict, DeliveryStatus.RETRYING, delay, error)
        error = f"{error}; gave up after {attempts_made} attempts."
    return Decision(verdict, DeliveryStatus.FAILED, None, error)


def described(outcome: Outcome) -> str:
    """An outcome in a few words: why no answer came, what cut it short, or its status code."""
    if isinstance(outcome, SendError):
        return outcome.message
    return outcome.error or f"HTTP {outcome.status_code}"


def _header(outcome: Outcome, name: str) -> str | None:
    if isinstance(outcome, SendError):
        return None
    return next((v for k, v in outcome.headers.items() if k.lower() == name), None)


def webhook_disabled(reason: str) -> SendError:
    """The outcome of a delivery whose webhook is disabled: nothing is sent, and it fails for good."""
    return SendError(f"Webhook disabled: {reason or 'by an admin'}", permanent=True)


def webhook_disable_reason(
    verdict: Verdict, *, error: str, failing_since: datetime | None, now: datetime
) -> str | None:
    """Why a webhook is disabled after an attempt ended in ``verdict``, or None when it stays enabled: the endpoint
    answered 410 Gone, or every delivery failed since ``failing_since``, longer than ``WEBHOOK_DISABLE_AFTER``."""
    if verdict is Verdict.GONE:
        return f"The endpoint answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC."
    limit = timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER)
    if verdict is not Verdict.SUCCEEDED and failing_since is not None and failing_since < now - limit:
        return f"Every delivery failed for more than {limit}; last error: {error}"[:2000]
    return None


def retry_schedule() -> tuple[float, ...]:
    """The waits between attempts, from ``WEBHOOK_RETRY_SCHEDULE``."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
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
    jitter = min(max(float(settings.WEBHOOK_RETRY_JITTER), 0.0), 0.9)
    spread = (rng or random).uniform(-jitter, jitter)
    delay = max(MIN_DELAY, schedule[attempts_made - 1] * (1 + spread))
    if retry_after is not None and retry_after > delay:
        delay = max(delay, min(retry_after, float(settings.WEBHOOK_RETRY_AFTER_MAX)))
    return delay
