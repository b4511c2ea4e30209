"""What an alias move and a link cost in database round trips, through the API, so that the count cannot creep up
unnoticed. Each statement is counted (the savepoint pair of the service's atomic block included); lower the limits
as the hot paths get cheaper."""

from __future__ import annotations

import pytest

from tests import factories as f

pytestmark = pytest.mark.django_db

# Token, team, role; the version; the lock, the protection check, the alias moved, the event; the answer's aliases
# and tags.
ALIAS_MOVE_QUERIES = 14
# The same first three; the model and the artifact; the lock, the artifact's state, the existing link, the index,
# the version, its event and latest; the answer's version, aliases and tags.
LINK_QUERIES = 19


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
