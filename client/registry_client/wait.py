"""Waiting on a change: follow the events it fired until every delivery and launch item they started has settled.

An event has started what it will once it is dispatched (its deliveries and items are written in the dispatch
transaction). A delivery has settled when it ``succeeded`` or ``failed`` (``retrying`` has another attempt due); a
launch item when it is ``finished``, ``failed`` or ``cancelled``. Each is reported through ``on_update`` when first
seen and whenever its state changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .errors import TimedOut, WaitFailed
from .types import Delivery, Event, LaunchItem, WaitResult

if TYPE_CHECKING:
    from .api import Registry

__all__ = ["DEFAULT_TIMEOUT", "Update", "describe", "wait_for"]

DEFAULT_TIMEOUT = 600.0
Update = Event | Delivery | LaunchItem


def describe(thing: Update) -> str:
    """One line about an event, delivery or launch item, for progress and failure messages."""
    if isinstance(thing, Event):
        alias = f" {thing.alias or thing.tag}" if thing.alias or thing.tag else ""
        manual = " (manual)" if thing.manual else ""
        state = "dispatched" if thing.dispatched else "waiting for dispatch"
        return f"event {thing.id[:8]} {thing.type}{alias}{manual} on {thing.artifact or '?'}: {state}"
    if isinstance(thing, Delivery):
        where = f"{thing.automation_name or thing.automation} -> {thing.webhook_name or thing.webhook}"
        extra = ""
        if thing.last_status_code is not None or thing.last_error:
            detail = thing.last_error or f"HTTP {thing.last_status_code}"
            extra = f" (attempt {thing.attempt_count}, {detail})"
        return f"delivery {thing.id} {where}: {thing.status}{extra}"
    agent = f" on {thing.agent}" if thing.agent else ""
    extra = f" exit={thing.exit_code}" if thing.exit_code is not None else ""
    reason = f" ({thing.reason})" if thing.reason else ""
    name = thing.automation_name or thing.job_version
    return f"launch item {thing.id[:8]} {name} queue {thing.queue}{agent}: {thing.state}{extra}{reason}"


def _state(thing: Update) -> str:
    if isinstance(thing, Event):
        return "dispatched" if thing.dispatched else "pending"
    if isinstance(thing, Delivery):
        return f"{thing.status}/{thing.attempt_count}"
    return thing.state


def wait_for(
    registry: Registry,
    event_ids: Sequence[str],
    *,
    team: str,
    timeout: float = DEFAULT_TIMEOUT,
    poll: float = 1.0,
    on_update: Callable[[Update], None] | None = None,
) -> WaitResult:
    """Poll until everything ``event_ids`` started has settled. Raises ``WaitFailed`` (with ``result``) when a
    delivery or item failed, ``TimedOut`` when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    seen: dict[tuple[str, str], str] = {}
    events: dict[str, Event] = {}
    deliveries: dict[str, Delivery] = {}
    items: dict[str, LaunchItem] = {}

    def report(kind: str, thing: Update) -> None:
        state = _state(thing)
        if seen.get((kind, thing.id)) != state:
            seen[(kind, thing.id)] = state
            if on_update is not None:
                on_update(thing)

    while True:
        for event_id in event_ids:
            if event_id not in events or not events[event_id].dispatched:
                events[event_id] = registry.event(event_id, team=team)
                report("event", events[event_id])
            if events[event_id].dispatched:
                for delivery in registry.deliveries(team=team, event=event_id):
                    deliveries[delivery.id] = delivery
                    report("delivery", delivery)
                for item in registry.items(team=team, event=event_id):
                    items[item.id] = item
                    report("item", item)
        result = WaitResult(
            events=[events[i] for i in event_ids], deliveries=list(deliveries.values()), items=list(items.values())
        )
        started: list[Delivery | LaunchItem] = [*result.deliveries, *result.items]
        settled = all(e.dispatched for e in result.events) and all(t.settled for t in started)
        if settled:
            if failures := result.failures:
                error = WaitFailed(
                    f"{len(failures)} of {len(result.deliveries) + len(result.items)} failed: "
                    + "; ".join(describe(f) for f in failures)
                )
                error.result = result
                raise error
            return result
        if time.monotonic() >= deadline:
            pending: list[Update] = [e for e in result.events if not e.dispatched]
            pending += [t for t in started if not t.settled]
            raise TimedOut(
                f"Not settled after {timeout:g} s: "
                + "; ".join(describe(p) for p in pending[:5])
                + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
            )
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
