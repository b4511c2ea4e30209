"""Launch over HTTP: jobs, queues, agents, the agent protocol (claim, heartbeat, report, cancel, leases), and what
an agent token may read of its team (artifact versions and their files, for a job's model version)."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from hashlib import sha256 as _sha256

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import ApplicationError
from core.roles import Role
from launch import services
from launch.models import Job, RunQueueItem
from registry import blobs, manifests
from tests.factories import add_member, api_client, make_project, make_team, make_user, registry_snapshot

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


def test_an_agent_reads_only_the_items_it_holds(setup):
    _, client, base, token = setup
    assert client.post(base + "queues/", {"name": "cpu"}, format="json").status_code == 201
    cpu_token = client.post(base + "agents/", {"name": "cpu-box", "queues": ["cpu"]}, format="json").json()["token"]
    gpu_token = client.post(base + "agents/", {"name": "box-2", "queues": ["gpu"]}, format="json").json()["token"]
    item = enqueue(client, base, lr=0.5)
    holder, other_queue, same_queue = agent_client(token), agent_client(cpu_token), agent_client(gpu_token)

    # Pending: no agent holds it yet, so none reads it (entrypoint and config stay with the team's members).
    for agent in (holder, other_queue, same_queue):
        assert agent.get(base + f"items/{item['id']}/").status_code == 404
    assert holder.post(base + "queues/gpu/claim/").json()["id"] == item["id"]

    read = holder.get(base + f"items/{item['id']}/")
    assert read.status_code == 200 and read.json()["config"]["lr"] == 0.5
    for agent in (other_queue, same_queue):
        refused = agent.get(base + f"items/{item['id']}/")
        assert refused.status_code == 404 and "train.py" not in refused.content.decode()
        # A report from an agent that does not hold the item stays the 409 a lost item answers.
        reported = agent.patch(base + f"items/{item['id']}/", {"state": "running"}, format="json")
        assert reported.status_code == 409 and "train.py" not in reported.content.decode()
    assert RunQueueItem.objects.get(pk=item["id"]).state == "claimed"
    assert client.get(base + f"items/{item['id']}/").status_code == 200  # members still read every item


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


# --- The event's model version --------------------------------------------------------------------------


def test_a_job_version_asks_for_the_events_model_version_and_its_items_say_so(setup):
    _, client, base, token = setup
    assert client.get(base + "jobs/train/versions/").json()["results"][0]["download_artifact"] is False  # default
    created = client.post(
        base + "jobs/train/versions/",
        {"entrypoint": ["python", "evaluate.py"], "download_artifact": True},
        format="json",
    )
    assert created.status_code == 201 and created.json()["download_artifact"] is True
    for version, expected in (("v0", False), ("v1", True)):
        client.post(
            base + "queues/gpu/items/",
            {"job": "train", "job_version": version, "destination_project": "training"},
            format="json",
        )
        claimed = agent_client(token).post(base + "queues/gpu/claim/").json()
        assert claimed["download_artifact"] is expected
        assert client.get(base + f"items/{claimed['id']}/").json()["download_artifact"] is expected


def test_download_artifact_must_be_a_boolean_and_a_refusal_writes_nothing(setup):
    _, client, base, _ = setup
    response = client.post(
        base + "jobs/train/versions/", {"entrypoint": ["true"], "download_artifact": {"yes": 1}}, format="json"
    )
    assert response.status_code == 400 and "download_artifact" in response.json()["errors"]
    assert [v["version"] for v in client.get(base + "jobs/train/versions/").json()["results"]] == ["v0"]
    with pytest.raises(ApplicationError) as refused:
        services.job_version_create(job=Job.objects.get(name="train"), entrypoint=["true"], download_artifact="yes")
    assert refused.value.field == "download_artifact"


def test_an_agent_fails_an_item_with_its_reason(setup):
    _, client, base, token = setup
    item = enqueue(client, base)
    agent = agent_client(token)
    agent.post(base + "queues/gpu/claim/")
    reason = "could not download the event's model version registry-artifact://_id/x: SHA-256 mismatch"
    failed = agent.patch(base + f"items/{item['id']}/", {"state": "failed", "reason": reason}, format="json")
    assert failed.status_code == 200
    assert failed.json()["reason"] == reason and failed.json()["state"] == "failed"
    assert client.get(base + f"items/{item['id']}/").json()["reason"] == reason


# --- What an agent may read: its own team's artifact versions -------------------------------------------


WEIGHTS = b"model weights \x00\x01" * 64


def sha256(data: bytes) -> str:
    return _sha256(data).hexdigest()


@pytest.fixture
def versions(setup):
    """A committed version with one file in the agent's team, and one in another team."""
    team, _, _, token = setup
    other = make_team(admin=make_user())
    made = {}
    for owner in (team, other):
        blobs.blob_receive(team=owner, sha256=sha256(WEIGHTS), size=len(WEIGHTS), stream=io.BytesIO(WEIGHTS))
        version = manifests.artifact_version_log(
            project=make_project(owner, "training"), collection_name="classifier", type="model", user=None,
            files=[{"path": "weights/model.bin", "size": len(WEIGHTS), "sha256": sha256(WEIGHTS)}],
        )  # fmt: skip
        made[owner.name], _ = manifests.artifact_version_commit(artifact_version=version)
    return team, other, made, token


