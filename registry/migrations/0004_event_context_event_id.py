"""Events recorded before ``${event_id}`` existed get it in their context, so a delivery of one sent again (a retry,
a redelivery, a recover) renders a template that uses it."""

from django.db import migrations

BATCH = 1000


def event_id_add(apps, schema_editor):
    Event = apps.get_model("registry", "Event")
    missing = Event.objects.exclude(context__has_key="event_id").only("id", "context")
    while batch := list(missing[:BATCH]):
        for event in batch:
            event.context = {"event_id": str(event.id), **event.context}
        Event.objects.bulk_update(batch, ["context"])


class Migration(migrations.Migration):
    dependencies = [("registry", "0003_event_artifact_version")]

    operations = [migrations.RunPython(event_id_add, migrations.RunPython.noop)]
