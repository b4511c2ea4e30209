"""A change's answer names the events it fired, and those ids find what the events triggered.

Linking answers LINK_ARTIFACT then one ADD_ARTIFACT_ALIAS per alias; adding an alias answers its event, or none when
the version already has it; logging or committing an artifact version answers its CREATE_ARTIFACT, or none. Each id
answered is an Event row, and ``deliveries/?event=`` and ``launch/items/?event=`` list what that event enqueued.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
from django.db import transaction

from automations import services as automations
from launch import services as launch
from registry import outbox, services
from registry.models import Event
from tests import factories as f

pytestmark = pytest.mark.django_db

WEIGHTS = b"weights of a model"
LINKABLE = "acme/training/classifier:v1"


@pytest.fixture
def acme(settings):
    """Team acme: model 'classifier' (v0 linked, with 'production'), training/classifier v1 not linked."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    f.link(f.make_registered_model(team, "classifier"), user=admin, aliases=["production"])
    f.make_artifact_version(team)
    return team, f.api_client(admin), admin


def base(team) -> str:
    return f"/api/v1/teams/{team.name}/"


def recorded(*pks) -> list[dict]:
    """The events with these ids as the answers name them, read from the database."""
    rows = {e.pk: e for e in Event.objects.filter(pk__in=pks)}
    assert len(rows) == len(pks), "every id answered is an Event row"
    return [
        {
            "id": str(pk),
            "type": rows[pk].type,
            "alias": rows[pk].alias,
            "tag": rows[pk].context.get("tag", ""),
            "manual": rows[pk].manual_for is not None,
        }
        for pk in pks
    ]


def fired(answer) -> list[str]:
    return [event["id"] for event in answer.json()["events"]]


# --- Links and aliases ----------------------------------------------------------------------------------


def test_a_link_answers_its_link_event_then_one_alias_event_per_alias_in_order(acme):
    team, client, _ = acme
    before = set(Event.objects.values_list("pk", flat=True))

    answer = client.post(
        base(team) + "registered-models/classifier/versions/",
        {"artifact": LINKABLE, "aliases": ["staging", "candidate"]},
        format="json",
    )

    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert [(e["type"], e["alias"]) for e in body["events"]] == [
        ("LINK_ARTIFACT", ""),
        ("ADD_ARTIFACT_ALIAS", "staging"),
        ("ADD_ARTIFACT_ALIAS", "candidate"),
    ]
    new = Event.objects.exclude(pk__in=before).order_by("created_at")
    assert body["events"] == recorded(*new.values_list("pk", flat=True))
    assert {e.model_version.version for e in new} == {"v1"}
    # The fields answered before stay as they were.
    assert body["version"] == "v1" and body["aliases"] == ["candidate", "latest", "staging"]
    assert body["artifact"] == LINKABLE and body["registered_model"] == "classifier"


def test_a_link_without_aliases_answers_only_its_link_event(acme):
    team, client, _ = acme

    answer = client.post(
        base(team) + "registered-models/classifier/versions/",
        {"artifact": LINKABLE},
        format="json",
    )

    assert answer.status_code == 201, answer.content
    (event,) = answer.json()["events"]  # 'latest' moved too, and fires nothing of its own
    assert [event] == recorded(uuid.UUID(event["id"])) and event["type"] == "LINK_ARTIFACT"


def test_a_refused_link_answers_an_error_and_records_no_event(acme):
    team, client, _ = acme
    before = Event.objects.count()

    answer = client.post(
        base(team) + "registered-models/classifier/versions/",
        {"artifact": "acme/training/classifier:v0", "aliases": ["staging"]},  # v0 is linked already
        format="json",
    )

    assert answer.status_code == 409 and "events" not in answer.json()
    assert Event.objects.count() == before


def test_adding_an_alias_answers_its_event_and_adding_it_again_answers_none(acme):
    team, client, _ = acme
    route = base(team) + "registered-models/classifier/versions/v0/aliases/"

    added = client.post(route, {"alias": "staging"}, format="json")
    again = client.post(route, {"alias": "staging"}, format="json")

    assert added.status_code == 201, added.content
    (event,) = added.json()["events"]
    assert [event] == recorded(uuid.UUID(event["id"]))
    assert (event["type"], event["alias"]) == ("ADD_ARTIFACT_ALIAS", "staging")
    assert again.status_code == 200 and again.json()["events"] == []
    assert again.json()["aliases"] == ["latest", "production", "staging"]
    assert Event.objects.filter(alias="staging").count() == 1


