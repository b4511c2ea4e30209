"""Who may send now: each destination's and each team's share of the senders, and each destination's breaker.

Deliveries share capacity by destination (``safe_http.destination_key``: scheme, host and port), not by webhook, so
that five webhooks to one slow server count as one server. A send holds a ``SendSlot`` row while it runs; a
destination may hold at most ``DELIVERY_DESTINATION_MAX_SENDS`` of them and a team ``DELIVERY_TEAM_MAX_SENDS``,
across every process. Slots are taken under row locks on the team and the destination, so two workers cannot both
take the last one, and a slot whose holder died lapses with its lease.

A delivery refused a slot is not waited for: its worker thread moves on, the delivery stays due in the database, and
the destination is marked ``waiting`` so the next send that ends there hands the work on (``handoff_due``); the
sweep is the backstop.

The breaker opens after ``DESTINATION_OPEN_AFTER`` consecutive failed or slow answers and parks the destination's
deliveries until ``open_until``; then one probe goes out at a time, and its answer closes the breaker or opens it
again for twice as long (up to ``DESTINATION_BACKOFF_MAX``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from core.db import quoted
from core.errors import ApplicationError
from registry.models import Team

from .models import Destination, SendSlot

DELIVERY = SendSlot.Kind.DELIVERY


@dataclass(frozen=True)
class Grant:
    """The answer to a slot request. ``slot_id`` is None when refused; ``wait_until`` is set when the destination's
    breaker is open (its deliveries wait until then); ``probe`` means only one delivery may be sent; ``hand_over``
    that dispatch should leave them to the deliveries workers; ``breaker_clean`` that the destination had no bad
    answer on record when the slot was taken (good answers then leave its breaker as it is: no statement)."""

    slot_id: int | None
    probe: bool = False
    wait_until: datetime | None = None
    hand_over: bool = False
    breaker_clean: bool = False


@dataclass(frozen=True)
class Answer:
    """What one attempt says about its destination."""

    failed: bool  # a network error, a timeout, 408, 429 or 5xx: the server is not coping
    seconds: float
    error: str = ""

    @property
    def bad(self) -> bool:
        return self.failed or self.seconds >= settings.DESTINATION_SLOW_AFTER


@dataclass(frozen=True)
class _Breaker:
    id: int
    open_until: datetime | None
    waiting: bool
    failures: int


def _locked(team_id: int, key: str) -> _Breaker:
    """Lock the team's row, then the destination's (written the first time a key is seen), for the caller's
    transaction: every slot is taken under both, in that order. One statement on PostgreSQL; the hot path of every
    dispatch and batch, so its SQL is written out rather than compiled each time."""
    if connection.vendor != "postgresql":  # SQLite: a write transaction holds the whole database already
        Destination.objects.bulk_create([Destination(key=key)], ignore_conflicts=True)
        row = Destination.objects.values_list("id", "open_until", "waiting", "failures").get(key=key)
        return _Breaker(*row)
    with connection.cursor() as cursor:
        for _ in range(2):
            cursor.execute(_sql().lock, [team_id, key])
            if row := cursor.fetchone():
                return _Breaker(*row)
            Destination.objects.bulk_create([Destination(key=key)], ignore_conflicts=True)
    raise Destination.DoesNotExist(f"team {team_id} or destination {key!r} vanished while taking a slot")


def _slot_insert(*, destination: str, team_id: int, cap: int, now: datetime) -> int | None:
    """A new slot's id, if the destination holds fewer than ``cap`` slots and the team fewer than its share; None
    otherwise. Counted after ``_locked`` took the locks (a statement of its own, so it sees every slot taken by
    whoever held them before)."""
    if connection.vendor != "postgresql":
        held = SendSlot.objects.filter(kind=DELIVERY, expires_at__gt=now).aggregate(
            destination=Count("pk", filter=Q(destination=destination)),
            team=Count("pk", filter=Q(team_id=team_id)),
        )
        if held["destination"] >= cap or held["team"] >= settings.DELIVERY_TEAM_MAX_SENDS:
            return None
        return SendSlot.objects.create(
            kind=DELIVERY, destination=destination, team_id=team_id, expires_at=_lease(now)
        ).pk
    stamp = connection.ops.adapt_datetimefield_value
    kind = DELIVERY.value
    with connection.cursor() as cursor:
        cursor.execute(
            _sql().insert,
            [kind, destination, team_id, stamp(_lease(now)), kind, stamp(now), destination, cap, kind, stamp(now),
             team_id, settings.DELIVERY_TEAM_MAX_SENDS],
        )  # fmt: skip
        row = cursor.fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class _Statements:
    lock: str
    insert: str
    end: str


@functools.cache
def _sql() -> _Statements:
    """The slot statements written out once (only quoted names are formatted in, every value is a parameter)."""
    t, d, s = quoted(Team), quoted(Destination), quoted(SendSlot)

    def dest(name: str) -> str:
        return quoted(Destination, name)

    def slot(name: str) -> str:
        return quoted(SendSlot, name)

    lock = (
        f"SELECT d.{dest('id')}, d.{dest('open_until')}, d.{dest('waiting')}, d.{dest('failures')} "  # noqa: S608
        f"FROM {t} t, {d} d WHERE t.{quoted(Team, 'id')} = %s AND d.{dest('key')} = %s "
        "FOR NO KEY UPDATE OF t FOR UPDATE OF d"
    )
    held = f"SELECT count(*) FROM {s} WHERE {slot('kind')} = %s AND {slot('expires_at')} > %s AND"  # noqa: S608
    insert = (
        f"INSERT INTO {s} ({slot('kind')}, {slot('destination')}, {slot('team')}, {slot('expires_at')}) "
        f"SELECT %s, %s, %s, %s WHERE ({held} {slot('destination')} = %s) < %s "
        f"AND ({held} {slot('team')} = %s) < %s RETURNING {slot('id')}"
    )
    end = (
        f"WITH released AS (DELETE FROM {s} WHERE {slot('id')} = %s) "  # noqa: S608
        f"UPDATE {d} SET {dest('waiting')} = %s WHERE {dest('key')} = %s AND {dest('waiting')} RETURNING 1"
    )
    return _Statements(lock=lock, insert=insert, end=end)


def slot_take(*, destination: str, team_id: int, now: datetime | None = None, from_dispatch: bool = False) -> Grant:
    """Take a send slot for ``team_id`` at ``destination``, if its breaker and both shares allow. Runs in the
    caller's transaction, which should also claim the deliveries and end soon: the locks are held until it does.

    ``from_dispatch``: the caller is the task dispatching an event, whose threads must stay free to dispatch; a
    destination whose last answer was bad (failed or slow) is handed over to the deliveries workers instead."""
    now = now or timezone.now()
    breaker = _locked(team_id, destination)
    if breaker.open_until is not None and breaker.open_until > now:
        return Grant(None, wait_until=breaker.open_until)
    if from_dispatch and (breaker.failures or breaker.open_until is not None):
        return Grant(None, hand_over=True)
    half_open = breaker.open_until is not None
    cap = 1 if half_open else settings.DELIVERY_DESTINATION_MAX_SENDS
    slot_id = _slot_insert(destination=destination, team_id=team_id, cap=cap, now=now)
    if slot_id is None:
        if not breaker.waiting:
            Destination.objects.filter(pk=breaker.id).update(waiting=True)
        return Grant(None)
    return Grant(slot_id, probe=half_open, breaker_clean=not breaker.failures and breaker.open_until is None)


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.DELIVERY_CLAIM_LEASE)


def slot_extend(slot_id: int, *, now: datetime) -> None:
    SendSlot.objects.filter(pk=slot_id).update(expires_at=_lease(now))


def slot_release(slot_id: int) -> None:
    SendSlot.objects.filter(pk=slot_id).delete()


def slot_end(slot_id: int, destination: str) -> bool:
    """Release a slot and say whether deliveries were refused one at ``destination`` since the last hand-off (and
    forget it): ``slot_release`` and ``handoff_wanted`` in one statement, as every batch ends with both."""
    if connection.vendor != "postgresql":  # no data-modifying WITH: two statements
        slot_release(slot_id)
        return handoff_wanted(destination)
    with connection.cursor() as cursor:
        cursor.execute(_sql().end, [slot_id, False, destination])
        return cursor.fetchone() is not None


def handoff_wanted(destination: str) -> bool:
    """Whether deliveries were refused a slot at ``destination`` since the last hand-off (and forget it)."""
    return bool(Destination.objects.filter(key=destination, waiting=True).update(waiting=False))


def waiting_again(destination: str) -> None:
    """Deliveries at ``destination`` wait for a slot: the next send to end there hands them on. Written the first
    time a key is seen, too, as a dispatch may hold back batches of a destination nothing has sent to yet."""
    Destination.objects.bulk_create(
        [Destination(key=destination, waiting=True)], update_conflicts=True, unique_fields=["key"],
        update_fields=["waiting"],
    )  # fmt: skip


def slots_free(destinations: Iterable[str], *, now: datetime) -> dict[str, int]:
    """How many more sends each destination may start now (0 while its breaker is open, 1 when half-open)."""
    keys = set(destinations)
    held = dict(
        SendSlot.objects.filter(kind=DELIVERY, destination__in=keys, expires_at__gt=now)
        .values_list("destination")
        .annotate(n=Count("pk"))
        .values_list("destination", "n")
    )
    breakers = dict(Destination.objects.filter(key__in=keys).values_list("key", "open_until"))
    free = {}
    for key in keys:
        open_until = breakers.get(key)
        cap = settings.DELIVERY_DESTINATION_MAX_SENDS if open_until is None else (1 if open_until <= now else 0)
        free[key] = max(0, cap - held.get(key, 0))
    return free


def slots_expired_delete(*, now: datetime) -> int:
    return SendSlot.objects.filter(expires_at__lte=now).delete()[0]


def breaker_record(destination: str, answers: list[Answer], *, now: datetime, clean: bool = False) -> datetime | None:
    """Apply a batch's answers, in order, to the destination's breaker. Returns ``open_until`` if the breaker is now
    open. Runs in the caller's transaction (the one recording the attempts). ``clean``: the breaker showed no bad
    answer when the batch's slot was taken, so good answers alone have nothing to change."""
    if not answers or (clean and not any(answer.bad for answer in answers)):
        return None
    breaker = Destination.objects.select_for_update().filter(key=destination).first()
    if breaker is None:
        return None
    before = (breaker.failures, breaker.open_until, breaker.backoff, breaker.last_error)
    for answer in answers:
        if not answer.bad:
            breaker.failures, breaker.open_until, breaker.backoff, breaker.last_error = 0, None, 0.0, ""
            continue
        breaker.failures += 1
        breaker.last_error = answer.error if answer.failed else f"answered after {answer.seconds:.1f} s"
        probing = breaker.open_until is not None  # any bad answer while half-open reopens at once
        if probing or breaker.failures >= settings.DESTINATION_OPEN_AFTER:
            breaker.backoff = min(
                max(breaker.backoff * 2, settings.DESTINATION_BACKOFF_MIN), settings.DESTINATION_BACKOFF_MAX
            )
            breaker.open_until = now + timedelta(seconds=breaker.backoff)
    if (breaker.failures, breaker.open_until, breaker.backoff, breaker.last_error) != before:
        breaker.last_error = breaker.last_error[:2000]
        breaker.save(update_fields=["failures", "open_until", "backoff", "last_error", "updated_at"])
    return breaker.open_until if breaker.open_until and breaker.open_until > now else None


