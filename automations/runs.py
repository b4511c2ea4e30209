"""Automation runs: each automation's history of what it did with the events that matched it, and its throttle."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import QuerySet

from core.errors import ApplicationError

from .choices import RunOutcome
from .models import Automation, AutomationRun

MAX_THROTTLE_RUNS = 100_000
MAX_THROTTLE_WINDOW = 7 * 24 * 3600  # a week, in seconds


def throttle_validate(runs: object, window: object) -> tuple[int | None, int | None]:
    """Both or neither: at most ``runs`` runs in any ``window`` seconds."""
    if runs is None and window is None:
        return None, None
    if runs is None or window is None:
        field = "throttle_window" if window is None else "throttle_runs"
        raise ApplicationError("A throttle needs both throttle_runs and throttle_window (seconds).", field=field)
    for value, field, most in (
        (runs, "throttle_runs", MAX_THROTTLE_RUNS),
        (window, "throttle_window", MAX_THROTTLE_WINDOW),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ApplicationError(f"{field} must be a whole number from 1 to {most}.", field=field)
    return runs, window


def window_text(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}" if count != 1 else unit
    return f"{seconds} seconds" if seconds != 1 else "second"


def throttle_refusal(automation: Automation, *, now: datetime) -> str:
    """Why an event now is over the automation's throttle, or "" when it is not (or it has none).

    The automation's row is locked first (FOR NO KEY UPDATE, in the dispatch transaction), so two events dispatched
    at once count one after the other and the limit is never passed. Runs by hand are not counted.
    """
    limit, window = automation.throttle_runs, automation.throttle_window
    if not limit or not window:
        return ""
    list(Automation.objects.select_for_update(no_key=True).filter(pk=automation.pk).values_list("pk"))
    recent = (
        AutomationRun.objects.filter(
            automation=automation, manual=False, created_at__gt=now - timedelta(seconds=window)
        )
        .exclude(outcome=RunOutcome.SKIPPED)
        .count()
    )
    if recent < limit:
        return ""
    runs = f"{recent} run{'' if recent == 1 else 's'}"
    return f"Throttled: {runs} in the last {window_text(window)}, at most {limit} per {window_text(window)}."


def runs_of(*, automation: Automation, outcome: str | None = None) -> QuerySet[AutomationRun]:
    """The automation's history, newest first, with what each run's delivery or item became."""
    runs = AutomationRun.objects.filter(automation=automation).select_related("event", "delivery", "item")
    return runs.filter(outcome=outcome) if outcome else runs
