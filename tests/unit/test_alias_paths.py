"""An alias move behaves the same whichever way it is written: as one statement (PostgreSQL) or as the portable
steps under the registered model's lock (the embedded default's SQLite), both run here on PostgreSQL."""

from __future__ import annotations

import pytest

from core.errors import PermissionDenied
from core.roles import Role
from registry import outbox, services
from registry.models import Alias, Event, ProtectedAlias
from tests.factories import add_member, link, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["one statement", "portable steps"])
def path(request, monkeypatch) -> str:
    if request.param == "portable steps":
        monkeypatch.setattr(services, "_alias_move_in_one_statement", lambda: False)
    return request.param


def _where(model) -> dict[str, str]:
    return {a.name: a.model_version.version for a in Alias.objects.filter(registered_model=model)}


def test_a_move_puts_the_alias_on_the_version_and_fires_one_event(path):
    admin = make_user()
    model = make_registered_model(make_team(admin=admin))
    link(model, user=admin, aliases=["production"])
    v1 = link(model, user=admin)
    Event.objects.all().delete()

    with outbox.events_recorded() as events:
        alias, added = services.alias_add(model_version=v1, name="production", user=admin)

    assert added and alias.pk is not None and alias.model_version == v1
    assert _where(model) == {"latest": "v1", "production": "v1"}
    stored = Event.objects.get()
    assert [e.pk for e in events] == [stored.pk]
    assert (stored.type, stored.alias, stored.model_version_id, stored.author_id) == (
        "ADD_ARTIFACT_ALIAS", "production", v1.pk, admin.pk,
    )  # fmt: skip
    assert stored.context["artifact_version_string"] == f"{model.team.name}/model-registry/{model.name}:production"
    assert stored.context["event_author"] == admin.username and stored.context["version"] == "v1"
    assert stored.context["event_id"] == str(stored.pk)


def test_the_alias_already_on_the_version_writes_nothing(path):
    model = make_registered_model(make_team())
    v0 = link(model, aliases=["production"])
    Event.objects.all().delete()
    before = Alias.objects.get(name="production")

    alias, added = services.alias_add(model_version=v0, name="production", user=None)

    assert not added and alias.pk == before.pk
    assert Alias.objects.get(name="production").added_at == before.added_at
    assert not Event.objects.exists()


def test_a_protected_alias_is_refused_to_a_member_and_nothing_is_written(path):
    admin, member = make_user(), make_user()
    team = make_team(admin=admin)
    add_member(team, member, Role.MEMBER)
    model = make_registered_model(team)
    link(model, aliases=["production"])
    v1 = link(model)
    ProtectedAlias.objects.create(team=team, name="production")
    Event.objects.all().delete()

    with pytest.raises(PermissionDenied) as refused:
        services.alias_add(model_version=v1, name="production", user=member)

    assert refused.value.field == "alias"
    assert _where(model) == {"latest": "v1", "production": "v0"}
    assert not Event.objects.exists()
    services.alias_add(model_version=v1, name="production", user=admin)  # the team's admins may
    assert _where(model)["production"] == "v1"


def test_the_event_counts_one_step_further_in_its_chain(path):
    model = make_registered_model(make_team())
    v0 = link(model)
    link(model)
    cause = Event.objects.filter(model_version=v0).get()

    services.alias_add(model_version=v0, name="staging", user=None, caused_by=cause)

    event = Event.objects.get(type="ADD_ARTIFACT_ALIAS")
    assert (event.caused_by_id, event.depth) == (cause.pk, cause.depth + 1)
