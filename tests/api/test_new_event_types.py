"""UNLINK_ARTIFACT, REMOVE_ARTIFACT_ALIAS, ADD_ARTIFACT_TAG and REMOVE_ARTIFACT_TAG: what fires each, what it
carries, and which automations it reaches (each type with the scopes that make sense for it)."""

from __future__ import annotations

import json

import pytest

from automations import rendering
from automations import services as automations
from automations.models import Delivery
from core.roles import Role
from registry import outbox, services
from registry.events import event_type_get
from registry.models import ArtifactTag, Event
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(settings):
    """Team acme: 'classifier' v0 (training/classifier:v0, accuracy 0.97) holds production; v1 is linked."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("ada")
    team = f.make_team("acme", admin=admin)
    model = f.make_registered_model(team, "classifier")
    f.link(model, user=admin, aliases=["production"], metadata={"accuracy": 0.97})
    f.link(model, user=admin)
    return team, f.api_client(admin), admin


def base(team) -> str:
    return f"/api/v1/teams/{team.name}/"


def only(event_type: str) -> Event:
    (event,) = Event.objects.filter(type=event_type)
    return event


# --- What fires them ------------------------------------------------------------------------------------


def test_removing_an_alias_fires_remove_artifact_alias_with_the_alias(acme):
    team, client, admin = acme

    response = client.delete(base(team) + "registered-models/classifier/aliases/production/")

    assert response.status_code == 204
    event = only("REMOVE_ARTIFACT_ALIAS")
    assert event.alias == "production" and event.model_version.version == "v0"
    assert event.context["alias"] == "production"
    assert event.context["artifact_version_string"] == "acme/model-registry/classifier:production"
    assert event.context["event_author"] == admin.username
    assert event.context["artifact_metadata"] == {"accuracy": 0.97}


def test_moving_an_alias_fires_only_its_add(acme):
    team, client, _ = acme
    client.post(
        base(team) + "registered-models/classifier/versions/v1/aliases/", {"alias": "production"}, format="json"
    )
    assert not Event.objects.filter(type="REMOVE_ARTIFACT_ALIAS").exists()
    assert Event.objects.filter(type="ADD_ARTIFACT_ALIAS", alias="production").count() == 2


def test_unlinking_fires_unlink_artifact_and_the_event_outlives_the_version(acme):
    team, client, admin = acme

    response = client.delete(base(team) + "registered-models/classifier/versions/v0/")

    assert response.status_code == 204
    event = only("UNLINK_ARTIFACT")
    assert event.model_version is None and event.registered_model.name == "classifier"
    assert event.context["artifact_version_string"] == "acme/model-registry/classifier:v0"
    assert event.context["version"] == "v0" and event.context["event_author"] == admin.username
    # Its aliases went with it, without events of their own.
    assert not Event.objects.filter(type="REMOVE_ARTIFACT_ALIAS").exists()
    listed = client.get(base(team) + "events/", {"type": "UNLINK_ARTIFACT"}).json()["results"]
    assert [(e["registered_model"], e["version"]) for e in listed] == [("classifier", "v0")]


def test_tagging_answers_the_event_and_model_versions_show_their_artifacts_tags(acme):
    team, client, _ = acme
    path = base(team) + "projects/training/artifacts/classifier/versions/v0/tags/"

    added = client.post(path, {"tag": "reviewed"}, format="json")
    again = client.post(path, {"tag": "reviewed"}, format="json")

    assert added.status_code == 201 and again.status_code == 200
    (fired,) = added.json()["events"]
    assert fired["type"] == "ADD_ARTIFACT_TAG" and fired["tag"] == "reviewed"
    assert added.json()["tags"] == ["reviewed"] and again.json()["events"] == []
    event = Event.objects.get(pk=fired["id"])
    assert event.context["tag"] == "reviewed"
    assert event.context["artifact_version_string"] == "acme/training/classifier:v0"
    assert event.context["project_name"] == "training" and event.registered_model is None
    model_version = client.get(base(team) + "registered-models/classifier/versions/v0/").json()
    assert model_version["tags"] == ["reviewed"]
    listed = client.get(base(team) + "registered-models/classifier/versions/").json()["results"]
    assert [v["tags"] for v in listed] == [["reviewed"], []]
    assert client.get(base(team) + "projects/training/artifacts/classifier/versions/").json()["results"][0]["tags"] == [
        "reviewed"
    ]


def test_untagging_fires_remove_artifact_tag_and_a_missing_tag_is_404(acme):
    team, client, _ = acme
    path = base(team) + "projects/training/artifacts/classifier/versions/v0/tags/"
    client.post(path, {"tag": "reviewed"}, format="json")

    removed = client.delete(path + "reviewed/")
    missing = client.delete(path + "reviewed/")

    assert removed.status_code == 204
    assert only("REMOVE_ARTIFACT_TAG").context["tag"] == "reviewed"
    assert missing.status_code == 404 and list(missing.json()["errors"]) == ["tag"]
    assert not ArtifactTag.objects.exists()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"tag": "two words"}, "Invalid tag"),
        ({"tag": ""}, "blank"),
        ({"tag": "x" * 65}, "64"),
        ({"tag": ["reviewed"]}, "Not a valid string"),
        ({}, "required"),
    ],
)
def test_a_bad_tag_is_refused_naming_the_field_and_nothing_changes(acme, body, reason):
    team, client, _ = acme
    before = f.registry_snapshot()

    response = client.post(base(team) + "projects/training/artifacts/classifier/versions/v0/tags/", body, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["tag"] and reason in response.json()["errors"]["tag"][0]
    assert f.registry_snapshot() == before


def test_a_pending_version_is_not_tagged(acme):
    team, client, admin = acme
    services.artifact_version_create(
        project=f.make_project(team), collection_name="classifier", type="model", user=admin, state="pending"
    )
    before = f.registry_snapshot()

    response = client.post(
        base(team) + "projects/training/artifacts/classifier/versions/v2/tags/", {"tag": "x"}, format="json"
    )

    assert response.status_code == 409 and "commit it before tagging" in response.json()["errors"]["tag"][0]
    assert f.registry_snapshot() == before


def test_a_version_holds_at_most_the_tag_limit(acme):
    team, client, _ = acme
    version = Event.objects.get(type="LINK_ARTIFACT", context__version="v0").artifact_version
    ArtifactTag.objects.bulk_create(
        ArtifactTag(artifact_version=version, name=f"t{i}") for i in range(services.MAX_TAGS_PER_VERSION)
    )
    response = client.post(
        base(team) + "projects/training/artifacts/classifier/versions/v0/tags/", {"tag": "one-more"}, format="json"
    )
    assert response.status_code == 409 and "100 tags" in response.json()["errors"]["tag"][0]


def test_a_viewer_may_not_tag(acme):
    team, _, _ = acme
    viewer = f.add_member(team, role=Role.VIEWER)
    response = f.api_client(viewer).post(
        base(team) + "projects/training/artifacts/classifier/versions/v0/tags/", {"tag": "x"}, format="json"
    )
    assert response.status_code == 403 and not ArtifactTag.objects.exists()


# --- Which automations they reach -----------------------------------------------------------------------


def test_each_type_offers_its_own_variables_to_templates():
    assert "tag" in rendering.template_variables({"t": "${tag}"})
    for name, own in [
        ("UNLINK_ARTIFACT", set()),
        ("REMOVE_ARTIFACT_ALIAS", {"alias"}),
        ("ADD_ARTIFACT_TAG", {"tag"}),
        ("REMOVE_ARTIFACT_TAG", {"tag"}),
    ]:
        assert {v.name for v in event_type_get(name).extra_variables} == own
        for other in {"alias", "tag"} - own:
            with pytest.raises(rendering.TemplateError, match=other):
                rendering.template_validate({"x": f"${{{other}}}"}, event_type=name, secret_names=())


@pytest.mark.parametrize(
    ("event_type", "scope", "error_field"),
    [
        ("UNLINK_ARTIFACT", {"project": "training"}, "project"),
        ("REMOVE_ARTIFACT_ALIAS", {"collection": "classifier", "project": "training"}, "project"),
        ("ADD_ARTIFACT_TAG", {"registered_model": "classifier"}, "registered_model"),
        ("REMOVE_ARTIFACT_TAG", {"registered_model": "classifier"}, "registered_model"),
    ],
)
def test_each_type_refuses_the_scope_of_the_other_kind(acme, event_type, scope, error_field):
    team, client, admin = acme
    webhook = automations.webhook_create(team=team, user=admin, name="hook", url=f.PARKED_URL)
    response = client.post(
        base(team) + "automations/",
        {"name": "x", "event_type": event_type, "action_type": "WEBHOOK", "webhook": webhook.pk,
         "payload": {"a": 1}, **scope},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400 and list(response.json()["errors"]) == [error_field], response.content


def test_automations_reach_the_events_of_their_type_and_scope(acme):
    team, client, admin = acme
    f.make_artifact_version(team, project="evaluation", collection="report")
    webhook = automations.webhook_create(team=team, user=admin, name="hook", url=f.PARKED_URL)
    for name, event_type, scope, payload in [
        ("unlinked", "UNLINK_ARTIFACT", {"registered_model": "classifier"}, {"v": "${artifact_version_string}"}),
        ("unaliased", "REMOVE_ARTIFACT_ALIAS", {}, {"alias": "${alias}"}),
        ("tagged-training", "ADD_ARTIFACT_TAG", {"project": "training"}, {"tag": "${tag}"}),
        ("tagged-report", "ADD_ARTIFACT_TAG", {"project": "evaluation", "collection": "report"}, {"tag": "${tag}"}),
        ("untagged", "REMOVE_ARTIFACT_TAG", {}, {"tag": "${tag}", "v": "${artifact_version_string}"}),
    ]:
        automations.automation_create(
            team=team, user=admin, name=name, event_type=event_type, action_type="WEBHOOK", webhook=webhook.pk,
            payload=payload, **scope,
        )  # fmt: skip
    training = base(team) + "projects/training/artifacts/classifier/versions/v1/tags/"
    changes = [
        client.post(training, {"tag": "reviewed"}, format="json"),
        client.delete(training + "reviewed/"),
        client.post(
            base(team) + "projects/evaluation/artifacts/report/versions/v0/tags/", {"tag": "final"}, format="json"
        ),
        client.delete(base(team) + "registered-models/classifier/aliases/production/"),
        client.delete(base(team) + "registered-models/classifier/versions/v0/"),
    ]
    assert [c.status_code for c in changes] == [201, 204, 201, 204, 204]
    for event in Event.objects.filter(dispatched_at__isnull=True):
        assert outbox.event_dispatch(event_id=event.pk)

    fired = sorted(
        (
            d.automation_name,
            d.event.type,
            json.loads(rendering.render(d.payload_template, context=d.event.context, secrets={})),
        )
        for d in Delivery.objects.select_related("event")
    )
    assert fired == [
        ("tagged-report", "ADD_ARTIFACT_TAG", {"tag": "final"}),
        ("tagged-training", "ADD_ARTIFACT_TAG", {"tag": "reviewed"}),
        ("unaliased", "REMOVE_ARTIFACT_ALIAS", {"alias": "production"}),
        ("unlinked", "UNLINK_ARTIFACT", {"v": "acme/model-registry/classifier:v0"}),
        ("untagged", "REMOVE_ARTIFACT_TAG", {"tag": "reviewed", "v": "acme/training/classifier:v1"}),
    ]
