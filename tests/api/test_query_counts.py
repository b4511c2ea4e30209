"""What an alias move, a link and a launch claim cost in database round trips, through the API, so that the count
cannot creep up unnoticed. Each statement is counted (the savepoint pair of a service's atomic block included);
lower the limits as the hot paths get cheaper."""

from __future__ import annotations

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from launch import services as launch
from tests import factories as f

pytestmark = pytest.mark.django_db

# The agent's token (with its team); the claim itself, one statement that finds the queue among the agent's, takes the
# oldest pending item and returns what the answer shows. An empty queue adds the check that the agent serves it.
CLAIM_QUERIES = 2
EMPTY_CLAIM_QUERIES = 3
# The token with its user, the team and the role; the version with its aliases and tags; the move (lock, protection
# check, alias and event) in one statement, here between the savepoint pair the test's transaction adds.
ALIAS_MOVE_QUERIES = 5
# The token, team and role; the model; the artifact; the index taken (locking the model); the artifact locked with
# whether it is linked already; the version and its event; latest; the answer's tags; and the savepoint pair.
LINK_QUERIES = 11


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


@pytest.mark.django_db(transaction=True)
def test_an_alias_move_outside_a_transaction_is_three_statements_and_no_transaction_of_its_own(monkeypatch):
    """As in production (no ATOMIC_REQUESTS): the move is one statement, atomic by itself, so it needs neither a
    savepoint nor BEGIN and COMMIT."""
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    model = f.make_registered_model(team, "classifier")
    f.link(model, user=admin, aliases=["production"])
    f.link(model, user=admin)
    client = f.api_client(admin)
    assert client.get("/api/v1/teams/acme/").status_code == 200
    wrapper = connections["default"]
    commits = []
    monkeypatch.setattr(wrapper, "_commit", lambda real=wrapper._commit: commits.append(1) or real())
    with CaptureQueriesContext(connection) as queries:
        answer = client.post(
            "/api/v1/teams/acme/registered-models/classifier/versions/v1/aliases/", {"alias": "production"},
            format="json",
        )  # fmt: skip
    assert answer.status_code == 201 and answer.json()["aliases"] == ["latest", "production"]
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements == ["SELECT", "SELECT", "WITH"]
    assert commits == []  # no COMMIT, so no BEGIN either
