"""The admin does what the API does, through the same services and firing the same events: linking, aliases, job
versions, agents (token shown once), API tokens, redelivery, a registered model's automations, secrets' values.

Each flow is checked at its permission edges: who gets the button, who gets 403, what another team's user is offered,
and that refused input is a form error that writes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils.http import urlencode

from automations import services as automations
from automations.models import Automation, Delivery
from core.roles import Role
from launch import services as launch
from launch.models import Agent, Job, JobVersion
from registry import outbox, services
from registry.models import Alias, ApiToken, Event, ModelVersion, RegisteredModel, Team
from secrets_vault import crypto
from secrets_vault.models import Secret
from tests.factories import (
    add_member,
    api_client,
    link,
    make_artifact_version,
    make_project,
    make_registered_model,
    make_team,
    make_user,
    registry_snapshot,
)

pytestmark = pytest.mark.django_db


@dataclass
class Vision:
    """Team vision with one registered model (v0 production, v1) and users of every role; team audio beside it."""

    team: Team
    model: RegisteredModel
    admin: object
    member: object
    viewer: object
    other: Team
    other_model: RegisteredModel


@pytest.fixture
def vision(settings) -> Vision:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user("ada", staff=True)
    team = make_team("vision", admin=admin)
    member = add_member(team, make_user("max", staff=True), Role.MEMBER)
    viewer = add_member(team, make_user("vic", staff=True), Role.VIEWER)
    model = make_registered_model(team, "classifier")
    link(model, user=admin, aliases=["production"])
    link(model, user=admin)
    other = make_team("audio", admin=make_user("bella", staff=True))
    add_member(other, member, Role.MEMBER)  # max works in both teams
    other_model = make_registered_model(other, "speech")
    make_artifact_version(other, collection="speech-net")
    return Vision(team, model, admin, member, viewer, other, other_model)


def page_of(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def add_page(model, **params) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    return url + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")


def section(page: str, group: str) -> str:
    start = page.index(f'id="{group}-group"')
    return page[start : page.index("</fieldset>", start)]


def events(**filters) -> list[tuple]:
    return list(Event.objects.filter(**filters).order_by("created_at").values_list("type", "alias"))


def form_errors(response) -> dict:
    form = response.context["adminform"].form
    return {field: " ".join(errors) for field, errors in form.errors.items()}


# --- Linking an artifact version ------------------------------------------------------------------------


def test_a_member_links_an_artifact_version_from_the_registered_models_page(client, vision):
    v3 = [make_artifact_version(vision.team, collection="classifier") for _ in range(4)][-1]
    client.force_login(vision.member)
    page = client.get(page_of(vision.model)).content.decode()
    versions = section(page, "versions")
    link_url = add_page(ModelVersion, registered_model=vision.model.pk)
    assert "Link an artifact version" in versions and link_url in versions

    form_page = client.get(link_url)
    assert form_page.status_code == 200 and "Link an artifact version to classifier" in form_page.content.decode()
    offered = [label for value, label in form_page.context["adminform"].form.fields["artifact"].choices if value]
    # The team's versions not linked yet, by name; never another team's, never the registry's own project
    assert offered == ["training/classifier:v5", "training/classifier:v4", "training/classifier:v3",
                       "training/classifier:v2"]  # fmt: skip
    back = page_of(vision.model)
    response = client.post(
        f"{link_url}&next={back}",
        {"registered_model": vision.model.pk, "artifact": v3.pk, "aliases": "staging, candidate production"},
    )
    assert response.status_code == 302 and response.url == back
    linked = ModelVersion.objects.get(registered_model=vision.model, artifact_version=v3)
    assert linked.version == "v2" and linked.linked_by == vision.member
    assert sorted(linked.aliases.values_list("name", flat=True)) == ["candidate", "latest", "production", "staging"]
    # The same events as a link through the API, each once
    assert events(model_version=linked) == [
        ("LINK_ARTIFACT", ""), ("ADD_ARTIFACT_ALIAS", "staging"), ("ADD_ARTIFACT_ALIAS", "candidate"),
        ("ADD_ARTIFACT_ALIAS", "production"),
    ]  # fmt: skip
    page = client.get(back).content.decode()
    assert "training/classifier:v5" in section(page, "versions") and "was added successfully" in page


def test_a_link_made_in_the_admin_records_the_event_the_api_records(client, vision):
    by_api, by_admin = (make_artifact_version(vision.team, collection=name) for name in ("api-net", "admin-net"))
    response = api_client(vision.member).post(
        "/api/v1/teams/vision/registered-models/classifier/versions/",
        {"artifact": by_api.reference, "aliases": ["staging"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    client.force_login(vision.member)
    client.post(
        add_page(ModelVersion, registered_model=vision.model.pk),
        {"registered_model": vision.model.pk, "artifact": by_admin.pk, "aliases": "staging"},
    )

    def recorded(artifact):
        found = Event.objects.filter(model_version__artifact_version=artifact).order_by("created_at")
        return [(e.type, e.team_id, e.registered_model_id, e.author_id, e.alias, sorted(e.context)) for e in found]

    assert recorded(by_admin) == recorded(by_api) and len(recorded(by_admin)) == 2


@pytest.mark.parametrize(
    ("aliases", "field", "words"),
    [("prod uction!", "aliases", "Invalid alias 'uction!'"), ("latest", "aliases", "'latest' is maintained")],
)
def test_a_refused_link_is_a_form_error_and_writes_nothing(client, vision, aliases, field, words):
    artifact = make_artifact_version(vision.team, collection="classifier")
    client.force_login(vision.member)
    before = registry_snapshot()
    response = client.post(
        add_page(ModelVersion, registered_model=vision.model.pk),
        {"registered_model": vision.model.pk, "artifact": artifact.pk, "aliases": aliases},
    )
    assert response.status_code == 200
    assert words in form_errors(response)[field]
    assert registry_snapshot() == before


def test_another_teams_artifact_or_an_already_linked_one_is_not_offered_nor_accepted(client, vision):
    linked = vision.model.versions.get(index=0).artifact_version
    theirs = vision.other.projects.get(name="training").collections.get().versions.get()
    client.force_login(vision.member)
    before = registry_snapshot()
    for forged in (theirs, linked):
        response = client.post(
            add_page(ModelVersion, registered_model=vision.model.pk),
            {"registered_model": vision.model.pk, "artifact": forged.pk},
        )
        assert "Select a valid choice" in form_errors(response)["artifact"]
    assert registry_snapshot() == before


def test_a_viewer_gets_no_link_button_and_403(client, vision):
    artifact = make_artifact_version(vision.team, collection="classifier")
    client.force_login(vision.viewer)
    page = client.get(page_of(vision.model)).content.decode()
    assert "Link an artifact version" not in page and "Add an alias" not in page
    url = add_page(ModelVersion, registered_model=vision.model.pk)
    assert client.get(url).status_code == 403
    before = registry_snapshot()
    assert client.post(url, {"registered_model": vision.model.pk, "artifact": artifact.pk}).status_code == 403
    assert registry_snapshot() == before


def test_a_member_of_one_team_and_viewer_of_another_links_only_in_the_first(client, vision):
    add_member(vision.other, vision.viewer, Role.MEMBER)  # vic: viewer of vision, member of audio
    client.force_login(vision.viewer)
    chooser = client.get(add_page(ModelVersion))  # the only model vic may link to: straight there
    assert chooser.status_code == 302 and chooser.url.endswith(f"?registered_model={vision.other_model.pk}")
    artifact = make_artifact_version(vision.team, collection="classifier")
    before = registry_snapshot()
    response = client.post(
        add_page(ModelVersion, registered_model=vision.model.pk),
        {"registered_model": vision.model.pk, "artifact": artifact.pk},
    )
    assert "Registered model: Select a valid choice" in " ".join(response.context["adminform"].form.non_field_errors())
    assert registry_snapshot() == before


def test_the_link_page_without_a_model_asks_which_one(client, vision):
    client.force_login(vision.member)  # a member of both teams
    page = client.get(add_page(ModelVersion)).content.decode()
    assert "choose the registered model" in page
    for model in (vision.model, vision.other_model):
        assert f"?registered_model={model.pk}" in page


def test_the_link_page_says_when_no_artifact_version_is_left_to_link(client, vision):
    client.force_login(vision.member)
    page = client.get(add_page(ModelVersion, registered_model=vision.model.pk)).content.decode()
    assert "(none left: log an artifact version through the API first)" in page


# --- Aliases --------------------------------------------------------------------------------------------


def alias(vision: Vision, name: str) -> Alias:
    return Alias.objects.get(registered_model=vision.model, name=name)


def test_a_member_adds_an_alias_from_the_registered_models_page(client, vision):
    v1 = vision.model.versions.get(index=1)
    client.force_login(vision.member)
    page = client.get(page_of(vision.model)).content.decode()
    add_url = add_page(Alias, registered_model=vision.model.pk)
    assert add_url in section(page, "aliases")
    form = client.get(add_url).context["adminform"].form
    assert [label for value, label in form.fields["model_version"].choices if value] == [
        "v1 · training/classifier:v1 · latest",
        "v0 · training/classifier:v0 · production",
    ]
    response = client.post(add_url, {"registered_model": vision.model.pk, "model_version": v1.pk, "alias": "staging"})
    assert response.status_code == 302
    assert alias(vision, "staging").model_version == v1 and alias(vision, "staging").added_by == vision.member
    assert events(model_version=v1, alias="staging") == [("ADD_ARTIFACT_ALIAS", "staging")]


def test_moving_production_fires_one_alias_event_exactly_like_the_api(client, vision):
    v0, v1 = vision.model.versions.get(index=0), vision.model.versions.get(index=1)
    client.force_login(vision.member)
    back = page_of(vision.model)
    page = client.get(back).content.decode()
    move = f"{page_of(alias(vision, 'production'))}?{urlencode({'next': back})}"
    assert f'href="{move}">Move</a>' in section(page, "aliases")
    form = client.get(move).context["adminform"].form
    assert list(form.fields) == ["model_version"]  # the name stays; only the version changes

    response = client.post(move, {"model_version": v1.pk})
    assert response.status_code == 302 and response.url == back
    assert alias(vision, "production").model_version == v1
    assert events(model_version=v1, alias="production") == [("ADD_ARTIFACT_ALIAS", "production")]

    # The API moving it back records the same kind of event, with the same context
    response = api_client(vision.member).post(
        "/api/v1/teams/vision/registered-models/classifier/versions/v0/aliases/", {"alias": "production"}, format="json"
    )
    assert response.status_code == 201
    by_admin = Event.objects.get(model_version=v1, alias="production")
    by_api = Event.objects.filter(model_version=v0, alias="production").latest("created_at")
    assert by_admin.type == by_api.type and by_admin.author == by_api.author == vision.member
    assert sorted(by_admin.context) == sorted(by_api.context)


def test_moving_an_alias_to_the_version_that_has_it_changes_nothing(client, vision):
    v0 = vision.model.versions.get(index=0)
    client.force_login(vision.member)
    count = Event.objects.count()
    response = client.post(page_of(alias(vision, "production")), {"model_version": v0.pk}, follow=True)
    assert "already had the alias production" in response.content.decode()
    assert Event.objects.count() == count


def test_a_member_removes_an_alias(client, vision):
    client.force_login(vision.member)
    back = page_of(vision.model)
    url = reverse("admin:registry_alias_delete", args=[alias(vision, "production").pk]) + f"?next={back}"
    assert url.split("?")[0] in client.get(back).content.decode()
    assert client.get(url).status_code == 200
    count = Event.objects.count()
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302 and response.url == back
    assert not Alias.objects.filter(registered_model=vision.model, name="production").exists()
    # As through the API: removing an alias fires REMOVE_ARTIFACT_ALIAS, by whoever removed it.
    (removed,) = Event.objects.order_by("-created_at")[: Event.objects.count() - count]
    assert (removed.type, removed.alias, removed.author) == ("REMOVE_ARTIFACT_ALIAS", "production", vision.member)


@pytest.mark.parametrize(("name", "words"), [("no spaces", "Invalid alias"), ("latest", "maintained by the system"),
                                             ("v7", "would read as a version")])  # fmt: skip
def test_a_refused_alias_is_a_form_error_and_writes_nothing(client, vision, name, words):
    client.force_login(vision.member)
    before = registry_snapshot()
    response = client.post(
        add_page(Alias, registered_model=vision.model.pk),
        {"registered_model": vision.model.pk, "model_version": vision.model.versions.get(index=1).pk, "alias": name},
    )
    assert words in form_errors(response)["alias"]
    assert registry_snapshot() == before


def test_a_version_of_another_model_is_not_accepted_for_an_alias(client, vision):
    theirs = link(vision.other_model)
    client.force_login(vision.member)
    before = registry_snapshot()
    for url, data in (
        (add_page(Alias, registered_model=vision.model.pk),
         {"registered_model": vision.model.pk, "model_version": theirs.pk, "alias": "staging"}),
        (page_of(alias(vision, "production")), {"model_version": theirs.pk}),
    ):  # fmt: skip
        assert "Select a valid choice" in form_errors(client.post(url, data))["model_version"]
    assert registry_snapshot() == before


def test_latest_is_not_moved_or_removed_by_anyone(client, vision):
    root = make_user(superuser=True)
    latest = alias(vision, "latest")
    for user in (vision.member, root):
        client.force_login(user)
        page = client.get(page_of(vision.model)).content.decode()
        row = section(page, "aliases").split(">latest<")[1].split("</tr>")[0]
        assert "Move" not in row and "Remove" not in row
        assert client.get(page_of(latest)).status_code == 200  # viewed, not moved
        before = registry_snapshot()
        assert client.post(page_of(latest), {"model_version": vision.model.versions.get(index=0).pk}).status_code == 403
        assert client.post(reverse("admin:registry_alias_delete", args=[latest.pk]), {"post": "yes"}).status_code == 403
        assert registry_snapshot() == before


def test_a_viewer_cannot_add_move_or_remove_aliases(client, vision):
    production = alias(vision, "production")
    client.force_login(vision.viewer)
    view = client.get(page_of(production))
    assert view.status_code == 200 and "Move the alias" not in view.content.decode()
    page = client.get(page_of(vision.model)).content.decode()
    assert "production" in section(page, "aliases") and "Move" not in page and "Remove" not in page
    before = registry_snapshot()
    assert client.get(add_page(Alias, registered_model=vision.model.pk)).status_code == 403
    response = client.post(page_of(production), {"model_version": vision.model.versions.get(index=1).pk})
    assert response.status_code == 403
    assert client.post(reverse("admin:registry_alias_delete", args=[production.pk]), {"post": "yes"}).status_code == 403
    assert registry_snapshot() == before


# --- Job versions ---------------------------------------------------------------------------------------


@pytest.fixture
def job(vision) -> Job:
    make_project(vision.team, "evaluation")
    return launch.job_create(team=vision.team, name="evaluate", project="evaluation")


def test_an_admin_adds_job_versions_from_the_jobs_page(client, vision, job):
    client.force_login(vision.admin)
    page = client.get(page_of(job)).content.decode()
    url = add_page(JobVersion, job=job.pk)
    assert "Add a job version" in section(page, "versions") and url in page
    for flag in ("--fast", "--full"):
        response = client.post(
            url,
            {"job": job.pk, "entrypoint": f'["python", "evaluate.py", "{flag}"]', "default_config": '{"epochs": 3}',
             "source": "git@example:ml/eval.git@abc123"},
        )  # fmt: skip
        assert response.status_code == 302, form_errors(response)
    versions = list(job.versions.order_by("index").values_list("index", "entrypoint", "default_config"))
    assert versions == [(0, ["python", "evaluate.py", "--fast"], {"epochs": 3}),
                        (1, ["python", "evaluate.py", "--full"], {"epochs": 3})]  # fmt: skip
    page = client.get(page_of(job)).content.decode()
    assert "--full" in section(page, "versions")
    version = job.versions.get(index=1)
    page = client.get(page_of(version))
    assert page.status_code == 200 and "git@example:ml/eval.git@abc123" in page.content.decode()
    assert client.post(page_of(version), {"entrypoint": '["false"]'}).status_code == 403  # never changed


def test_a_refused_job_version_keeps_what_was_typed_and_writes_nothing(client, vision, job):
    client.force_login(vision.admin)
    typed = '[\n  "python",   ""\n]'
    response = client.post(add_page(JobVersion, job=job.pk), {"job": job.pk, "entrypoint": typed, "default_config": ""})
    assert "non-empty list of non-empty strings" in form_errors(response)["entrypoint"]
    assert response.context["adminform"].form["entrypoint"].value() == typed
    assert not JobVersion.objects.exists()


def test_members_do_not_add_job_versions(client, vision, job):
    client.force_login(vision.member)
    page = client.get(page_of(job)).content.decode()
    assert "Add a job version" not in page
    url = add_page(JobVersion, job=job.pk)
    assert client.get(url).status_code == 403
    assert client.post(url, {"job": job.pk, "entrypoint": '["true"]'}).status_code == 403
    assert not JobVersion.objects.exists()


def test_another_teams_job_or_team_is_refused_and_nothing_written(client, vision, job):
    theirs = launch.job_create(team=vision.other, name="their-job", project="training")
    their_queue = launch.run_queue_create(team=vision.other, name="their-queue")
    client.force_login(vision.admin)
    response = client.post(add_page(JobVersion, job=theirs.pk), {"job": theirs.pk, "entrypoint": '["true"]'})
    assert "Job: Select a valid choice" in " ".join(response.context["adminform"].form.non_field_errors())
    response = client.post(
        add_page(Agent, team=vision.other.pk), {"team": vision.other.pk, "name": "box", "queues": [their_queue.pk]}
    )
    assert "Team: Select a valid choice" in " ".join(response.context["adminform"].form.non_field_errors())
    assert not JobVersion.objects.exists() and not Agent.objects.exists()


# --- Agents ---------------------------------------------------------------------------------------------


def test_an_agents_token_is_shown_once_and_only_its_hash_is_kept(client, vision, caplog):
    gpu = launch.run_queue_create(team=vision.team, name="gpu")
    launch.run_queue_create(team=vision.team, name="cpu")
    launch.run_queue_create(team=vision.other, name="audio-gpu")
    client.force_login(vision.admin)
    url = add_page(Agent, team=vision.team.pk)
    form = client.get(url).context["adminform"].form
    assert [label for _, label in form.fields["queues"].choices] == ["cpu", "gpu"]

    with caplog.at_level(logging.DEBUG):
        response = client.post(url, {"team": vision.team.pk, "name": "gpu-box-01", "queues": [gpu.pk]})
    assert response.status_code == 200
    token = response.context["token"]
    page = response.content.decode()
    assert token.startswith("agt_") and page.count(token) == 2  # the field and the command line, this once
    assert "no-store" in response["Cache-Control"]
    agent = Agent.objects.get(name="gpu-box-01")
    assert agent.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert list(agent.queues.all()) == [gpu]
    assert launch.agent_authenticate(raw=token) == agent
    # Never again: not on its page, not in the list, not in the admin's log, not in any log line
    for again in (page_of(agent), reverse("admin:launch_agent_changelist")):
        assert token not in client.get(again).content.decode()
    assert not any(token in str(entry.object_repr) + entry.change_message for entry in LogEntry.objects.all())
    assert token not in caplog.text


def test_a_refused_agent_is_a_form_error_and_writes_nothing(client, vision):
    theirs = launch.run_queue_create(team=vision.other, name="audio-gpu")
    client.force_login(vision.admin)
    url = add_page(Agent, team=vision.team.pk)
    response = client.post(url, {"team": vision.team.pk, "name": "box", "queues": [theirs.pk]})
    assert "Select a valid choice" in form_errors(response)["queues"]
    response = client.post(url, {"team": vision.team.pk, "name": "box"})
    assert "required" in form_errors(response)["queues"]
    assert not Agent.objects.exists()


def test_members_do_not_register_agents(client, vision):
    queue = launch.run_queue_create(team=vision.team, name="gpu")
    client.force_login(vision.member)
    url = add_page(Agent, team=vision.team.pk)
    assert client.get(url).status_code == 403
    assert client.post(url, {"team": vision.team.pk, "name": "box", "queues": [queue.pk]}).status_code == 403
    assert not Agent.objects.exists()


# --- API tokens -----------------------------------------------------------------------------------------


def test_a_user_sees_and_revokes_only_their_own_tokens(client, vision):
    mine, my_raw = services.api_token_create(user=vision.member, name="laptop")
    theirs, their_raw = services.api_token_create(user=vision.admin, name="ci")
    client.force_login(vision.member)
    listing = client.get(reverse("admin:registry_apitoken_changelist")).content.decode()
    assert mine.prefix in listing and theirs.prefix not in listing
    assert client.get(page_of(theirs)).status_code == 302  # "doesn't exist": not theirs to see
    assert client.post(reverse("admin:registry_apitoken_delete", args=[theirs.pk]), {"post": "yes"}).status_code == 302
    assert ApiToken.objects.filter(pk=theirs.pk).exists()

    response = client.post(reverse("admin:registry_apitoken_delete", args=[mine.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert services.api_token_use(raw=my_raw) is None
    assert services.api_token_use(raw=their_raw) is not None


def test_a_superuser_revokes_anyones_token(client, vision):
    token, raw = services.api_token_create(user=vision.admin, name="ci")
    client.force_login(make_user(superuser=True))
    response = client.post(
        reverse("admin:registry_apitoken_changelist"),
        {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert services.api_token_use(raw=raw) is None


# --- Deliveries -----------------------------------------------------------------------------------------


@pytest.fixture
def delivered(vision) -> Delivery:
    webhook = automations.webhook_create(team=vision.team, name="ci", url="http://127.0.0.1:9/", user=None)
    automations.automation_create(
        team=vision.team, user=None, name="notify", event_type="LINK_ARTIFACT", action_type="WEBHOOK",
        webhook=webhook.pk, payload={"v": "${artifact_version_string}"},
    )  # fmt: skip
    outbox.event_dispatch(event_id=Event.objects.get(model_version=link(vision.model), type="LINK_ARTIFACT").pk)
    Delivery.objects.update(status="failed")
    return Delivery.objects.get()


def test_redeliver_from_the_deliverys_own_page(client, vision, delivered):
    client.force_login(vision.admin)
    page = client.get(page_of(delivered)).content.decode()
    url = reverse("admin:automations_delivery_redeliver", args=[delivered.pk])
    assert f'action="{url}"' in page and ">Redeliver</button>" in page
    assert client.get(url).status_code == 405
    response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == page_of(delivered)
    assert "1 delivery queued again" in response.content.decode()
    delivered.refresh_from_db()
    assert delivered.status == "pending"


def test_another_teams_admin_cannot_redeliver(client, vision, delivered):
    client.force_login(vision.other.memberships.get(role=Role.ADMIN).user)
    response = client.post(reverse("admin:automations_delivery_redeliver", args=[delivered.pk]))
    assert response.status_code == 404
    delivered.refresh_from_db()
    assert delivered.status == "failed"


# --- A registered model's automations -------------------------------------------------------------------


def test_the_automations_section_lists_team_wide_ones_marked_with_their_alias_filter(client, vision):
    webhook = automations.webhook_create(team=vision.team, name="ci", url="http://127.0.0.1:9/", user=None)
    theirs = automations.webhook_create(team=vision.other, name="theirs", url="http://127.0.0.1:9/", user=None)
    other_model = make_registered_model(vision.team, "detector")

    def create(team, name, hook, **extra):
        automations.automation_create(team=team, user=None, name=name, action_type="WEBHOOK", webhook=hook.pk,
                                      payload={"a": 1}, **extra)  # fmt: skip

    create(vision.team, "on classifier", webhook, event_type="ADD_ARTIFACT_ALIAS", registered_model="classifier",
           alias_regex="^prod")  # fmt: skip
    create(vision.team, "everywhere", webhook, event_type="ADD_ARTIFACT_ALIAS")
    create(vision.team, "on detector", webhook, event_type="LINK_ARTIFACT", registered_model=other_model.name)
    create(vision.other, "their team-wide", theirs, event_type="LINK_ARTIFACT")
    client.force_login(vision.admin)

    rows = section(client.get(page_of(vision.model)).content.decode(), "automations").split('class="section-row"')[1:]
    shown = {row.split("</a>")[0].rsplit(">", 1)[1]: row for row in rows}
    assert set(shown) == {"on classifier", "everywhere"}
    assert "this model" in shown["on classifier"] and "<code>^prod</code>" in shown["on classifier"]
    assert "every model (team-wide)" in shown["everywhere"] and "any alias" in shown["everywhere"]
    assert Automation.objects.get(name="everywhere").registered_model is None  # shown, not changed


# --- Secrets and payloads -------------------------------------------------------------------------------


def test_a_secrets_value_is_required_on_create_and_kept_when_left_blank(client, vision):
    client.force_login(vision.admin)
    url = add_page(Secret, team=vision.team.pk)
    page = client.get(url).content.decode()
    assert "never shown again" in page
    response = client.post(url, {"team": vision.team.pk, "name": "TOKEN", "value": ""})
    assert "This field is required." in form_errors(response)["value"]
    assert not Secret.objects.exists()

    client.post(url, {"team": vision.team.pk, "name": "TOKEN", "value": "first-value"})
    secret = Secret.objects.get(name="TOKEN")
    assert "Leave blank to keep it" in client.get(page_of(secret)).content.decode()
    assert client.post(page_of(secret), {"value": ""}).status_code == 302
    assert crypto.decrypt(Secret.objects.get(pk=secret.pk).ciphertext) == "first-value"
    assert client.post(page_of(secret), {"value": "second-value"}).status_code == 302
    assert crypto.decrypt(Secret.objects.get(pk=secret.pk).ciphertext) == "second-value"


def test_a_refused_payload_is_shown_again_as_typed(client, vision):
    webhook = automations.webhook_create(team=vision.team, name="ci", url="http://127.0.0.1:9/", user=None)
    typed = '{\n    "text":   "${nope}",\n\n    "n": 1.50\n}'
    client.force_login(vision.admin)
    response = client.post(
        add_page(Automation, team=vision.team.pk),
        {"team": vision.team.pk, "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK", "webhook": webhook.pk,
         "payload": typed, "name": "notify", "enabled": "on"},
    )  # fmt: skip
    assert "nope" in form_errors(response)["payload"]
    assert response.context["adminform"].form["payload"].value() == typed
    assert not Automation.objects.exists()
