"""The Django admin: every registry model is browsable, read-only where the domain has rules, and writes that are
allowed go through the services."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from core.roles import Role
from registry import services
from registry.choices import REGISTRY_PROJECT
from registry.models import (
    Alias,
    ApiToken,
    ArtifactCollection,
    ArtifactVersion,
    Event,
    Membership,
    ModelVersion,
    Project,
    RegisteredModel,
    Team,
)
from tests.factories import add_member, link, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _plain_static_storage(settings) -> None:
    """The manifest storage needs collectstatic to have run; admin pages in tests do not need hashed names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@dataclass
class World:
    superuser: object
    engineer: object
    team: Team
    registered_model: RegisteredModel
    v0: ModelVersion
    v1: ModelVersion
    event: Event
    token: ApiToken
    raw_token: str


@pytest.fixture
def world() -> World:
    superuser = make_user("root", superuser=True)
    engineer = make_user("engineer")
    team = make_team("vision", admin=engineer)
    registered_model = make_registered_model(team, "classifier")
    v0 = link(registered_model, user=engineer, aliases=["staging"])
    v1 = link(registered_model, user=engineer, aliases=["production"])
    event = Event.objects.filter(model_version=v1, type="ADD_ARTIFACT_ALIAS").get()
    token, raw = services.api_token_create(user=engineer, name="ci-token")
    return World(superuser, engineer, team, registered_model, v0, v1, event, token, raw)


@pytest.fixture
def admin_client(client, world):
    client.force_login(world.superuser)
    return client


def _url(model, view: str, *args) -> str:
    return reverse(f"admin:registry_{model._meta.model_name}_{view}", args=args)


def _inline_data(admin_client, url: str) -> dict:
    """What the browser posts back for a change page's inlines: management forms and hidden fields."""
    data = {}
    for inline in admin_client.get(url).context["inline_admin_formsets"]:
        formset = inline.formset
        for form in (formset.management_form, *formset.forms):
            for field in form.hidden_fields():
                value = field.value()
                data[field.html_name] = "" if value is None else value
    return data


def _objects(world: World) -> dict:
    artifact_version = world.v1.artifact_version
    return {
        Team: (world.team, "vision"),
        Membership: (Membership.objects.get(team=world.team, user=world.engineer), "engineer"),
        Project: (Project.objects.get(team=world.team, name=REGISTRY_PROJECT), REGISTRY_PROJECT),
        ArtifactCollection: (artifact_version.collection, "classifier"),
        ArtifactVersion: (artifact_version, "vision/training/classifier:v1"),
        RegisteredModel: (world.registered_model, "classifier"),
        ModelVersion: (world.v1, "training/classifier:v1"),
        Alias: (Alias.objects.get(registered_model=world.registered_model, name="production"), "production"),
        Event: (world.event, "production"),
        ApiToken: (world.token, world.token.prefix),
    }


ALL_MODELS = [
    Team,
    Membership,
    Project,
    ArtifactCollection,
    ArtifactVersion,
    RegisteredModel,
    ModelVersion,
    Alias,
    Event,
    ApiToken,
]
# Written only through the API (artifacts), by the system (events), or shown once by the API (tokens).
NOT_ADDED = [ArtifactCollection, ArtifactVersion, Event, ApiToken]