# --- Webhook tests --------------------------------------------------------------------------------------------


class TooManyTests(ApplicationError):
    status_code = 429
    default_code = "too_many_tests"


_tests_here = threading.BoundedSemaphore(1)
_tests_here_size = 1
_tests_here_lock = threading.Lock()


def _process_semaphore() -> threading.BoundedSemaphore:
    global _tests_here, _tests_here_size
    with _tests_here_lock:
        if _tests_here_size != settings.WEBHOOK_TEST_MAX_PER_PROCESS:
            _tests_here_size = settings.WEBHOOK_TEST_MAX_PER_PROCESS
            _tests_here = threading.BoundedSemaphore(_tests_here_size)
        return _tests_here


@contextlib.contextmanager
def test_slot(*, team: Team) -> Iterator[None]:
    """Hold one of the team's ``WEBHOOK_TEST_MAX_PER_TEAM`` test slots and one of this process's
    ``WEBHOOK_TEST_MAX_PER_PROCESS`` for the duration of a webhook test, or refuse with a 429: a test waits on
    somebody's server inside a web request, so only a few may do so at once."""
    here = _process_semaphore()
    if not here.acquire(blocking=False):
        raise TooManyTests(
            f"Too many webhook tests are under way on this server (at most {settings.WEBHOOK_TEST_MAX_PER_PROCESS} at "
            "once); try again in a few seconds."
        )
    try:
        now = timezone.now()
        with transaction.atomic():
            list(Team.objects.select_for_update(no_key=True).filter(pk=team.pk).values_list("pk"))
            held = SendSlot.objects.filter(kind=SendSlot.Kind.TEST, team=team, expires_at__gt=now).count()
            if held >= settings.WEBHOOK_TEST_MAX_PER_TEAM:
                raise TooManyTests(
                    f"{team.name} already has {held} webhook tests under way (at most "
                    f"{settings.WEBHOOK_TEST_MAX_PER_TEAM}); try again when one ends."
                )
            expires = now + timedelta(seconds=settings.WEBHOOK_TEST_DEADLINE + 5)
            slot = SendSlot.objects.create(kind=SendSlot.Kind.TEST, team=team, expires_at=expires)
        try:
            yield
        finally:
            slot_release(slot.pk)
    finally:
        here.release()
