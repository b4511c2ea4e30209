"""What deliveries count for /metrics (config/metrics.py), in the process that makes the attempts.

Counted from what an attempt already holds in memory when it is recorded: no query, and no label but the outcome,
so the series stay few whatever the number of webhooks (destinations and URLs are never labels: URLs may carry
credentials).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Histogram

ATTEMPTS = Counter(
    "registry_delivery_attempts_total",
    "Delivery attempts recorded, by the state they left the delivery in (succeeded, retrying, failed).",
    ["outcome"],
)
ATTEMPT_DURATION = Histogram(
    "registry_delivery_attempt_duration_seconds",
    "Time from sending a delivery's request to reading its answer (attempts that sent a request).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FIRST_ATTEMPT_DELAY = Histogram(
    "registry_delivery_first_attempt_delay_seconds",
    "Time from an event being written to the first attempt of each of its deliveries.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)

# Outcomes exist from the start at 0, so a rate over them is defined before the first failure.
for _status in ("succeeded", "retrying", "failed"):
    ATTEMPTS.labels(outcome=_status)


@dataclass(frozen=True)
class Counted:
    """One recorded attempt, as the metrics see it."""

    outcome: str
    duration: float | None  # seconds; None: no request was sent
    first_delay: float | None  # seconds from the event to this attempt, on the first attempt only


def attempts_count(attempts: Iterable[Counted]) -> None:
    """Count attempts once their record is committed."""
    for attempt in attempts:
        ATTEMPTS.labels(outcome=attempt.outcome).inc()
        if attempt.duration is not None:
            ATTEMPT_DURATION.observe(attempt.duration)
        if attempt.first_delay is not None:
            FIRST_ATTEMPT_DELAY.observe(max(0.0, attempt.first_delay))


def first_delay(*, attempt_number: int, event_created_at: datetime | None, started: datetime) -> float | None:
    if attempt_number != 1 or event_created_at is None:
        return None
    return (started - event_created_at).total_seconds()
