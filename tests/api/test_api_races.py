"""Concurrent writes to teams, members and users on PostgreSQL: a lost race answers 409, never a 500, and the end
state is consistent.

Each request runs in its own thread with its own connection. A query hook holds every request at a barrier right
after the query named in the test, so that all of them are past it before any goes on: the interleaving that used to
deadlock (or break a unique constraint) happens every run instead of now and then. A request that a lock keeps from
reaching the barrier makes the others wait out its timeout and go on alone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from core.roles import Role
from registry.models import Membership, Team
from tests import factories as f

pytestmark = pytest.mark.django_db(transaction=True)

BARRIER_TIMEOUT = 1.5


def race(requests: list[Callable[[], object]], *, hold_after: str) -> list:
    """Run the requests at once, each held after its first query containing ``hold_after`` until all got there."""
    barrier = threading.Barrier(len(requests), timeout=BARRIER_TIMEOUT)
    answers: list = [None] * len(requests)

    def run(index: int, request: Callable[[], object]) -> None:
        held = False

        def hold(execute, sql, params, many, context):
            nonlocal held
            result = execute(sql, params, many, context)
            if not held and hold_after in sql:
                held = True
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
            return result

        try:
            with connection.execute_wrapper(hold):
                answers[index] = request()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return answers


def client_of(user):
    client = f.api_client(user)
    client.raise_request_exception = False  # a server error is an answer to assert on, not an exception
    return client


def assert_409_with_reason(response, field: str) -> None:
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "conflict" and body["detail"] and field in body["errors"], body


def test_two_admins_demoting_each_other_at_once_leave_one_admin_and_the_other_gets_409():
    ann, bob = f.make_user("ann"), f.make_user("bob")
    team = f.make_team("acme", admin=ann)
    f.add_member(team, bob, role=Role.ADMIN)

    def demote(by, whom):
        url = reverse("member", kwargs={"team": "acme", "username": whom.username})
        return lambda: client_of(by).patch(url, {"role": Role.MEMBER}, format="json")

    answers = race([demote(ann, bob), demote(bob, ann)], hold_after="FOR UPDATE")

    assert sorted(a.status_code for a in answers) == [200, 409], [a.content for a in answers]
    assert_409_with_reason(next(a for a in answers if a.status_code == 409), "role")
    assert Membership.objects.filter(team=team, role=Role.ADMIN).count() == 1


def test_an_admin_removed_while_demoting_the_other_leaves_one_admin():
    ann, bob = f.make_user("ann"), f.make_user("bob")
    team = f.make_team("acme", admin=ann)
    f.add_member(team, bob, role=Role.ADMIN)
    remove_bob = reverse("member", kwargs={"team": "acme", "username": "bob"})
    demote_ann = reverse("member", kwargs={"team": "acme", "username": "ann"})

    answers = race(
        [
            lambda: client_of(ann).delete(remove_bob),
            lambda: client_of(bob).patch(demote_ann, {"role": Role.VIEWER}, format="json"),
        ],
        hold_after="FOR UPDATE",
    )

    assert sorted(a.status_code for a in answers) in ([200, 409], [204, 409]), [a.content for a in answers]
    assert Membership.objects.filter(team=team, role=Role.ADMIN).count() == 1


def test_creating_the_same_team_twice_at_once_creates_one_and_answers_409():
    root = f.make_user("root", superuser=True)
    url = reverse("teams")

    answers = race(
        [lambda: client_of(root).post(url, {"name": "acme"}, format="json") for _ in range(2)],
        hold_after='FROM "registry_team" WHERE',
    )

    assert sorted(a.status_code for a in answers) == [201, 409], [a.content for a in answers]
    assert_409_with_reason(next(a for a in answers if a.status_code == 409), "name")
    team = Team.objects.get(name="acme")
    assert list(team.memberships.values_list("user__username", "role")) == [("root", Role.ADMIN)]
    assert team.projects.count() == 1


def test_creating_the_same_user_twice_at_once_creates_one_and_answers_409():
    root = f.make_user("root", superuser=True)
    url = reverse("users")
    body = {"username": "carol", "password": f.PASSWORD}

    answers = race(
        [lambda: client_of(root).post(url, body, format="json") for _ in range(2)],
        hold_after='WHERE "auth_user"."username"',
    )

    assert sorted(a.status_code for a in answers) == [201, 409], [a.content for a in answers]
    assert_409_with_reason(next(a for a in answers if a.status_code == 409), "username")
    assert get_user_model().objects.filter(username="carol").count() == 1