def test_site_titles(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert "Model registry" in response.content.decode()


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_changelist_lists_a_row(admin_client, world, model):
    _, text = _objects(world)[model]
    response = admin_client.get(_url(model, "changelist"))
    assert response.status_code == 200
    assert text in response.content.decode()


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_change_page_renders(admin_client, world, model):
    obj, text = _objects(world)[model]
    response = admin_client.get(_url(model, "change", obj.pk))
    assert response.status_code == 200
    assert text in response.content.decode()


@pytest.mark.parametrize("model", NOT_ADDED, ids=lambda m: m.__name__)
def test_read_only_models_cannot_be_added(admin_client, model):
    assert admin_client.get(_url(model, "add")).status_code == 403
    assert admin_client.post(_url(model, "add"), {}).status_code == 403


@pytest.mark.parametrize("model", [ArtifactCollection, ArtifactVersion, ModelVersion, Event])
def test_read_only_models_cannot_be_changed_or_deleted(admin_client, world, model):
    obj, _ = _objects(world)[model]
    count = model.objects.count()
    assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.count() == count


@pytest.mark.parametrize(
    ("model", "term", "hit", "miss"),
    [
        (Team, "vis", "vision", "other-team"),
        (RegisteredModel, "classi", "classifier", "detector"),
        (Event, "classifier", "classifier", "detector"),
        (Membership, "engineer", "engineer", "bystander"),
        (ArtifactVersion, "classifier", "classifier:v0", "detector:v0"),
    ],
)
def test_search(admin_client, world, model, term, hit, miss):
    other = make_team("other-team", admin=make_user("bystander"))
    link(make_registered_model(other, "detector"))
    response = admin_client.get(_url(model, "changelist"), {"q": term})
    assert response.status_code == 200
    body = response.content.decode()
    assert hit in body
    assert miss not in body


def test_artifact_version_search_by_public_id(admin_client, world):
    artifact_version = world.v0.artifact_version
    response = admin_client.get(_url(ArtifactVersion, "changelist"), {"q": str(artifact_version.public_id)})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert admin_client.get(_url(ArtifactVersion, "changelist"), {"q": "not-a-uuid"}).status_code == 200


# --- Events ---------------------------------------------------------------------------------------------


def test_event_view_page_shows_the_audit_record(admin_client, world):
    body = admin_client.get(_url(Event, "change", world.event.pk)).content.decode()
    for text in ("classifier", "v1", "production", "engineer", "Dispatch attempts", "Caused by", "Depth"):
        assert text in body
    # The context is pretty-printed JSON.
    assert "&quot;artifact_collection_name&quot;: &quot;classifier&quot;" in body
    assert "<pre>" in body


def test_event_cannot_be_deleted_in_bulk(admin_client, world):
    response = admin_client.post(
        _url(Event, "changelist"), {"action": "delete_selected", "_selected_action": [world.event.pk], "post": "yes"}
    )
    assert Event.objects.filter(pk=world.event.pk).exists()
    assert response.status_code in (200, 302)


def test_event_dispatched_filter(admin_client, world):
    Event.objects.exclude(pk=world.event.pk).update(dispatched_at=timezone.now())
    undispatched = admin_client.get(_url(Event, "changelist"), {"dispatched": "no"})
    assert [e.pk for e in undispatched.context["cl"].result_list] == [world.event.pk]
    dispatched = admin_client.get(_url(Event, "changelist"), {"dispatched": "yes"})
    assert world.event.pk not in {e.pk for e in dispatched.context["cl"].result_list}
    assert dispatched.context["cl"].result_count == Event.objects.count() - 1


def test_dispatch_again_sends_undispatched_events(admin_client, world):
    done = Event.objects.filter(model_version=world.v0, type="LINK_ARTIFACT").get()
    Event.objects.filter(pk=done.pk).update(dispatched_at=timezone.now())
    response = admin_client.post(
        _url(Event, "changelist"),
        {"action": "dispatch_again", "_selected_action": [str(world.event.pk), str(done.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert "1 event(s) sent for dispatch." in texts
    assert "1 event(s) already dispatched were skipped." in texts


def test_dispatch_again_is_offered_only_to_who_may_change_events(client, world):
    viewer = make_user("viewer", staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(viewer)
    response = client.get(_url(Event, "changelist"))
    assert response.status_code == 200
    assert "dispatch_again" not in response.content.decode()


def test_event_changelist_queries_are_bounded(admin_client, world, django_assert_max_num_queries):
    registered_model = make_registered_model(world.team, "segmenter")
    for i in range(15):
        author = add_member(world.team, make_user(f"author{i}"))
        link(registered_model, user=author, aliases=[f"candidate-{i}"])
    assert Event.objects.count() >= 30
    with django_assert_max_num_queries(10):
        response = admin_client.get(_url(Event, "changelist"))
    assert response.status_code == 200
    assert "author14" in response.content.decode()


@pytest.mark.parametrize("model", [m for m in ALL_MODELS if m is not Event], ids=lambda m: m.__name__)
def test_other_changelists_are_bounded(admin_client, world, model, django_assert_max_num_queries):
    registered_model = make_registered_model(world.team, "segmenter")
    for i in range(10):
        author = add_member(world.team, make_user(f"author{i}"))
        link(registered_model, user=author, aliases=[f"candidate-{i}"])
        make_registered_model(world.team, f"model-{i}")
    with django_assert_max_num_queries(12):
        assert admin_client.get(_url(model, "changelist")).status_code == 200


def test_registered_model_page_queries_are_bounded(admin_client, world, django_assert_max_num_queries):
    for i in range(10):
        link(world.registered_model, user=add_member(world.team, make_user(f"author{i}")), aliases=[f"c-{i}"])
    with django_assert_max_num_queries(12):
        response = admin_client.get(_url(RegisteredModel, "change", world.registered_model.pk))
    assert response.status_code == 200
    assert "c-9" in response.content.decode()


# --- Teams and members ----------------------------------------------------------------------------------


def test_team_add_goes_through_the_service(admin_client, world):
    response = admin_client.post(_url(Team, "add"), {"name": "robotics"})
    assert response.status_code == 302
    team = Team.objects.get(name="robotics")
    assert Project.objects.filter(team=team, name=REGISTRY_PROJECT).exists()
    membership = Membership.objects.get(team=team)
    assert (membership.user, membership.role) == (world.superuser, Role.ADMIN)


@pytest.mark.parametrize("name", ["Not A Slug", "vision"])
def test_team_add_refusal_is_a_form_error(admin_client, world, name):
    response = admin_client.post(_url(Team, "add"), {"name": name})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"]
    assert Team.objects.count() == 1


def test_team_cannot_be_renamed_or_deleted(admin_client, world):
    assert admin_client.post(_url(Team, "change", world.team.pk), {"name": "renamed"}).status_code == 403
    assert admin_client.post(_url(Team, "delete", world.team.pk), {"post": "yes"}).status_code == 403
    world.team.refresh_from_db()
    assert world.team.name == "vision"


def test_team_page_shows_members(admin_client, world):
    body = admin_client.get(_url(Team, "change", world.team.pk)).content.decode()
    assert "engineer" in body
    assert "Add a member" in body


def test_membership_add_and_role_change_go_through_the_service(admin_client, world):
    newcomer = make_user("newcomer")
    response = admin_client.post(
        _url(Membership, "add"), {"team": world.team.pk, "username": "newcomer", "role": Role.VIEWER}
    )
    assert response.status_code == 302
    membership = Membership.objects.get(team=world.team, user=newcomer)
    assert membership.role == Role.VIEWER
    response = admin_client.post(_url(Membership, "change", membership.pk), {"role": Role.ADMIN})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


def test_demoting_the_last_admin_is_a_form_error(admin_client, world):
    membership = Membership.objects.get(team=world.team, user=world.engineer)
    response = admin_client.post(_url(Membership, "change", membership.pk), {"role": Role.MEMBER})
    assert response.status_code == 200
    assert "at least one admin" in str(response.context["adminform"].form.errors["role"])
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


def test_removing_the_last_admin_is_refused_with_a_message(admin_client, world):
    membership = Membership.objects.get(team=world.team, user=world.engineer)
    response = admin_client.post(_url(Membership, "delete", membership.pk), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert any("at least one admin" in str(m) for m in get_messages(response.wsgi_request))
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_removing_a_member(admin_client, world):
    member = add_member(world.team, make_user("leaver"))
    membership = Membership.objects.get(team=world.team, user=member)
    response = admin_client.post(_url(Membership, "delete", membership.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()


# --- Projects and registered models ---------------------------------------------------------------------


def test_project_add_goes_through_the_service(admin_client, world):
    response = admin_client.post(_url(Project, "add"), {"team": world.team.pk, "name": "eval", "description": ""})
    assert response.status_code == 302
    assert Project.objects.filter(team=world.team, name="eval").exists()
    duplicate = admin_client.post(_url(Project, "add"), {"team": world.team.pk, "name": "eval", "description": ""})
    assert duplicate.status_code == 200
    assert duplicate.context["adminform"].form.errors


def test_registered_model_add(admin_client, world):
    response = admin_client.post(
        _url(RegisteredModel, "add"), {"team": world.team.pk, "name": "detector", "description": "Boxes."}
    )
    assert response.status_code == 302
    assert RegisteredModel.objects.get(team=world.team, name="detector").description == "Boxes."


def test_registered_model_duplicate_name_is_a_form_error(admin_client, world):
    response = admin_client.post(
        _url(RegisteredModel, "add"), {"team": world.team.pk, "name": "classifier", "description": ""}
    )
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors
    assert "already exists" in str(form.errors)
    assert RegisteredModel.objects.filter(team=world.team).count() == 1


def test_registered_model_rename_goes_through_the_service(admin_client, world):
    make_registered_model(world.team, "detector")
    url = _url(RegisteredModel, "change", world.registered_model.pk)
    inlines = _inline_data(admin_client, url)
    clash = admin_client.post(url, {**inlines, "name": "detector", "description": ""})
    assert clash.status_code == 200
    assert clash.context["adminform"].form.errors
    response = admin_client.post(url, {**inlines, "name": "classifier-2", "description": "Renamed."})
    assert response.status_code == 302
    world.registered_model.refresh_from_db()
    assert (world.registered_model.name, world.registered_model.description) == ("classifier-2", "Renamed.")
    assert world.registered_model.team == world.team


def test_service_write_is_undone_when_the_page_is_shown_again(admin_client, world):
    # Tampered inline data makes the page come back with errors after the form itself was valid.
    url = _url(RegisteredModel, "change", world.registered_model.pk)
    response = admin_client.post(url, {"name": "classifier-2", "description": "Renamed."})
    assert response.status_code == 200
    world.registered_model.refresh_from_db()
    assert world.registered_model.name == "classifier"


def test_registered_model_delete_takes_its_versions_and_keeps_events(admin_client, world):
    url = _url(RegisteredModel, "delete", world.registered_model.pk)
    confirm = admin_client.get(url)
    assert confirm.status_code == 200
    assert not confirm.context["perms_lacking"]
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not RegisteredModel.objects.filter(pk=world.registered_model.pk).exists()
    assert not ModelVersion.objects.exists()
    assert Event.objects.filter(pk=world.event.pk).exists()


# --- API tokens -----------------------------------------------------------------------------------------


def test_api_token_page_never_shows_the_hash(admin_client, world):
    for url in (_url(ApiToken, "change", world.token.pk), _url(ApiToken, "changelist")):
        body = admin_client.get(url).content.decode()
        assert world.token.key_hash not in body
        assert world.raw_token not in body
        assert world.token.prefix in body


def test_api_token_can_be_revoked(admin_client, world):
    response = admin_client.post(_url(ApiToken, "delete", world.token.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=world.token.pk).exists()
    assert services.api_token_use(raw=world.raw_token) is None
