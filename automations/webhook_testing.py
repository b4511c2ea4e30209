"""Testing a webhook: one send of a payload through the production path (render, sign, safety checks), inside the
web request that asked for it (the API's ``webhooks/<id>/test/`` and the admin's Test page). Nothing is recorded.

A test keeps a web thread waiting on somebody else's server, so it is bounded: it has its own deadline,
``WEBHOOK_TEST_DEADLINE`` (shorter than a delivery's ``WEBHOOK_DEADLINE``: somebody is waiting for the answer), and
only ``WEBHOOK_TEST_MAX_PER_TEAM`` tests of one team and ``WEBHOOK_TEST_MAX_PER_PROCESS`` of one web process may run
at once (``fairness.test_slot``); more are refused at once with a 429 and ``Retry-After``, so that the web threads
left answer everything else.
"""

from __future__ import annotations

import uuid

from django.conf import settings

from core.errors import ApplicationError

from . import fairness, rendering
from .models import Webhook
from .prepare import PreparedRequest, request_prepare, request_send, request_shown, response_summary
from .safe_http import SendError
from .selectors import sample_context
from .services import payload_validate

# Seconds a refused test is told to wait: tests end within WEBHOOK_TEST_DEADLINE, most much sooner.
RETRY_AFTER = 5


def _prepare(*, webhook: Webhook, template: dict, context: dict) -> PreparedRequest:
    return request_prepare(
        team=webhook.team,
        template=template,
        context=context,
        secret_name=webhook.secret.name if webhook.secret else "",
        access_token_name=webhook.access_token.name if webhook.access_token else "",
        msg_id=str(uuid.uuid4()),
    )


def _send(*, webhook: Webhook, prepared: PreparedRequest, show_request: bool) -> dict:
    try:
        outcome = request_send(webhook.url, prepared, deadline=settings.WEBHOOK_TEST_DEADLINE)
    except SendError as exc:  # no answer: why is the answer shown
        outcome = exc
    answer = response_summary(outcome, prepared.secrets)
    return {**answer, "request": request_shown(prepared)} if show_request else answer


def webhook_test(*, webhook: Webhook, payload: dict | str, context: dict, show_request: bool = False) -> dict:
    """Send a payload once through the production path with the test deadline; record nothing and take no test
    slot (``webhook_test_send`` does, for web requests). The answer is the endpoint's (``response_summary``); with
    ``show_request``, also what was sent, under ``request`` (``request_shown``)."""
    prepared = _prepare(webhook=webhook, template=rendering.template_parse(payload), context=context)
    return _send(webhook=webhook, prepared=prepared, show_request=show_request)


def webhook_test_send(*, webhook: Webhook, payload: object, user, show_request: bool = False) -> dict:
    """Test a webhook, for the API and the admin alike: check ``payload`` as a template of the webhook's team (the
    variables of every event type), render it for a sample event (``selectors.sample_context``) and send it once
    through the production path, within ``WEBHOOK_TEST_DEADLINE``. Nothing is recorded.

    A payload that cannot be sent is refused with ``ApplicationError(field="payload")`` naming the cause (the
    offending variable, a secret that is gone) and nothing is sent. A test beyond the team's or this process's
    limit is refused with ``fairness.TooManyTests`` (429, ``Retry-After``) naming the limit, and nothing is sent.
    Otherwise the endpoint's answer, or why none came (a timeout, the deadline, a refused address), is returned as
    ``response_summary`` gives it, with echoed secrets as ``${NAME}``; with ``show_request`` (the admin's Test
    page), also the request as sent, secret-bearing values masked.
    """
    template = payload_validate(team=webhook.team, payload=payload, event_type=None)
    try:
        prepared = _prepare(webhook=webhook, template=template, context=sample_context(team=webhook.team, user=user))
    except rendering.TemplateError as exc:
        raise ApplicationError(exc.message, field="payload") from exc
    except SendError as exc:  # a secret is gone: nothing was sent
        raise ApplicationError(exc.message, field="payload") from exc
    try:
        with fairness.test_slot(team=webhook.team):
            return _send(webhook=webhook, prepared=prepared, show_request=show_request)
    except fairness.TooManyTests as exc:  # refused before anything was sent
        exc.headers = {"Retry-After": str(RETRY_AFTER), **(exc.headers or {})}
        raise
