"""What an alias move, a link and a launch claim cost in database round trips, through the API, so that the count
cannot creep up unnoticed. Each statement is counted (the savepoint pair of a service's atomic block included);
lower the limits as the hot paths get cheaper."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from launch import services as launch
from tests import factories as f

pytestmark = pytest.mark.django_db

# Token, team, role; the version; the lock, the protection check, the alias moved, the event; the answer's aliases
# and tags.
ALIAS_MOVE_QUERIES = 14
# The same first three; the model and the artifact; the lock, the artifact's state, the existing link, the index,
# the version, its event and latest; the answer's version, aliases and tags.
LINK_QUERIES = 19
# The agent's token (with its team); the claim itself, one statement that finds the queue among the agent's, takes the
# oldest pending item and returns what the answer shows. An empty queue adds the check that the agent serves it.
CLAIM_QUERIES = 2
EMPTY_CLAIM_QUERIES = 3


@pytest.fixture
def acme():
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    model = f.make_registered_model(team, "classifier")
    f.link(model, user=admin, aliases=["production"])
    f.link(model, user=admin)
    f.make_artifact_version(team)
    client = f.api_client(admin)
    # A token's first use in a minute also records it (one UPDATE); a client making many calls does not pay that.
    assert client.get("/api/v1/teams/acme/").status_code == 200
    return client


def test_an_alias_move(acme, django_assert_max_num_queries):
    with django_assert_max_num_queries(ALIAS_MOVE_QUERIES):
        answer = acme.post(
            "/api/v1/teams/acme/registered-models/classifier/versions/v1/aliases/", {"alias": "production"},
            format="json",
        )  # fmt: skip
    assert answer.status_code == 201 and [e["type"] for e in answer.json()["events"]] == ["ADD_ARTIFACT_ALIAS"]


def test_a_link(acme, django_assert_max_num_queries):
    with django_assert_max_num_queries(LINK_QUERIES):
        answer = acme.post(
            "/api/v1/teams/acme/registered-models/classifier/versions/", {"artifact": "acme/training/classifier:v2"},
            format="json",
        )  # fmt: skip
    assert answer.status_code == 201 and answer.json()["version"] == "v2"


@pytest.fixture
def agent():
    team = f.make_team("acme")
    project = f.make_project(team, "training")
    job = launch.job_create(team=team, name="train", project=project.name)
    version = launch.job_version_create(job=job, entrypoint=["python", "train.py"], default_config={"lr": 0.1})
    queue = launch.run_queue_create(team=team, name="gpu")
    for _ in range(2):
        launch.item_enqueue(queue=queue, job_version=version, destination_project=project)
    _, token = launch.agent_create(team=team, name="box-1", queues=["gpu"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    # An agent's first request in a few seconds also records its contact (one UPDATE); a polling agent does not pay
    # that on every claim.
    assert client.get("/api/v1/launch/agent/").status_code == 200
    return client


def test_a_launch_claim(agent, django_assert_max_num_queries):
    for _ in range(2):
        with django_assert_max_num_queries(CLAIM_QUERIES):
            answer = agent.post("/api/v1/teams/acme/launch/queues/gpu/claim/")
        assert answer.status_code == 200 and answer.json()["job_version"] == "train:v0"
    with django_assert_max_num_queries(EMPTY_CLAIM_QUERIES):
        assert agent.post("/api/v1/teams/acme/launch/queues/gpu/claim/").status_code == 204
