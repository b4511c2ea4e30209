"""The LAUNCH_JOB action: validated on save, one queue item per matching event with overrides rendered."""

from __future__ import annotations

import pytest

from automations import services
from launch import services as launch
from launch.models import RunQueueItem
from registry import outbox
from registry import services as registry_services
from registry.models import Event
from secrets_vault import services as vault
from tests.factories import api_client, link, make_project, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def launch_setup():
    admin = make_user()
    team = make_team(admin=admin)
    model = make_registered_model(team)
    project = make_project(team, "evaluation")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=["python", "eval.py"], default_config={"threshold": 0.9})
    launch.run_queue_create(team=team, name="cpu")
    return team, model, project, admin


def automation(team, admin, **changes):
    fields = {
        "name": "evaluate on staging", "event_type": "ADD_ARTIFACT_ALIAS", "alias_regex": "staging",
        "action_type": "LAUNCH_JOB", "job": "evaluate", "job_version": "v0", "queue": "cpu",
        "destination_project": "evaluation",
        "overrides": {"model": "${artifact_version_string}", "by": "${event_author}"},
    }  # fmt: skip
    return services.automation_create(team=team, user=admin, **{**fields, **changes})


def test_an_alias_enqueues_one_item_with_the_rendered_overrides_merged(launch_setup):
    team, model, project, admin = launch_setup
    created = automation(team, admin)
    version = link(model)
    registry_services.alias_add(model_version=version, name="staging", user=admin)
    registry_services.alias_add(model_version=version, name="production", user=admin)  # not matched

    for event in Event.objects.all():
        outbox.event_dispatch(event_id=event.pk)

    item = RunQueueItem.objects.get()
    assert item.config == {
        "threshold": 0.9,
        "model": f"{team.name}/model-registry/{model.name}:staging",
        "by": admin.username,
    }
    assert item.entrypoint == ["python", "eval.py"] and item.destination_project == project
    assert item.automation_id == created.pk and item.automation_name == created.name
    assert item.event.alias == "staging" and item.event_context["alias"] == "staging"


def test_deleting_the_automation_leaves_queued_items_alone(launch_setup):
    team, model, _, admin = launch_setup
    created = automation(team, admin)
    registry_services.alias_add(model_version=link(model), name="staging", user=admin)
    for event in Event.objects.all():
        outbox.event_dispatch(event_id=event.pk)
    services.automation_delete(automation=created)
    assert RunQueueItem.objects.get().state == "pending"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"job": "nope"}, "job"),
        ({"job_version": "v7"}, "job_version"),
        ({"queue": "gpu"}, "queue"),
        ({"destination_project": "nope"}, "destination_project"),
        ({"overrides": ["not", "an", "object"]}, "overrides"),
        ({"overrides": {"x": "${nope}"}}, "overrides"),
        ({"overrides": {"token": "${API_KEY}"}}, "overrides"),  # secrets would be stored in the item's config
        ({"queue": None}, "queue"),
    ],
)
def test_a_bad_launch_action_is_refused_naming_the_field(launch_setup, changes, field):
    team, _, _, admin = launch_setup
    vault.secret_create(team=team, name="API_KEY", value="k", user=admin)
    response = api_client(admin).post(
        f"/api/v1/teams/{team.name}/automations/",
        {
            "name": "x", "event_type": "ADD_ARTIFACT_ALIAS", "action_type": "LAUNCH_JOB", "job": "evaluate",
            "job_version": "v0", "queue": "cpu", "destination_project": "evaluation", **changes,
        },
        format="json",
    )  # fmt: skip
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()


def test_the_model_listing_shows_the_queue_for_launch_actions(launch_setup):
    team, model, _, admin = launch_setup
    automation(team, admin, registered_model=model.name)
    listing = api_client(admin).get(f"/api/v1/teams/{team.name}/automations/?registered_model={model.name}").json()
    (row,) = listing["results"]
    assert row["action_type"] == "LAUNCH_JOB" and row["queue"] == "cpu"
    assert row["action_name"] == "evaluate:v0" and row["job"] == "evaluate" and row["job_version"] == "v0"
