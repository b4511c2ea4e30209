"""``${event_id}``: every event carries its own id among its variables, from the moment it is recorded; events
recorded before the variable existed get it from a migration."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from automations.rendering import render
from registry.events import event_type_get
from registry.models import Event
from tests.factories import link, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db


def test_each_event_type_records_its_own_id_as_event_id():
    admin = make_user()
    model = make_registered_model(make_team(admin=admin))
    link(model, user=admin, aliases=["production"])
    events = list(Event.objects.all())
    assert {e.type for e in events} >= {"LINK_ARTIFACT", "ADD_ARTIFACT_ALIAS", "CREATE_ARTIFACT"}
    for event in events:
        assert event.context["event_id"] == str(event.pk)
        assert json.loads(render({"caused_by": "${event_id}"}, context=event.context, secrets={})) == {
            "caused_by": str(event.pk)
        }
        assert "event_id" in [v.name for v in event_type_get(event.type).variables]


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_older_events_their_id_and_leaves_newer_ones_alone():
    admin = make_user()
    model = make_registered_model(make_team(admin=admin))
    link(model, user=admin)
    old, new = Event.objects.order_by("created_at")[:2]
    Event.objects.filter(pk=old.pk).update(context={k: v for k, v in old.context.items() if k != "event_id"})
    executor = MigrationExecutor(connection)
    executor.migrate([("registry", "0003_event_artifact_version")])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    old.refresh_from_db()
    assert old.context["event_id"] == str(old.pk)
    assert Event.objects.get(pk=new.pk).context == new.context
