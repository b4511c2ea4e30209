"""Launch over HTTP: jobs, queues, agents, and the agent protocol (claim, heartbeat, report, cancel, leases)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from launch import services
from launch.models import RunQueueItem
from registry.choices import Role

from .factories import add_member, api_client, make_project, make_team, make_user

pytestmark = pytest.mark.django_db


def agent_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def setup():
    admin = make_user()
    team = make_team(admin=admin)
    make_project(team, "training")
    client = api_client(admin)
    base = f"/api/v1/teams/{team.name}/launch/"
    assert client.post(base + "jobs/", {"name": "train", "project": "training"}, format="json").status_code == 201
    version = client.post(
        base + "jobs/train/versions/",
        {"entrypoint": ["python", "train.py"], "default_config": {"lr": 0.1, "opt": {"name": "sgd", "m": 0.9}}},
        format="json",
    )
    assert version.status_code == 201 and version.json()["version"] == "v0"
    assert client.post(base + "queues/", {"name": "gpu"}, format="json").status_code == 201
    created = client.post(base + "agents/", {"name": "box-1", "queues": ["gpu"]}, format="json")
    assert created.status_code == 201
    return team, client, base, created.json()["token"]


def enqueue(client, base, **overrides):
    response = client.post(
        base + "queues/gpu/items/",
        {"job": "train", "job_version": "v0", "overrides": overrides, "destination_project": "training"},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_an_item_goes_from_pending_to_finished_through_the_agent_protocol(setup):
    team, client, base, token = setup
    item = enqueue(client, base, lr=0.01, opt={"m": 0.5})
    assert item["config"] == {"lr": 0.01, "opt": {"name": "sgd", "m": 0.5}}  # defaults overlaid, deeply
    agent = agent_client(token)

    assert agent.get("/api/v1/launch/agent/").json() == {"team": team.name, "name": "box-1", "queues": ["gpu"]}
    claimed = agent.post(base + "queues/gpu/claim/")
    assert claimed.status_code == 200 and claimed.json()["id"] == item["id"]
    assert claimed.json()["state"] == "claimed" and claimed.json()["attempts"] == 1
    assert agent.post(base + "queues/gpu/claim/").status_code == 204  # nothing else pending

    running = agent.patch(base + f"items/{item['id']}/", {"state": "running"}, format="json")
    assert running.status_code == 200 and running.json()["started_at"]
    beat = agent.post(base + f"items/{item['id']}/heartbeat/", {"log_tail": "epoch 1\n"}, format="json")
    assert beat.status_code == 200 and beat.json()["cancel_requested"] is False
    done = agent.patch(
        base + f"items/{item['id']}/", {"state": "finished", "exit_code": 0, "log_tail": "done\n"}, format="json"
    )
    assert done.json()["state"] == "finished" and done.json()["exit_code"] == 0
    assert client.get(base + f"items/{item['id']}/").json()["log_tail"] == "done\n"


def test_cancelling_a_running_item_is_seen_at_the_next_heartbeat(setup):
    team, client, base, token = setup
    item = enqueue(client, base)
    agent = agent_client(token)
    agent.post(base + "queues/gpu/claim/")
    member = api_client(add_member(team, role=Role.MEMBER))

    assert member.post(base + f"items/{item['id']}/cancel/").status_code == 200
    assert agent.post(base + f"items/{item['id']}/heartbeat/").json()["cancel_requested"] is True
    agent.patch(base + f"items/{item['id']}/", {"state": "cancelled", "exit_code": -15}, format="json")
    assert RunQueueItem.objects.get(pk=item["id"]).state == "cancelled"
    assert member.post(base + f"items/{item['id']}/cancel/").status_code == 409


def test_an_expired_lease_returns_the_item_to_pending_then_fails_it(setup, settings):
    settings.LAUNCH_MAX_ATTEMPTS = 2
    _, client, base, token = setup
    item = enqueue(client, base)
    agent = agent_client(token)
    for expected in ("pending", "failed"):
        agent.post(base + "queues/gpu/claim/")
        RunQueueItem.objects.filter(pk=item["id"]).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert services.items_expire_leases() == 1
        found = RunQueueItem.objects.get(pk=item["id"])
        assert found.state == expected and found.agent is None
    assert "gave up" in found.reason
    # The agent that lost it may not report on it any more.
    lost = agent.patch(base + f"items/{item['id']}/", {"state": "finished", "exit_code": 0}, format="json")
    assert lost.status_code == 409


def test_agent_tokens_reach_only_their_own_team_and_protocol(setup):
    team, client, base, token = setup
    other_admin = make_user()
    other = make_team(admin=other_admin)
    other_client = api_client(other_admin)
    other_base = f"/api/v1/teams/{other.name}/launch/"
    other_client.post(other_base + "queues/", {"name": "gpu"}, format="json")
    other_token = other_client.post(other_base + "agents/", {"name": "b", "queues": ["gpu"]}, format="json").json()[
        "token"
    ]
    item = enqueue(client, base)
    intruder = agent_client(other_token)

    assert intruder.post(base + "queues/gpu/claim/").status_code == 404
    assert intruder.get(base + f"items/{item['id']}/").status_code == 404
    assert intruder.post(base + f"items/{item['id']}/heartbeat/").status_code == 404
    # An agent token is not a user's: member routes are closed to it.
    assert agent_client(token).get(f"/api/v1/teams/{team.name}/registered-models/").status_code == 404
    assert agent_client(token).get("/api/v1/teams/").json()["results"] == []
    assert agent_client("agt_forged").post(base + "queues/gpu/claim/").status_code == 401
    assert RunQueueItem.objects.get(pk=item["id"]).state == "pending"


def test_bad_launch_input_names_the_field(setup):
    _, client, base, _ = setup
    cases = [
        ("jobs/", {"name": "bad name", "project": "training"}, "name"),
        ("jobs/", {"name": "x", "project": "nope"}, "project"),
        ("jobs/train/versions/", {"entrypoint": []}, "entrypoint"),
        ("jobs/train/versions/", {"entrypoint": ["python"], "default_config": [1]}, "default_config"),
        ("queues/", {"name": "q", "resource_type": "kubernetes"}, "resource_type"),
        ("agents/", {"name": "a", "queues": ["nope"]}, "queues"),
        ("queues/gpu/items/", {"job": "train", "job_version": "v9", "destination_project": "training"}, "job_version"),
    ]
    for path, body, field in cases:
        response = client.post(base + path, body, format="json")
        assert 400 <= response.status_code < 500, (path, body, response.content)
        assert field in response.json()["errors"] or response.status_code == 404, (path, response.json())


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_hand_out_an_item_twice(setup):
    _, client, base, _ = setup
    for _ in range(40):
        enqueue(client, base)
    tokens = [client.post(base + "agents/", {"name": f"a{n}", "queues": ["gpu"]}, format="json").json()["token"]
              for n in range(6)]  # fmt: skip
    claimed: list[str] = []
    lock = threading.Lock()

    def run(raw: str) -> None:
        agent = agent_client(raw)
        try:
            while (response := agent.post(base + "queues/gpu/claim/")).status_code == 200:
                with lock:
                    claimed.append(response.json()["id"])
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(claimed) == 40 and len(set(claimed)) == 40
