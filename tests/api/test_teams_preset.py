"""The Microsoft Teams presets as a Teams endpoint receives them: an Adaptive Card wrapped in a message for a
Workflows webhook, and the legacy MessageCard, each rendered from a real event and delivered to a loopback receiver."""

from __future__ import annotations

import json

import pytest

from automations.presets import preset_payload
from harness.receiver import Receiver
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def team_admin(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("ada")
    return f.make_team("vision", admin=admin), admin


def test_a_workflows_webhook_receives_an_adaptive_card_with_the_event(team_admin, purge_broker):
    team, admin = team_admin
    with Receiver() as receiver:
        event = f.link_delivered(team, user=admin, url=receiver.url, payload=preset_payload("microsoft_teams"))
        (got,) = receiver.requests
    message = json.loads(got.body)
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, text, facts = card["body"]
    assert title["text"] == "Model registry: LINK_ARTIFACT"
    assert text["text"] == f"{event.context['artifact_version_string']} changed in the model registry."
    assert facts["facts"] == [{"title": "Author", "value": "ada"}, {"title": "Event type", "value": "LINK_ARTIFACT"}]


def test_a_legacy_connector_still_receives_its_messagecard(team_admin, purge_broker):
    team, admin = team_admin
    with Receiver() as receiver:
        f.link_delivered(team, user=admin, url=receiver.url, payload=preset_payload("microsoft_teams_messagecard"))
        (got,) = receiver.requests
    card = json.loads(got.body)
    assert card["@type"] == "MessageCard" and card["sections"][0]["facts"][0] == {"name": "Author", "value": "ada"}
