"""The launch admin pages open, show no token hash, and cancel items through the service."""

from __future__ import annotations

import pytest

from launch import services
from launch.models import RunQueueItem

from .factories import make_project, make_team, make_user

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