def test_moving_an_alias_to_another_version_answers_one_event_naming_the_new_version(acme):
    team, client, _ = acme
    client.post(
        base(team) + "registered-models/classifier/versions/",
        {"artifact": LINKABLE},
        format="json",
    )

    moved = client.post(
        base(team) + "registered-models/classifier/versions/v1/aliases/", {"alias": "production"}, format="json"
    )

    assert moved.status_code == 201, moved.content
    (event_id,) = fired(moved)
    event = Event.objects.get(pk=event_id)
    assert (event.type, event.alias, event.model_version.version) == ("ADD_ARTIFACT_ALIAS", "production", "v1")


def test_an_alias_named_by_an_alias_answers_the_event_for_that_version(acme):
    team, client, _ = acme

    answer = client.post(
        base(team) + "registered-models/classifier/versions/production/aliases/", {"alias": "gold"}, format="json"
    )

    assert answer.status_code == 201, answer.content
    (event_id,) = fired(answer)
    assert Event.objects.get(pk=event_id).model_version.version == "v0"


# --- Artifact versions ----------------------------------------------------------------------------------


def test_logging_a_version_without_files_answers_its_create_artifact_event(acme):
    team, client, _ = acme

    answer = client.post(
        base(team) + "projects/training/artifacts/classifier/versions/", {"type": "model"}, format="json"
    )

    assert answer.status_code == 201, answer.content
    (event,) = answer.json()["events"]
    assert [event] == recorded(uuid.UUID(event["id"])) and event["type"] == "CREATE_ARTIFACT"
    assert Event.objects.get(pk=event["id"]).artifact_version.version == answer.json()["version"] == "v2"
    assert answer.json()["state"] == "committed" and answer.json()["files"] == []


def test_a_pending_version_answers_no_event_until_its_commit_answers_create_artifact_once(acme):
    team, client, _ = acme
    files = [{"path": "model.bin", "size": len(WEIGHTS), "sha256": hashlib.sha256(WEIGHTS).hexdigest()}]
    versions = base(team) + "projects/training/artifacts/classifier/versions/"

    logged = client.post(versions, {"type": "model", "files": files}, format="json")
    assert logged.status_code == 201, logged.content
    assert logged.json()["state"] == "pending" and logged.json()["events"] == []
    upload = logged.json()["missing"][0]["upload_url"]
    assert client.put(upload, WEIGHTS, content_type="application/octet-stream").status_code == 201
    commit = versions + "v2/commit/"

    committed = client.post(commit)
    again = client.post(commit)

    assert committed.status_code == 200, committed.content
    (event,) = committed.json()["events"]
    assert [event] == recorded(uuid.UUID(event["id"])) and event["type"] == "CREATE_ARTIFACT"
    assert again.status_code == 200 and again.json()["events"] == []
    assert Event.objects.filter(type="CREATE_ARTIFACT", artifact_version__index=2).count() == 1
    # Reading the version is no change: its answer has no events field.
    assert "events" not in client.get(versions + "v2/").json()


# --- What an event triggered: ?event= -------------------------------------------------------------------


def dispatch(*event_ids: str) -> None:
    """What the events worker does with each event after commit."""
    for event_id in event_ids:
        assert outbox.event_dispatch(event_id=event_id)


def test_deliveries_filtered_by_an_answered_event_are_exactly_those_it_fired(acme):
    team, client, admin = acme
    for name, event_type, regex in (
        ("on-link", "LINK_ARTIFACT", None),
        ("on-staging", "ADD_ARTIFACT_ALIAS", "staging"),
    ):
        webhook = automations.webhook_create(team=team, user=admin, name=name, url=f.PARKED_URL)
        automations.automation_create(
            team=team, user=admin, name=name, event_type=event_type, alias_regex=regex, action_type="WEBHOOK",
            webhook=webhook.pk, payload={"v": "${artifact_version_string}"},
        )  # fmt: skip
    link = client.post(
        base(team) + "registered-models/classifier/versions/",
        {"artifact": LINKABLE, "aliases": ["staging", "candidate"]},
        format="json",
    )
    link_id, staging_id, candidate_id = fired(link)
    dispatch(link_id, staging_id, candidate_id)

    def listed(event_id: str) -> list[str]:
        answer = client.get(base(team) + "deliveries/", {"event": event_id})
        assert answer.status_code == 200, answer.content
        return [d["automation_name"] for d in answer.json()["results"]]

    assert listed(link_id) == ["on-link"]
    assert listed(staging_id) == ["on-staging"]
    assert listed(candidate_id) == []
    assert listed(str(uuid.uuid4())) == []
    assert len(client.get(base(team) + "deliveries/").json()["results"]) == 2


