"""One log line per delivery attempt, with its fields, never a secret; LOG_FORMAT=json's line format."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from automations import services
from automations.models import Delivery
from config.logs import JsonFormatter
from harness.receiver import Receiver, Reply
from harness.util import free_port
from secrets_vault.services import secret_create
from tests.factories import make_team, make_user
from tests.unit.test_delivery_path import attempt, broker, loopback, pending_deliveries  # noqa: F401 (fixtures)

TOKEN = "ghp_echoed_TOKEN_that_must_never_be_logged_42"


def attempt_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "automations.attempts" and hasattr(r, "verdict")]


def hook_with_token(url: str):
    admin = make_user()
    team = make_team(admin=admin)
    secret_create(team=team, name="DEPLOY_TOKEN", value=TOKEN, user=admin)
    webhook = services.webhook_create(team=team, name="ci", url=url, user=admin, access_token="DEPLOY_TOKEN")
    services.automation_create(
        team=team, user=admin, webhook=webhook.pk, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        payload={"v": "${artifact_version_string}"},
    )  # fmt: skip
    return webhook


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loopback", "broker")
def test_each_attempt_logs_one_line_with_its_outcome_and_never_the_echoed_secret(caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"X-Echo": f"Bearer {TOKEN}"}
    with Receiver(Reply(200, echo, TOKEN.encode()), Reply(503, echo, f'{{"got": "{TOKEN}"}}'.encode())) as receiver:
        webhook = hook_with_token(f"{receiver.url}?token={TOKEN}")
        ids = [str(d.pk) for d in pending_deliveries(webhook, 2)]
        Delivery.objects.filter(pk__in=ids).update(access_token_name="DEPLOY_TOKEN")
        attempt(webhook, ids)
        sent = {k.lower(): v for k, v in receiver.requests[0].headers.items()}
        assert sent["authorization"] == f"Bearer {TOKEN}"  # the secret was sent
    lines = attempt_records(caplog)
    assert len(lines) == 2
    ok, retrying = sorted(lines, key=lambda r: ids.index(r.delivery_id))
    assert (ok.status_code, ok.verdict, ok.webhook_id, ok.attempt) == (200, "succeeded", webhook.pk, 1)
    assert ok.destination == f"http://127.0.0.1:{receiver.port}"
    assert isinstance(ok.duration_ms, int) and ok.duration_ms >= 0
    assert retrying.status_code == 503 and retrying.verdict.startswith("retrying at 20")
    assert f"delivery {ids[1]} attempt 1 (webhook {webhook.pk}, http://127.0.0.1:{receiver.port}): 503" in (
        retrying.getMessage()
    )
    assert TOKEN not in caplog.text
    assert all(TOKEN not in json.dumps(vars(r), default=str) for r in lines)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("loopback", "broker")
def test_an_attempt_without_answer_logs_its_error_and_a_410_logs_webhook_disabled(caplog):
    caplog.set_level(logging.INFO)
    webhook = hook_with_token(f"http://127.0.0.1:{free_port()}/hook")
    (refused,) = [str(d.pk) for d in pending_deliveries(webhook, 1)]
    attempt(webhook, [refused])
    (line,) = attempt_records(caplog)
    assert line.status_code is None and line.error and line.verdict.startswith("retrying at")
    assert line.error in line.getMessage()

    caplog.clear()
    with Receiver(Reply(410)) as receiver:
        webhook = hook_with_token(receiver.url)
        ids = [str(d.pk) for d in pending_deliveries(webhook, 2)]
        attempt(webhook, ids)
    verdicts = {r.delivery_id: (r.status_code, r.verdict) for r in attempt_records(caplog)}
    assert verdicts == {ids[0]: (410, "webhook disabled"), ids[1]: (None, "webhook disabled")}


def test_json_lines_carry_time_level_logger_message_and_the_fields():
    record = logging.LogRecord("automations.attempts", logging.INFO, __file__, 1, "sent %s", ("x",), None)
    record.delivery_id, record.status_code = "d-1", 200
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "sent x" and line["level"] == "INFO" and line["logger"] == "automations.attempts"
    assert line["time"].endswith("+00:00") and line["delivery_id"] == "d-1" and line["status_code"] == 200
    assert "args" not in line and "msg" not in line
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    formatted = JsonFormatter().format(failed)
    assert "\n" not in formatted and "ValueError: boom" in json.loads(formatted)["exception"]
