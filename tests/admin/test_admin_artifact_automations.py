"""CREATE_ARTIFACT automations in the admin: the form asks for a project and a collection instead of a registered model
and an alias filter, the services' refusals show next to the field, the list and page show each automation's scope,
and a registered model's Automations section leaves them out."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass

import pytest
from django.urls import reverse

from automations import services as automations
from automations.models import Automation, Webhook
from automations.selectors import automations_matching
from core.roles import Role
from registry import manifests
from registry.choices import REGISTRY_PROJECT
from registry.events import VARIABLES
from registry.models import ArtifactCollection, Project, RegisteredModel, Team
from tests.factories import add_member, make_artifact_version, make_registered_model, make_team, make_user

from .test_admin_flows import add_page, form_errors, page_of, section

pytestmark = pytest.mark.django_db


@dataclass
class World:
    """Team vision: projects training (collections classifier, detector) and evaluation (metrics), the registered
    model classifier, a webhook; admin ada, member max. Team audio apart, with its own project."""

    team: Team
    model: RegisteredModel
    webhook: Webhook
    admin: object
    member: object
    other: Team

    def project(self, name: str) -> Project:
        return Project.objects.get(team=self.team, name=name)

    def collection(self, project: str, name: str) -> ArtifactCollection:
        return ArtifactCollection.objects.get(project__team=self.team, project__name=project, name=name)


@pytest.fixture
def world(settings) -> World:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = make_user("ada", staff=True)
    team = make_team("vision", admin=admin)
    member = add_member(team, make_user("max", staff=True), Role.MEMBER)
    for project, collection in (("training", "classifier"), ("training", "detector"), ("evaluation", "metrics")):
        make_artifact_version(team, project=project, collection=collection)
    model = make_registered_model(team, "classifier")
    webhook = automations.webhook_create(team=team, name="ci", url="http://127.0.0.1:9/", user=None)
    other = make_team("audio", admin=make_user("bella", staff=True))
    make_artifact_version(other, project="speech", collection="speech-net")
    return World(team, model, webhook, admin, member, other)


def posted(world: World, **fields) -> dict:
    """An add form as a browser sends it, for a CREATE_ARTIFACT webhook automation; ``fields`` override."""
    data = {
        "team": world.team.pk, "event_type": "CREATE_ARTIFACT", "registered_model": "", "alias_regex": "",
        "project": "", "collection": "", "action_type": "WEBHOOK", "webhook": world.webhook.pk, "preset": "",
        "payload": '{"digest": "${artifact_digest}", "files": "${artifact_files_url}"}', "job": "",
        "job_version": "", "overrides": "{}", "destination_project": "", "queue": "", "name": "on new classifier",
        "description": "", "enabled": "on",
        # The change page's runs section, as the browser sends it (read-only rows: only its management form).
        "runs-TOTAL_FORMS": "0", "runs-INITIAL_FORMS": "0",
    }  # fmt: skip
    return {**data, **{name: "" if value is None else value for name, value in fields.items()}}


def add(client, world: World, **fields):
    return client.post(add_page(Automation, team=world.team.pk), posted(world, **fields))


def create(world: World, name: str, event_type: str = "CREATE_ARTIFACT", **scope) -> Automation:
    return automations.automation_create(
        team=world.team, user=None, name=name, event_type=event_type, action_type="WEBHOOK",
        webhook=world.webhook.pk, payload={"v": "${artifact_version_string}"}, **scope,
    )  # fmt: skip


# --- The form -------------------------------------------------------------------------------------------


def test_the_form_offers_the_teams_projects_and_each_collection_with_its_project(client, world):
    client.force_login(world.admin)
    response = client.get(add_page(Automation, team=world.team.pk))
    form = response.context["adminform"].form
    assert [label for value, label in form.fields["project"].choices if value] == ["evaluation", "training"]
    assert [label for value, label in form.fields["collection"].choices if value] == [
        "metrics", "classifier", "detector",
    ]  # fmt: skip
    page = response.content.decode()
    for project, collection in (("training", "classifier"), ("evaluation", "metrics")):
        option = f'value="{world.collection(project, collection).pk}" data-project="{world.project(project).pk}"'
        assert option in page
    # The page knows which fields each event type uses: the registry's scopes, not a copy in the script
    watch = json.loads(html.unescape(re.search(r'data-watch="([^"]+)"', page).group(1)))
    assert watch == {
        "LINK_ARTIFACT": ["registered_model"],
        "ADD_ARTIFACT_ALIAS": ["registered_model", "alias_regex"],
        "CREATE_ARTIFACT": ["project", "collection"],
        "UNLINK_ARTIFACT": ["registered_model"],
        "REMOVE_ARTIFACT_ALIAS": ["registered_model", "alias_regex"],
        "ADD_ARTIFACT_TAG": ["project", "collection"],
        "REMOVE_ARTIFACT_TAG": ["project", "collection"],
    }


def test_a_create_artifact_automation_scoped_to_a_collection_is_saved_through_the_services(client, world):
    client.force_login(world.admin)
    # What the registered model's section prefills, left in fields the page hides for this event type
    response = add(
        client, world, project=world.project("training").pk, collection=world.collection("training", "classifier").pk,
        registered_model=world.model.pk, alias_regex="^prod",
    )  # fmt: skip
    assert response.status_code == 302, form_errors(response)
    automation = Automation.objects.get(name="on new classifier")
    assert automation.event_type == "CREATE_ARTIFACT" and automation.created_by == world.admin
    assert (automation.project.name, automation.collection.name) == ("training", "classifier")
    assert automation.registered_model is None and automation.alias_regex == ""
    assert automation.payload == {"digest": "${artifact_digest}", "files": "${artifact_files_url}"}


@pytest.mark.parametrize(
    ("project", "collection", "scope"),
    [("training", None, ("training", None)), (None, None, (None, None))],
    ids=["a-project", "every-project"],
)
def test_a_project_or_every_project_is_a_scope_too(client, world, project, collection, scope):
    client.force_login(world.admin)
    response = add(client, world, project=world.project(project).pk if project else "", collection=collection)
    assert response.status_code == 302, form_errors(response)
    automation = Automation.objects.get(name="on new classifier")
    assert (getattr(automation.project, "name", None), getattr(automation.collection, "name", None)) == scope


def test_a_collection_without_its_project_is_refused_next_to_the_project_field(client, world):
    client.force_login(world.admin)
    response = add(client, world, collection=world.collection("training", "classifier").pk)
    assert response.status_code == 200
    assert form_errors(response) == {"project": "Name the project the collection is in."}
    assert not Automation.objects.exists()


def test_a_collection_of_another_project_is_refused_next_to_the_collection_field(client, world):
    client.force_login(world.admin)
    response = add(
        client, world, project=world.project("evaluation").pk, collection=world.collection("training", "classifier").pk
    )
    assert form_errors(response) == {"collection": "No artifact collection 'classifier' in vision/evaluation."}
    assert not Automation.objects.exists()


def test_another_teams_project_or_collection_and_the_registry_project_are_refused(client, world):
    client.force_login(world.admin)
    theirs = Project.objects.get(team=world.other, name="speech")
    registry = Project.objects.get(team=world.team, name=REGISTRY_PROJECT)
    for forged in ({"project": theirs.pk}, {"project": registry.pk},
                   {"project": world.project("training").pk, "collection": theirs.collections.get().pk}):  # fmt: skip
        response = add(client, world, **forged)
        errors = form_errors(response)
        assert set(errors) == set(forged) - ({"project"} if "collection" in forged else set())
        assert all("Select a valid choice" in error for error in errors.values())
    assert not Automation.objects.exists()


def test_a_refused_payload_variable_is_named_next_to_the_payload(client, world):
    client.force_login(world.admin)
    response = add(client, world, project=world.project("training").pk, payload='{"a": "${alias}"}')
    assert "alias" in form_errors(response)["payload"]
    assert not Automation.objects.exists()


def test_a_member_may_not_add_or_see_automations(client, world):
    client.force_login(world.member)
    assert client.get(add_page(Automation, team=world.team.pk)).status_code == 403
    assert add(client, world, project=world.project("training").pk).status_code == 403
    assert not Automation.objects.exists()
    automation = create(world, "watch training", project="training")
    assert client.get(page_of(automation)).status_code == 403


def test_another_teams_admin_cannot_open_or_change_it(client, world):
    automation = create(world, "watch training", project="training")
    client.force_login(world.other.memberships.get(role=Role.ADMIN).user)
    response = client.get(page_of(automation))
    assert response.status_code == 302 and response.url == reverse("admin:index")
    client.post(page_of(automation), posted(world, project="", name="hijacked"))
    assert Automation.objects.get(pk=automation.pk).name == "watch training"


def test_changing_a_model_automation_to_create_artifact_moves_its_scope_to_a_project(client, world):
    automation = create(world, "on links", event_type="LINK_ARTIFACT", registered_model="classifier")
    client.force_login(world.admin)
    response = client.post(
        page_of(automation),
        posted(world, name="on links", project=world.project("evaluation").pk, registered_model=world.model.pk),
    )
    assert response.status_code == 302, form_errors(response)
    automation.refresh_from_db()
    assert automation.event_type == "CREATE_ARTIFACT" and automation.registered_model is None
    assert automation.project.name == "evaluation" and automation.collection is None


# --- Where automations are shown ------------------------------------------------------------------------


def test_the_list_and_the_page_show_each_automations_scope(client, world):
    made = {
        "model": create(world, "model", "LINK_ARTIFACT", registered_model="classifier"),
        "models": create(world, "models", "LINK_ARTIFACT"),
        "collection": create(world, "collection", project="training", collection="classifier"),
        "project": create(world, "project", project="evaluation"),
        "projects": create(world, "projects"),
    }
    client.force_login(world.admin)
    page = client.get(reverse("admin:automations_automation_changelist")).content.decode()
    shown = {
        name: re.sub(r"<[^>]+>", "", page.split(f">{name}</a>")[1].split('class="field-scope">')[1].split("</td>")[0])
        for name in made
    }
    assert shown == {
        "model": "model classifier",
        "models": "every model (team-wide)",
        "collection": "collection training/classifier",
        "project": "project evaluation",
        "projects": "every project (team-wide)",
    }
    detail = client.get(page_of(made["collection"])).content.decode()
    scope = detail[detail.index("field-scope") :]
    assert "<small>collection</small> training/classifier" in scope[: scope.index("</div>", scope.index("readonly"))]
    form = client.get(page_of(made["collection"])).context["adminform"].form
    assert form["project"].value() == world.project("training").pk


def test_a_registered_models_automations_section_leaves_out_create_artifact_automations(client, world):
    create(world, "every link", "LINK_ARTIFACT")
    create(world, "every new artifact")
    create(world, "new classifiers", project="training", collection="classifier")
    client.force_login(world.admin)
    automations_section = section(client.get(page_of(world.model)).content.decode(), "automations")
    assert "every link" in automations_section
    assert "every new artifact" not in automations_section and "new classifiers" not in automations_section


def test_the_payload_help_lists_every_variable_with_its_description(client, world):
    client.force_login(world.admin)
    pages = [
        client.get(add_page(Automation, team=world.team.pk)).content.decode(),
        client.get(reverse("admin:automations_webhook_test", args=[world.webhook.pk])).content.decode(),
    ]
    for page in pages:
        for variable in VARIABLES.values():
            assert f"<li><code>${{{variable.name}}}</code>: {html.escape(variable.description)}</li>" in page
        assert "${artifact_digest}" in page and "${artifact_files_url}" in page


def test_a_create_artifact_automation_fires_for_the_watched_collection_only(client, world):
    """What the admin saved acts as the API's would: committing a version of training/classifier matches it."""
    client.force_login(world.admin)
    add(client, world, project=world.project("training").pk, collection=world.collection("training", "classifier").pk)
    training = world.project("training")
    matched = {}
    for collection in ("classifier", "detector"):
        version = manifests.artifact_version_log(project=training, collection_name=collection, type="model", user=None)
        event = version.events.get(type="CREATE_ARTIFACT")
        matched[collection] = [a.name for a in automations_matching(event=event)]
    assert matched == {"classifier": ["on new classifier"], "detector": []}
