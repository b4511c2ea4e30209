"""The registry's rules: indices, aliases, `latest`, and exactly one event per change."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction

from core.errors import ApplicationError, Conflict
from registry import services
from registry.models import Alias, ArtifactVersion, Event, ModelVersion
from tests.factories import link, make_artifact_version, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db


def aliases_of(registered_model) -> dict[str, str]:
    return {a.name: a.model_version.version for a in Alias.objects.filter(registered_model=registered_model)}


def test_versions_are_numbered_in_link_order_from_v0():
    model = make_registered_model(make_team())
    versions = [link(model).version for _ in range(3)]
    assert versions == ["v0", "v1", "v2"]


def test_alias_move_leaves_exactly_one_production():
    model = make_registered_model(make_team())
    v0, v1, v2 = link(model), link(model), link(model)
    user = make_user()
    services.alias_add(model_version=v1, name="production", user=user)
    services.alias_add(model_version=v2, name="production", user=user)

    assert Alias.objects.filter(registered_model=model, name="production").count() == 1
    assert aliases_of(model)["production"] == "v2"
    assert not v1.aliases.filter(name="production").exists()
    assert v0.aliases.count() == 0


def test_alias_move_fires_one_event_per_alias_add():
    model = make_registered_model(make_team())
    v0, v1 = link(model), link(model)
    Event.objects.all().delete()

    services.alias_add(model_version=v0, name="production", user=None)
    services.alias_add(model_version=v1, name="production", user=None)
    services.alias_add(model_version=v1, name="production", user=None)  # already there: no change, no event

    events = list(Event.objects.filter(type="ADD_ARTIFACT_ALIAS").order_by("created_at"))
    assert [e.context["artifact_version_string"] for e in events] == [
        f"{model.team.name}/model-registry/{model.name}:production"
    ] * 2
    assert [e.model_version_id for e in events] == [v0.pk, v1.pk]


def test_latest_follows_the_newest_version_and_survives_unlink():
    model = make_registered_model(make_team())
    v0 = link(model)
    assert aliases_of(model) == {"latest": "v0"}
    v1 = link(model)
    assert aliases_of(model) == {"latest": "v1"}

    services.model_version_unlink(model_version=v1, user=None)
    assert aliases_of(model) == {"latest": "v0"}
    services.model_version_unlink(model_version=v0, user=None)
    assert aliases_of(model) == {}
    assert link(model).version == "v2"  # indices are never reused


def test_latest_cannot_be_set_or_removed_by_hand():
    model = make_registered_model(make_team())
    v0 = link(model)
    with pytest.raises(ApplicationError, match="maintained by the system") as exc:
        services.alias_add(model_version=v0, name="latest", user=None)
    assert exc.value.field == "alias"
    with pytest.raises(ApplicationError, match="maintained by the system"):
        services.alias_remove(registered_model=model, name="latest", user=None)


def test_link_fires_one_link_event_and_one_event_per_alias_but_none_for_latest():
    team = make_team()
    model = make_registered_model(team)
    author = make_user("alice")
    artifact = make_artifact_version(team, metadata={"accuracy": 0.97})

    mv = services.model_version_link(
        registered_model=model, artifact_version=artifact, user=author, aliases=["staging", "candidate"]
    )

    events = Event.objects.filter(model_version=mv)
    assert sorted(events.values_list("type", "alias")) == [
        ("ADD_ARTIFACT_ALIAS", "candidate"),
        ("ADD_ARTIFACT_ALIAS", "staging"),
        ("LINK_ARTIFACT", ""),
    ]
    link_event = events.get(type="LINK_ARTIFACT")
    assert link_event.context == {
        "event_id": str(link_event.pk),
        "event_type": "LINK_ARTIFACT",
        "event_author": "alice",
        "artifact_version": f"registry-artifact://_id/{artifact.public_id}",
        "artifact_version_string": f"{team.name}/model-registry/classifier:v0",
        "artifact_collection_name": "classifier",
        "project_name": "model-registry",
        "entity_name": team.name,
        "artifact_digest": artifact.digest,
        "artifact_files_url": (
            f"{settings.PUBLIC_BASE_URL}/api/v1/teams/{team.name}/projects/training/artifacts/classifier/versions/v0/"
        ),
        "version": "v0",
        "source_artifact": f"{team.name}/training/classifier:v0",
        "artifact_metadata": {"accuracy": 0.97},
    }
    assert link_event.artifact_version == artifact
    assert link_event.author == author and link_event.dispatched_at is None and link_event.depth == 0


def test_linking_the_same_artifact_twice_is_refused():
    team = make_team()
    model = make_registered_model(team)
    artifact = make_artifact_version(team)
    services.model_version_link(registered_model=model, artifact_version=artifact, user=None)
    with pytest.raises(Conflict, match="already linked") as exc:
        services.model_version_link(registered_model=model, artifact_version=artifact, user=None)
    assert exc.value.field == "artifact"
    assert ModelVersion.objects.filter(registered_model=model).count() == 1


def test_a_bad_alias_in_a_link_writes_nothing():
    team = make_team()
    model = make_registered_model(team)
    artifact = make_artifact_version(team)
    with pytest.raises(ApplicationError):
        services.model_version_link(registered_model=model, artifact_version=artifact, user=None, aliases=["ok", "v7"])
    assert not ModelVersion.objects.exists()
    assert list(Event.objects.values_list("type", flat=True)) == ["CREATE_ARTIFACT"]  # logging the artifact


def test_no_event_survives_a_rolled_back_transaction():
    model = make_registered_model(make_team())
    v0 = link(model)
    before = Event.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        services.alias_add(model_version=v0, name="production", user=None)
        link(model)
        raise RuntimeError("the caller's transaction fails after the changes")

    assert Event.objects.count() == before
    assert not Alias.objects.filter(name="production").exists()


def test_rolled_back_changes_schedule_no_dispatch(django_capture_on_commit_callbacks):
    model = make_registered_model(make_team())
    with django_capture_on_commit_callbacks() as callbacks:
        link(model)
    assert len(callbacks) == 2  # the artifact's CREATE_ARTIFACT and the link's event; `latest` moving fires none
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        link(model)
        raise RuntimeError
    assert callbacks == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_links_never_share_an_index():
    """Eight threads, each with its own PostgreSQL connection, link at once; the row lock serialises them."""
    assert connection.vendor == "postgresql"
    team = make_team()
    model = make_registered_model(team)
    artifacts = [make_artifact_version(team) for _ in range(8)]
    barrier = threading.Barrier(len(artifacts))
    errors: list[BaseException] = []

    def worker(artifact):
        try:
            barrier.wait(timeout=10)
            services.model_version_link(registered_model=model, artifact_version=artifact, user=None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(a,)) for a in artifacts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    indices = sorted(ModelVersion.objects.filter(registered_model=model).values_list("index", flat=True))
    assert indices == list(range(8))
    assert Alias.objects.get(registered_model=model, name="latest").model_version.index == 7
    assert Event.objects.filter(type="LINK_ARTIFACT", registered_model=model).count() == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_artifact_logs_never_share_an_index():
    team = make_team()
    make_artifact_version(team)  # creates the collection; the race is on the index
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait(timeout=10)
            make_artifact_version(team)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(ArtifactVersion.objects.values_list("index", flat=True)) == list(range(7))
