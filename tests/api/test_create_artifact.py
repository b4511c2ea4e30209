"""CREATE_ARTIFACT: committing an artifact version fires it, and automations watch a project or one collection."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from automations import services as automations
from automations.models import Delivery
from automations.rendering import render
from core.roles import Role
from launch import services as launch
from launch.models import RunQueueItem
from registry import outbox
from registry.models import Event
from registry.services import registered_model_create
from tests.factories import add_member, api_client, make_artifact_version, make_project, make_team, make_user

pytestmark = pytest.mark.django_db

PAYLOAD = {
    "what": "${event_type}",
    "ref": "${artifact_version_string}",
    "collection": "${artifact_collection_name}",
    "project": "${project_name}",
    "digest": "${artifact_digest}",
    "files": "${artifact_files_url}",
    "acc": "${artifact_metadata.acc}",
}


@pytest.fixture
def team():
    return make_team("vision")


@pytest.fixture
def hook(team, settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    return automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/hook", user=None)


def watch(team, hook, name: str, **scope) -> object:
    return automations.automation_create(
        team=team,
        user=None,
        name=name,
        event_type="CREATE_ARTIFACT",
        action_type="WEBHOOK",
        webhook=hook.pk,
        payload=PAYLOAD,
        **scope,
    )


def fired_for(event: Event) -> set[str]:
    outbox.event_dispatch(event_id=event.pk)
    return set(Delivery.objects.filter(event=event).values_list("automation__name", flat=True))


def test_logging_a_version_through_the_api_commits_it_and_fires_create_artifact_once(team):
    admin = make_user()
    add_member(team, admin, Role.ADMIN)
    make_project(team, "training")

    response = api_client(admin).post(
        "/api/v1/teams/vision/projects/training/artifacts/detector/versions/",
        {"type": "model", "metadata": {"acc": 0.91}},
        format="json",
    )

    assert response.status_code == 201, response.content
    event = Event.objects.get()
    assert event.type == "CREATE_ARTIFACT"
    assert event.artifact_version.reference == "vision/training/detector:v0"
    assert event.artifact_version.state == "committed" and event.artifact_version.committed_at is not None
    assert event.registered_model is None and event.model_version is None
    assert event.author == admin
    assert event.context["artifact_version_string"] == "vision/training/detector:v0"
    assert event.context["artifact_collection_name"] == "detector"
    assert event.context["project_name"] == "training"
    assert event.context["artifact_files_url"] == (
        f"{settings.PUBLIC_BASE_URL}/api/v1/teams/vision/projects/training/artifacts/detector/versions/v0/"
    )


def test_a_project_automation_fires_for_every_collection_of_its_project_and_no_other(team, hook):
    watch(team, hook, "whole team")
    make_project(team, "training")
    watch(team, hook, "training project", project="training")
    make_project(team, "eval")

    make_artifact_version(team, project="training", collection="detector")
    watch(team, hook, "detector only", project="training", collection="detector")
    Event.objects.all().delete()  # the collection exists once its first version does: start again with it
    make_artifact_version(team, project="training", collection="detector")
    make_artifact_version(team, project="training", collection="segmenter")
    make_artifact_version(team, project="eval", collection="detector")
    by_ref = {e.artifact_version.reference: e for e in Event.objects.filter(type="CREATE_ARTIFACT")}

    assert fired_for(by_ref["vision/training/detector:v1"]) == {"whole team", "training project", "detector only"}
    assert fired_for(by_ref["vision/training/segmenter:v0"]) == {"whole team", "training project"}
    assert fired_for(by_ref["vision/eval/detector:v0"]) == {"whole team"}


def test_another_teams_artifacts_fire_none_of_this_teams_automations(team, hook):
    watch(team, hook, "whole team")
    make_artifact_version(make_team("other"), project="training", collection="detector")
    assert fired_for(Event.objects.get(type="CREATE_ARTIFACT")) == set()


def test_a_create_artifact_payload_renders_as_for_a_project_scoped_automation(team, hook):
    watch(team, hook, "training project", project=make_project(team, "training").name)
    version = make_artifact_version(team, project="training", collection="detector", metadata={"acc": 0.91})
    event = Event.objects.get(type="CREATE_ARTIFACT")
    outbox.event_dispatch(event_id=event.pk)
    delivery = Delivery.objects.get(event=event)

    assert json.loads(render(delivery.payload_template, context=event.context, secrets={})) == {
        "what": "CREATE_ARTIFACT",
        "ref": "vision/training/detector:v0",
        "collection": "detector",
        "project": "training",
        "digest": version.digest,
        "files": f"{settings.PUBLIC_BASE_URL}/api/v1/teams/vision/projects/training/artifacts/detector/versions/v0/",
        "acc": 0.91,
    }


def test_a_launch_automation_on_create_artifact_gets_the_files_url_in_its_config(team):
    project = make_project(team, "training")
    job = launch.job_create(team=team, name="evaluate", project="training")
    job_version = launch.job_version_create(job=job, entrypoint=["python", "eval.py"], default_config={"n": 1})
    queue = launch.run_queue_create(team=team, name="cpu", resource_type="local-process")
    automations.automation_create(
        team=team,
        user=None,
        name="evaluate new versions",
        event_type="CREATE_ARTIFACT",
        action_type="LAUNCH_JOB",
        project=project.name,
        job=job.name,
        job_version=job_version.version,
        overrides={"files": "${artifact_files_url}", "model": "${artifact_version_string}"},
        destination_project=project.name,
        queue=queue.name,
    )
    make_artifact_version(team, project="training", collection="detector")
    outbox.event_dispatch(event_id=Event.objects.get(type="CREATE_ARTIFACT").pk)

    item = RunQueueItem.objects.get()
    assert item.config == {
        "n": 1,
        "files": f"{settings.PUBLIC_BASE_URL}/api/v1/teams/vision/projects/training/artifacts/detector/versions/v0/",
        "model": "vision/training/detector:v0",
    }


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"event_type": "CREATE_ARTIFACT", "registered_model": "classifier"}, "registered_model", "not a registered"),
        ({"event_type": "LINK_ARTIFACT", "project": "training"}, "project", "watch a registered model"),
        (
            {"event_type": "ADD_ARTIFACT_ALIAS", "project": "training", "collection": "detector"},
            "project",
            "registered",
        ),
        ({"event_type": "CREATE_ARTIFACT", "collection": "detector"}, "project", "Name the project"),
        ({"event_type": "CREATE_ARTIFACT", "project": "nope"}, "project", "No project 'nope'"),
        ({"event_type": "CREATE_ARTIFACT", "project": "training", "collection": "nope"}, "collection", "'nope'"),
        ({"event_type": "CREATE_ARTIFACT", "project": "model-registry"}, "project", "holds registered models"),
        ({"event_type": "CREATE_ARTIFACT", "alias_regex": "prod"}, "alias_regex", "ADD_ARTIFACT_ALIAS"),
    ],
)
def test_a_scope_that_does_not_fit_the_event_type_is_refused_naming_the_field(team, hook, body, field, message):
    admin = make_user()
    add_member(team, admin, Role.ADMIN)
    make_project(team, "training")
    make_artifact_version(team, project="training", collection="detector")
    registered_model_create(team=team, name="classifier")

    response = api_client(admin).post(
        "/api/v1/teams/vision/automations/",
        {"name": "scoped", "action_type": "WEBHOOK", "webhook": hook.pk, "payload": {"a": "b"}, **body},
        format="json",
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [field], response.json()
    assert message in response.json()["detail"]
    assert not team.automations.exists()


def test_the_api_shows_the_scope_and_the_per_model_listing_leaves_project_automations_out(team, hook):
    admin = make_user()
    add_member(team, admin, Role.ADMIN)
    make_project(team, "training")
    make_artifact_version(team, project="training", collection="detector")
    watch(team, hook, "detector only", project="training", collection="detector")
    client = api_client(admin)

    listed = client.get("/api/v1/teams/vision/automations/").json()["results"]
    assert [(a["name"], a["project"], a["collection"], a["registered_model"]) for a in listed] == [
        ("detector only", "training", "detector", None)
    ]
    assert client.get("/api/v1/teams/vision/automations/?registered_model=classifier").json()["results"] == []
