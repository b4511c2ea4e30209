"""Creating automations in the admin, in the seed's order, with only the team's own objects to choose from."""

from __future__ import annotations

import pytest
from django.urls import reverse

from automations import services as automations
from automations.models import Automation
from launch import services as launch
from tests.factories import add_member, make_project, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db

ADD = "/admin/automations/automation/add/"


@pytest.fixture
def world(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user("ada", staff=True)
    team = make_team("vision", admin=admin)
    other = make_team("audio", admin=make_user())
    for each in (team, other):
        make_registered_model(each, name=f"{each.name}-classifier")
        make_project(each, "evaluation")
        launch.run_queue_create(team=each, name=f"{each.name}-gpu")
        job = launch.job_create(team=each, name=f"{each.name}-eval", project="evaluation")
        launch.job_version_create(job=job, entrypoint=["python", "eval.py"])
        launch.job_version_create(job=job, entrypoint=["python", "eval.py", "--v1"])
        automations.webhook_create(team=each, name=f"{each.name}-hook", url="http://127.0.0.1:9/", user=None)
    return admin, team, other


def test_the_add_page_goes_straight_to_the_only_team_and_offers_only_its_objects(client, world):
    admin, team, _ = world
    client.force_login(admin)
    response = client.get(ADD)
    assert response.status_code == 302 and response.url.endswith(f"?team={team.pk}")
    page = client.get(response.url).content.decode()
    assert "Add automation for vision" in page
    for name in ("vision-classifier", "vision-hook", "vision-eval", "vision-gpu", "GitHub repository dispatch"):
        assert name in page
    for name in ("audio-classifier", "audio-hook", "audio-eval", "audio-gpu"):
        assert name not in page
    # the seed's order: event, then action, then the action's settings, then the name
    positions = [page.index(f'name="{field}"') for field in ("event_type", "action_type", "webhook", "payload", "name")]
    assert positions == sorted(positions)


def test_a_user_admin_of_several_teams_chooses_the_team_first(client, world):
    admin, team, other = world
    add_member(other, admin, "admin")
    client.force_login(admin)
    page = client.get(ADD).content.decode()
    assert "choose the team" in page and f"team={team.pk}" in page and f"team={other.pk}" in page


def test_a_webhook_automation_from_a_preset(client, world):
    admin, team, _ = world
    client.force_login(admin)
    payload = '{"text": "Registry event: ${event_type} by ${event_author}"}'
    response = client.post(
        f"{ADD}?team={team.pk}",
        {
            "team": team.pk, "event_type": "ADD_ARTIFACT_ALIAS", "registered_model": team.registered_models.get().pk,
            "alias_regex": "prod.*", "action_type": "WEBHOOK", "webhook": team.webhooks.get().pk,
            "preset": "slack", "payload": payload, "name": "notify", "description": "to Slack", "enabled": "on",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    automation = Automation.objects.get(name="notify")
    assert automation.team == team and automation.alias_regex == "prod.*" and automation.created_by == admin
    assert automation.payload == {"text": "Registry event: ${event_type} by ${event_author}"}


def test_a_filter_is_saved_shown_again_on_the_change_page_and_in_the_models_section(client, world):
    admin, team, _ = world
    client.force_login(admin)
    model = team.registered_models.get()
    response = client.post(
        f"{ADD}?team={team.pk}",
        {
            "team": team.pk, "event_type": "ADD_ARTIFACT_ALIAS", "registered_model": model.pk, "alias_regex": "^prod",
            "filter": '{"artifact_metadata.accuracy": {"$gte": 0.9}}', "action_type": "WEBHOOK",
            "webhook": team.webhooks.get().pk, "payload": '{"a": 1}', "name": "accurate", "enabled": "on",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    automation = Automation.objects.get(name="accurate")
    assert automation.filter == {"artifact_metadata.accuracy": {"$gte": 0.9}} and automation.alias_regex == "^prod"

    change = client.get(reverse("admin:automations_automation_change", args=[automation.pk])).content.decode()
    assert 'name="filter"' in change and "artifact_metadata.accuracy" in change and "$regex" in change  # the help
    section = client.get(reverse("admin:registry_registeredmodel_change", args=[model.pk])).content.decode()
    assert "<code>^prod</code> and <code" in section and "artifact_metadata.accuracy" in section


def test_an_empty_filter_field_saves_no_filter(client, world):
    admin, team, _ = world
    client.force_login(admin)
    response = client.post(
        f"{ADD}?team={team.pk}",
        {
            "team": team.pk, "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK", "filter": "",
            "webhook": team.webhooks.get().pk, "payload": '{"a": 1}', "name": "any", "enabled": "on",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Automation.objects.get(name="any").filter == {}


def test_a_launch_automation_and_the_registered_model_section_shows_its_queue(client, world):
    admin, team, _ = world
    client.force_login(admin)
    model = team.registered_models.get()
    job = team.jobs.get()
    response = client.post(
        f"{ADD}?team={team.pk}",
        {
            "team": team.pk, "event_type": "LINK_ARTIFACT", "registered_model": model.pk, "action_type": "LAUNCH_JOB",
            "job": job.pk, "job_version": job.versions.get(index=1).pk,
            "overrides": '{"model": "${artifact_version_string}"}',
            "destination_project": team.projects.get(name="evaluation").pk, "queue": team.run_queues.get().pk,
            "name": "evaluate", "enabled": "on",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    automation = Automation.objects.get(name="evaluate")
    assert automation.action_name == "vision-eval:v1" and automation.queue.name == "vision-gpu"

    page = client.get(reverse("admin:registry_registeredmodel_change", args=[model.pk])).content.decode()
    section = page[page.index('id="automations-group"') :]
    launch_label = automation.get_action_type_display()
    for text in ("evaluate", "A new version is linked", launch_label, "vision-eval:v1", "vision-gpu", "Delete"):
        assert text in section, text


def test_deleting_from_the_registered_model_page_returns_there(client, world):
    admin, team, _ = world
    model = team.registered_models.get()
    automation = automations.automation_create(
        team=team, user=admin, name="bye", event_type="LINK_ARTIFACT", registered_model=model.name,
        action_type="WEBHOOK", webhook=team.webhooks.get().pk, payload={"a": 1},
    )  # fmt: skip
    client.force_login(admin)
    back = reverse("admin:registry_registeredmodel_change", args=[model.pk])
    url = reverse("admin:automations_automation_delete", args=[automation.pk]) + f"?next={back}"
    assert client.get(url).status_code == 200
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302 and response.url == back
    assert not Automation.objects.filter(pk=automation.pk).exists()
    # an address elsewhere is not followed
    again = automations.automation_create(
        team=team, user=admin, name="again", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        webhook=team.webhooks.get().pk, payload={"a": 1},
    )  # fmt: skip
    response = client.post(
        reverse("admin:automations_automation_delete", args=[again.pk]) + "?next=https://evil.example/", {"post": "yes"}
    )
    assert response.url == reverse("admin:automations_automation_changelist")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"payload": '{"x": "${nope}"}'}, "payload", "nope"),
        ({"action_type": "LAUNCH_JOB", "overrides": '{"m": 1}'}, "job_version", "needs a job version"),
        ({"alias_regex": "([", "event_type": "ADD_ARTIFACT_ALIAS"}, "alias_regex", ""),
        (
            {"filter": '{"artifact_metadata.acc": {"$gte": "high"}}'},
            "filter",
            "artifact_metadata.acc.$gte: expects a number, got",
        ),
        ({"filter": '{"alias": "prod"}'}, "filter", "alias: LINK_ARTIFACT events have no alias"),
        ({"filter": '{"alias": '}, "filter", "Enter a valid JSON"),
        ({"filter": "[1]"}, "filter", "A filter must be a JSON object, got a list."),
        ({"filter": '{"artifact_metadata.a": NaN}'}, "filter", "numbers must be finite"),
        ({"filter": '{"artifact_metadata.a": ' + "9" * 5000 + "}"}, "filter", "Enter a valid JSON"),
        ({"filter": "[" * 5000 + "]" * 5000}, "filter", "Enter a valid JSON"),
        ({"name": ""}, "name", "required"),
    ],
)
def test_refusals_show_next_to_their_field(client, world, changes, field, words):
    admin, team, _ = world
    client.force_login(admin)
    data = {
        "team": team.pk, "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK", "webhook": team.webhooks.get().pk,
        "payload": '{"a": 1}', "name": "x", "enabled": "on", **changes,
    }  # fmt: skip
    response = client.post(f"{ADD}?team={team.pk}", data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors and words in str(errors[field]), errors
    assert not Automation.objects.exists()


def test_a_forged_choice_of_another_team_is_refused(client, world):
    admin, team, other = world
    client.force_login(admin)
    response = client.post(
        f"{ADD}?team={team.pk}",
        {
            "team": team.pk, "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK",
            "webhook": other.webhooks.get().pk, "payload": "{}", "name": "x",
        },
    )  # fmt: skip
    assert "webhook" in response.context["adminform"].form.errors
    response = client.post(
        f"{ADD}?team={other.pk}",
        {
            "team": other.pk, "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK",
            "webhook": other.webhooks.get().pk, "payload": "{}", "name": "x",
        },
    )  # fmt: skip
    # The team is a hidden field: its refusal is said above the form.
    errors = response.context["adminform"].form.non_field_errors()
    assert [
        error for error in errors if error.startswith("Team: Select a valid choice")
    ] and b"errornote" in response.content
    assert not Automation.objects.exists()


def test_a_version_of_another_job_is_refused(client, world):
    admin, team, _ = world
    second = launch.job_create(team=team, name="second", project="evaluation")
    foreign_version = launch.job_version_create(job=second, entrypoint=["true"])
    client.force_login(admin)
    response = client.post(
        f"{ADD}?team={team.pk}",
        {
            "team": team.pk, "event_type": "LINK_ARTIFACT", "action_type": "LAUNCH_JOB",
            "job": team.jobs.get(name="vision-eval").pk, "job_version": foreign_version.pk, "overrides": "{}",
            "destination_project": team.projects.get(name="evaluation").pk, "queue": team.run_queues.get().pk,
            "name": "x",
        },
    )  # fmt: skip
    assert "is not a version of job vision-eval" in str(response.context["adminform"].form.errors["job_version"])