def read_routes(team_name: str, version) -> list[str]:
    base = f"/api/v1/teams/{team_name}/"
    versions = base + "projects/training/artifacts/classifier/versions/"
    return [
        versions,
        versions + "v0/",
        versions + "v0/files/weights/model.bin",
        base + f"artifact-versions/{version.public_id}/",
        base + f"resolve/?reference=registry-artifact://_id/{version.public_id}",
        base + f"resolve/?reference={team_name}/training/classifier:latest",
    ]


def test_an_agent_reads_its_own_teams_artifact_versions_and_downloads_their_files(versions):
    team, _, made, token = versions
    agent = agent_client(token)
    answers = [agent.get(url) for url in read_routes(team.name, made[team.name])]

    assert [a.status_code for a in answers] == [200] * 6, [a.content[:200] for a in answers]
    assert b"".join(answers[2].streaming_content) == WEIGHTS
    for resolved in (answers[1], answers[3], answers[4], answers[5]):
        (file,) = resolved.json()["files"]
        assert file["sha256"] == sha256(WEIGHTS) and file["url"].endswith("/v0/files/weights/model.bin")


def test_an_agent_gets_404_for_another_teams_artifact_versions(versions):
    _, other, made, token = versions
    agent = agent_client(token)
    for url in read_routes(other.name, made[other.name]):
        response = agent.get(url)
        assert response.status_code == 404, url
        assert WEIGHTS not in response.content
    # Nor the other team's version through the agent's own team.
    own = f"/api/v1/teams/{versions[0].name}/"
    assert agent.get(own + f"artifact-versions/{made[other.name].public_id}/").status_code == 404
    across = agent.get(own + f"resolve/?reference={other.name}/training/classifier:v0")
    assert across.status_code == 400 and "files" not in across.json()  # a reference into another team is refused


def test_an_agent_only_reads_artifact_versions_and_nothing_else_of_its_team(versions):
    team, _, _, token = versions
    agent = agent_client(token)
    base = f"/api/v1/teams/{team.name}/"
    versions_url = base + "projects/training/artifacts/classifier/versions/"
    before = registry_snapshot()
    writes = [
        agent.post(versions_url, {"type": "model"}, format="json"),
        agent.delete(versions_url + "v0/"),
        agent.post(versions_url + "v0/commit/"),
        agent.put(versions_url + "v0/files/weights/model.bin", WEIGHTS, content_type="application/octet-stream"),
    ]
    assert [w.status_code for w in writes] == [403] * 4
    assert all("only reads" in w.json()["detail"] for w in writes)
    assert registry_snapshot() == before
    for url in ("registered-models/", "events/", "projects/", "members/", "blobs/missing/"):
        assert agent.get(base + url).status_code in (404, 405), url
