"""The webhook retry policy: what an attempt's outcome means (the delivery's next status and wait, and whether its
webhook is disabled), the schedule with jitter, and Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from automations.choices import DeliveryStatus
from automations.retry import (
    Verdict,
    classify,
    decide,
    next_attempt_delay,
    parse_retry_after,
    retry_schedule,
    webhook_disable_reason,
    webhook_disabled,
)
from automations.safe_http import HttpResponse, SendError

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
DEFAULT_SCHEDULE = (5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400)
TIMED_OUT = SendError("timed out after 10.0 s waiting for the response", permanent=False, duration_ms=10_000)
REFUSED = SendError("refused: 10.0.0.1, a private address", permanent=True)


def answer(status_code: int, **headers: str) -> HttpResponse:
    return HttpResponse(status_code=status_code, headers=headers)


@pytest.fixture
def no_jitter(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = list(DEFAULT_SCHEDULE)
    settings.WEBHOOK_RETRY_JITTER = 0
    settings.WEBHOOK_RETRY_AFTER_MAX = 86400
    return settings


@pytest.mark.parametrize(
    ("status_code", "verdict"),
    [
        (200, Verdict.SUCCEEDED),
        (201, Verdict.SUCCEEDED),
        (204, Verdict.SUCCEEDED),
        (301, Verdict.FAILED),
        (302, Verdict.FAILED),
        (400, Verdict.FAILED),
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),
        (408, Verdict.RETRY),
        (410, Verdict.GONE),
        (422, Verdict.FAILED),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_classification(status_code, verdict):
    assert classify(answer(status_code)) is verdict


def test_a_network_error_retries_and_a_permanent_send_error_fails():
    assert classify(TIMED_OUT) is Verdict.RETRY
    assert classify(REFUSED) is Verdict.FAILED
    assert classify(webhook_disabled("")) is Verdict.FAILED


# --- The verdict: next status, wait, webhook disabled ------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "attempts_made", "status", "wait", "error"),
    [
        (answer(200), 1, DeliveryStatus.SUCCEEDED, None, ""),
        (answer(204), 11, DeliveryStatus.SUCCEEDED, None, ""),
        (answer(503), 1, DeliveryStatus.RETRYING, 5.0, "HTTP 503"),
        (answer(429, **{"Retry-After": "90"}), 1, DeliveryStatus.RETRYING, 90.0, "HTTP 429"),
        (answer(503), 4, DeliveryStatus.RETRYING, 600.0, "HTTP 503"),
        (answer(503), 11, DeliveryStatus.FAILED, None, "HTTP 503; gave up after 11 attempts."),
        (TIMED_OUT, 2, DeliveryStatus.RETRYING, 30.0, TIMED_OUT.message),
        (TIMED_OUT, 11, DeliveryStatus.FAILED, None, f"{TIMED_OUT.message}; gave up after 11 attempts."),
        (REFUSED, 1, DeliveryStatus.FAILED, None, REFUSED.message),
        (answer(404), 1, DeliveryStatus.FAILED, None, "HTTP 404"),
        (answer(302), 1, DeliveryStatus.FAILED, None, "HTTP 302"),
        (answer(410), 1, DeliveryStatus.FAILED, None, "HTTP 410"),
        (webhook_disabled("by an admin"), 1, DeliveryStatus.FAILED, None, "Webhook disabled: by an admin"),
    ],
)
def test_the_verdict_gives_the_next_status_and_wait(no_jitter, outcome, attempts_made, status, wait, error):
    decision = decide(outcome, attempts_made=attempts_made, now=NOW)

    assert (decision.status, decision.wait, decision.error) == (status, wait, error)
    assert decision.next_attempt_at(NOW) == (None if wait is None else NOW + timedelta(seconds=wait))


def test_a_body_cut_short_is_the_error_but_the_status_code_decides(no_jitter):
    cut = HttpResponse(status_code=500, error="deadline of 30.0 s exceeded reading the response body")

    decision = decide(cut, attempts_made=1, now=NOW)

    assert (decision.status, decision.error) == (DeliveryStatus.RETRYING, cut.error)
    assert decide(HttpResponse(status_code=200, error=cut.error), attempts_made=1, now=NOW).error == ""


def test_gone_disables_the_webhook_at_once(settings):
    reason = webhook_disable_reason(Verdict.GONE, error="HTTP 410", failing_since=None, now=NOW)

    assert reason == "The endpoint answered 410 Gone on 2025-03-01 12:00 UTC."


def test_a_webhook_failing_longer_than_the_limit_is_disabled_naming_the_last_error(settings):
    settings.WEBHOOK_DISABLE_AFTER = 3600
    long_ago, lately = NOW - timedelta(hours=2), NOW - timedelta(minutes=5)

    for verdict in (Verdict.RETRY, Verdict.FAILED):
        assert webhook_disable_reason(verdict, error="HTTP 503", failing_since=long_ago, now=NOW) == (
            "Every delivery failed for more than 1:00:00; last error: HTTP 503"
        )
        assert webhook_disable_reason(verdict, error="HTTP 503", failing_since=lately, now=NOW) is None
        assert webhook_disable_reason(verdict, error="HTTP 503", failing_since=None, now=NOW) is None
    assert webhook_disable_reason(Verdict.SUCCEEDED, error="", failing_since=long_ago, now=NOW) is None


# --- Schedule -----------------------------------------------------------------------------------------------


def test_the_default_schedule_runs_from_five_seconds_to_a_day():
    # The default comes from config.settings, where the schedule is written once.
    assert retry_schedule() == tuple(float(s) for s in DEFAULT_SCHEDULE)


def test_the_schedule_progresses_and_is_spent_after_one_retry_per_entry(no_jitter):
    delays = [next_attempt_delay(attempts_made=n, retry_after=None) for n in range(1, len(DEFAULT_SCHEDULE) + 2)]

    assert delays[:-1] == [float(s) for s in DEFAULT_SCHEDULE]
    assert delays[-1] is None


def test_a_configured_schedule_replaces_the_default(no_jitter):
    no_jitter.WEBHOOK_RETRY_SCHEDULE = [1, 2]

    assert retry_schedule() == (1.0, 2.0)
    assert next_attempt_delay(attempts_made=2, retry_after=None) == 2.0
    assert next_attempt_delay(attempts_made=3, retry_after=None) is None


def test_an_empty_schedule_means_no_retries(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = []

    assert next_attempt_delay(attempts_made=1, retry_after=None) is None


@pytest.mark.parametrize("schedule", [[5, -1], [0], "5,30", [5, "30"], [True]])
def test_a_malformed_schedule_is_a_configuration_error(settings, schedule):
    settings.WEBHOOK_RETRY_SCHEDULE = schedule

    with pytest.raises(ImproperlyConfigured, match="WEBHOOK_RETRY_SCHEDULE"):
        retry_schedule()


def test_attempts_made_counts_from_one():
    with pytest.raises(ValueError, match="at least 1"):
        next_attempt_delay(attempts_made=0, retry_after=None)


# --- Jitter -------------------------------------------------------------------------------------------------


def test_jitter_stays_within_ten_percent_and_varies(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = list(DEFAULT_SCHEDULE)
    settings.WEBHOOK_RETRY_JITTER = 0.1
    rng = random.Random(1234)

    for attempts_made, base in enumerate(DEFAULT_SCHEDULE, start=1):
        delays = {next_attempt_delay(attempts_made=attempts_made, retry_after=None, rng=rng) for _ in range(50)}
        assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
        assert len(delays) > 1


def test_jitter_is_reproducible_with_a_seeded_rng():
    first = [next_attempt_delay(attempts_made=3, retry_after=None, rng=random.Random(7)) for _ in range(3)]

    assert len(set(first)) == 1


def test_a_jittered_delay_is_never_below_one_second(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [1]
    settings.WEBHOOK_RETRY_JITTER = 0.5
    rng = random.Random(0)

    assert min(next_attempt_delay(attempts_made=1, retry_after=None, rng=rng) for _ in range(100)) >= 1.0


# --- Retry-After ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("-5", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Sat, 01 Mar 2025 12:10:00 GMT", 600.0),
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("1.5", None),
        ("12 seconds", None),
        ("Sat, 99 Foo 2025 12:10:00 GMT", None),
    ],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


def test_a_longer_retry_after_wins_over_the_schedule(no_jitter):
    assert next_attempt_delay(attempts_made=1, retry_after=3600) == 3600.0


def test_a_shorter_retry_after_does_not_shorten_the_schedule(no_jitter):
    assert next_attempt_delay(attempts_made=4, retry_after=10) == 600.0


def test_retry_after_is_capped(no_jitter):
    assert next_attempt_delay(attempts_made=1, retry_after=10 * 86400) == 86400.0

    no_jitter.WEBHOOK_RETRY_AFTER_MAX = 900
    assert next_attempt_delay(attempts_made=1, retry_after=10 * 86400) == 900.0
    assert next_attempt_delay(attempts_made=6, retry_after=10 * 86400) == 3600.0  # the cap never shortens the schedule


def test_retry_after_does_not_revive_a_spent_schedule(no_jitter):
    assert next_attempt_delay(attempts_made=len(DEFAULT_SCHEDULE) + 1, retry_after=60) is None