def test_launch_items_filtered_by_an_answered_event_are_exactly_those_it_enqueued(acme):
    team, client, admin = acme
    f.make_project(team, "evaluation")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=["python", "eval.py"])
    for queue in ("cpu", "gpu"):
        launch.run_queue_create(team=team, name=queue)
    automation = automations.automation_create(
        team=team, user=admin, name="evaluate-staging", event_type="ADD_ARTIFACT_ALIAS", alias_regex="staging",
        action_type="LAUNCH_JOB", job="evaluate", job_version="v0", queue="gpu", destination_project="evaluation",
        overrides={"model": "${artifact_version_string}"},
    )  # fmt: skip
    by_hand = client.post(
        base(team) + "launch/queues/cpu/items/",
        {"job": "evaluate", "job_version": "v0", "overrides": {}, "destination_project": "evaluation"},
        format="json",
    )
    assert by_hand.status_code == 201, by_hand.content
    earlier = client.post(
        base(team) + "registered-models/classifier/versions/v0/aliases/", {"alias": "staging"}, format="json"
    )
    moved = client.post(
        base(team) + "registered-models/classifier/versions/",
        {"artifact": LINKABLE, "aliases": ["staging"]},
        format="json",
    )
    (earlier_id,) = fired(earlier)
    link_id, staging_id = fired(moved)
    dispatch(earlier_id, link_id, staging_id)

    def listed(route: str, **params) -> list[dict]:
        answer = client.get(base(team) + route, params)
        assert answer.status_code == 200, answer.content
        return answer.json()["results"]

    (item,) = listed("launch/items/", event=staging_id)
    assert item["event"] == staging_id and item["queue"] == "gpu"
    assert item["config"] == {"model": "acme/model-registry/classifier:staging"}
    assert item["event_context"]["version"] == "v1"
    assert [i["id"] for i in listed("launch/queues/gpu/items/", event=staging_id)] == [item["id"]]
    assert listed("launch/queues/cpu/items/", event=staging_id) == []
    assert listed("launch/items/", event=link_id) == []
    assert [i["event"] for i in listed("launch/items/", event=earlier_id)] == [earlier_id]
    # Unfiltered, the team-wide list holds every queue's items, oldest first.
    assert [i["queue"] for i in listed("launch/items/")] == ["cpu", "gpu", "gpu"]
    assert [i["event"] for i in listed("launch/items/", automation=automation.pk)] == [earlier_id, staging_id]
    assert len(listed("launch/items/", state="pending")) == 3 and listed("launch/items/", state="running") == []


@pytest.mark.parametrize("route", ["deliveries/", "launch/items/", "launch/queues/cpu/items/"])
@pytest.mark.parametrize("value", ["not-a-uuid", "12345", "\x00", "1" * 40])
def test_a_malformed_event_id_is_refused_naming_event(acme, route, value):
    team, client, _ = acme
    launch.run_queue_create(team=team, name="cpu")

    answer = client.get(base(team) + route, {"event": value})

    assert answer.status_code == 400, answer.content
    assert list(answer.json()["errors"]) == ["event"]


# --- events_recorded(): how a service's caller learns what its change fired ----------------------------


def link(model, artifacts, aliases=()):
    """Link the next of ``artifacts``, logged beforehand so that their CREATE_ARTIFACT events are not counted."""
    artifact = artifacts[model.versions.count()]
    return services.model_version_link(
        registered_model=model, artifact_version=artifact, user=None, aliases=list(aliases)
    )


def test_events_recorded_collects_a_blocks_events_in_order_and_nothing_outside_it(acme):
    team, _, _ = acme
    model = f.make_registered_model(team, "detector")
    artifacts = [f.make_artifact_version(team, collection="detector") for _ in range(3)]
    link(model, artifacts)  # outside any block

    with outbox.events_recorded() as events:
        version = link(model, artifacts, aliases=["staging"])

    link(model, artifacts)
    assert [(e.type, e.alias) for e in events] == [("LINK_ARTIFACT", ""), ("ADD_ARTIFACT_ALIAS", "staging")]
    assert {e.model_version_id for e in events} == {version.pk}


def test_an_inner_block_hands_its_events_to_the_outer_one_unless_it_raised(acme):
    team, _, _ = acme
    model = f.make_registered_model(team, "detector")
    artifacts = [f.make_artifact_version(team, collection="detector") for _ in range(3)]

    with outbox.events_recorded() as outer:
        with outbox.events_recorded() as inner:
            link(model, artifacts)
        with pytest.raises(RuntimeError), outbox.events_recorded() as failed, transaction.atomic():
            link(model, artifacts, aliases=["staging"])
            raise RuntimeError("the change is rolled back")
        link(model, artifacts, aliases=["candidate"])

    assert [e.type for e in inner] == ["LINK_ARTIFACT"]
    assert [e.type for e in failed] == ["LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS"]  # recorded, then rolled back
    assert [(e.type, e.alias) for e in outer] == [
        ("LINK_ARTIFACT", ""),
        ("LINK_ARTIFACT", ""),
        ("ADD_ARTIFACT_ALIAS", "candidate"),
    ]
    assert outer[0] is inner[0]
    assert set(Event.objects.filter(registered_model=model).values_list("pk", flat=True)) == {e.pk for e in outer}
