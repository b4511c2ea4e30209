"""The launch admin pages open, show no token hash, cancel items through the service, and set up job versions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from launch import services
from launch.models import RunQueueItem
from tests.factories import make_project, make_team, make_user

pytestmark = pytest.mark.django_db


def test_launch_pages_open_and_cancel_works(client):
    root = make_user(superuser=True)
    client.force_login(root)
    team = make_team(admin=root)
    project = make_project(team, "training")
    job = services.job_create(team=team, name="train", project="training")
    version = services.job_version_create(job=job, entrypoint=["true"])
    queue = services.run_queue_create(team=team, name="cpu")
    agent, raw = services.agent_create(team=team, name="box", queues=["cpu"])
    item = services.item_enqueue(queue=queue, job_version=version, destination_project=project)

    for page in ["job", "runqueue", "runqueueitem", "agent"]:
        assert client.get(f"/admin/launch/{page}/").status_code == 200, page
    for page in (f"job/{job.pk}", f"runqueue/{queue.pk}", f"runqueueitem/{item.pk}", f"agent/{agent.pk}"):
        body = client.get(f"/admin/launch/{page}/change/").content.decode()
        assert agent.token_hash not in body and raw not in body

    response = client.post("/admin/launch/runqueueitem/", {"action": "cancel", "_selected_action": [str(item.pk)]})
    assert response.status_code == 302
    assert RunQueueItem.objects.get(pk=item.pk).state == "cancelled"


def test_an_admin_sets_a_job_version_to_download_the_events_model_version(client):
    root = make_user(superuser=True)
    client.force_login(root)
    team = make_team(admin=root)
    make_project(team, "training")
    job = services.job_create(team=team, name="evaluate", project="training")
    add = reverse("admin:launch_jobversion_add") + f"?job={job.pk}"

    form = client.get(add).content.decode()
    assert 'name="download_artifact"' in form and "LAUNCH_ARTIFACT_DIR" in form  # with its help text
    for checked in (False, True):
        data = {"job": job.pk, "entrypoint": '["python", "evaluate.py"]', "default_config": "{}", "source": ""}
        response = client.post(add, {**data, "download_artifact": "on"} if checked else data)
        assert response.status_code == 302, response.content.decode()[:2000]

    assert list(job.versions.order_by("index").values_list("index", "download_artifact")) == [(0, False), (1, True)]
    version = job.versions.get(index=1)
    page = client.get(reverse("admin:launch_jobversion_change", args=[version.pk])).content.decode()
    assert "Download the event" in page
    listing = client.get(reverse("admin:launch_jobversion_changelist")).content.decode()
    assert listing.count('alt="True"') == 1 and listing.count('alt="False"') == 1  # the list's boolean column
    # Versions are never changed: the setting cannot be switched afterwards.
    client.post(reverse("admin:launch_jobversion_change", args=[version.pk]), {**data, "download_artifact": ""})
    version.refresh_from_db()
    assert version.download_artifact is True
