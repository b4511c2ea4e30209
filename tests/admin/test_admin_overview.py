"""The overview on the admin index: a team admin sees deliveries, broken webhooks, queues and agents of the teams
they administer, and nothing of any other team; the page's queries do not grow with the data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations import services as automations
from automations.models import Delivery, Webhook
from core.roles import Role
from launch import services as launch
from launch.models import Agent, RunQueue, RunQueueItem
from registry.models import Event, Team
from tests.factories import add_member, link, make_project, make_registered_model, make_team, make_user

pytestmark = pytest.mark.django_db
LONG_REASON = "The endpoint answered 410 Gone. " + "x" * 300


@dataclass
class Side:
    """One team's data, named after the team so the other team's page can be searched for it."""

    team: Team
    admin: object
    queue: RunQueue


def make_deliveries(team: Team, status: str, count: int, *, hours_ago: float = 0) -> None:
    """Deliveries in bulk through the ORM (dispatching events one by one would only slow the tests)."""
    event = Event.objects.filter(team=team).first()
    if event is None:
        event = Event.objects.get(model_version=link(make_registered_model(team)))
    created = Delivery.objects.bulk_create(
        Delivery(
            team=team,
            event=event,
            automation_name="notify",
            webhook_name="hook",
            url="http://127.0.0.1:9/",
            payload_template={},
            status=status,
        )
        for _ in range(count)
    )
    if hours_ago:
        when = timezone.now() - timedelta(hours=hours_ago)
        Delivery.objects.filter(pk__in=[d.pk for d in created]).update(created_at=when)


def make_agent(team: Team, name: str, queue: RunQueue, *, seen_ago: float | None, disabled: bool = False) -> Agent:
    agent, _ = launch.agent_create(team=team, name=name, queues=[queue.name])
    last_seen = None if seen_ago is None else timezone.now() - timedelta(seconds=seen_ago)
    Agent.objects.filter(pk=agent.pk).update(last_seen_at=last_seen, disabled=disabled)
    return agent


def make_side(name: str, settings) -> Side:
    admin = make_user(f"{name}-admin", staff=True)
    team = make_team(name, admin=admin)
    project = make_project(team, "training")
    job = launch.job_create(team=team, name="train", project="training")
    version = launch.job_version_create(job=job, entrypoint=["true"])
    queue = launch.run_queue_create(team=team, name=f"{name}-gpu")
    launch.run_queue_create(team=team, name=f"{name}-idle")
    for _ in range(2 if name == "alpha" else 4):
        launch.item_enqueue(queue=queue, job_version=version, destination_project=project)
    running = launch.item_enqueue(queue=queue, job_version=version, destination_project=project)
    RunQueueItem.objects.filter(pk=running.pk).update(state="running")
    finished = launch.item_enqueue(queue=queue, job_version=version, destination_project=project)
    RunQueueItem.objects.filter(pk=finished.pk).update(state="finished")

    lease = settings.LAUNCH_LEASE_SECONDS
    make_agent(team, f"{name}-box", queue, seen_ago=lease)  # one missed heartbeat: still online
    make_agent(team, f"{name}-lost", queue, seen_ago=3 * lease)
    make_agent(team, f"{name}-off", queue, seen_ago=1, disabled=True)
    make_agent(team, f"{name}-new", queue, seen_ago=None)

    gone = automations.webhook_create(team=team, name=f"{name}-gone", url="http://127.0.0.1:9/", user=admin)
    automations.webhook_disable(webhook_id=gone.pk, reason=LONG_REASON)
    flaky = automations.webhook_create(team=team, name=f"{name}-flaky", url="http://127.0.0.1:9/", user=admin)
    Webhook.objects.filter(pk=flaky.pk).update(last_error=f"2025-01-01 00:00:00 UTC: {name} answered 503")
    automations.webhook_create(team=team, name=f"{name}-healthy", url="http://127.0.0.1:9/", user=admin)
    return Side(team, admin, queue)


@pytest.fixture
def sides(settings) -> tuple[Side, Side]:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    alpha, bravo = make_side("alpha", settings), make_side("bravo", settings)
    make_deliveries(alpha.team, "succeeded", 3)
    make_deliveries(alpha.team, "succeeded", 1, hours_ago=5)
    make_deliveries(alpha.team, "succeeded", 6, hours_ago=30)  # outside the window
    make_deliveries(alpha.team, "failed", 2)
    make_deliveries(bravo.team, "retrying", 7)
    make_deliveries(bravo.team, "sending", 9, hours_ago=2)
    return alpha, bravo


def index(client, user) -> str:
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    return response.content.decode()


def legend(page: str) -> dict[str, int]:
    return {status: int(count) for status, count in re.findall(r'<li data-status="(\w+)">.*?<b>(\d+)</b></li>', page)}


def bar_segments(page: str) -> list[tuple[str, int]]:
    return [(status, int(count)) for status, count in re.findall(r'data-status="(\w+)" data-count="(\d+)"', page)]


def test_a_team_admin_sees_their_team_and_never_the_other(client, sides):
    alpha, _ = sides
    page = index(client, alpha.admin)

    assert 'id="registry-overview"' in page
    assert legend(page) == {"succeeded": 4, "failed": 2, "retrying": 0, "sending": 0, "pending": 0}
    assert sorted(bar_segments(page)) == [("failed", 2), ("succeeded", 1), ("succeeded", 3)]
    assert page.count('<rect class="overview-track"') == 24

    assert "alpha/alpha-gone" in page and "alpha/alpha-flaky" in page and "alpha answered 503" in page
    assert "The endpoint answered 410 Gone." in page and LONG_REASON not in page  # shortened
    assert "alpha-healthy" not in page
    assert f"/admin/automations/webhook/{Webhook.objects.get(name='alpha-gone').pk}/change/" in page

    queue_row = re.search(
        r'\?queue__id__exact=(\d+)">alpha/alpha-gpu</a></th>\s*<td[^>]*>(\d+)</td>\s*<td[^>]*>(\d+)', page
    )
    assert queue_row and queue_row.groups() == (str(alpha.queue.pk), "2", "1")
    assert "alpha/alpha-idle" in page

    assert re.search(r'overview-big">1</span> of 4', page)
    assert "alpha/alpha-box" in page
    for offline in ("alpha-lost", "alpha-off", "alpha-new"):
        assert offline not in page

    assert "bravo" not in page  # no webhook, queue, agent or team name of the other team


def test_the_other_team_admin_sees_only_theirs(client, sides):
    _, bravo = sides
    page = index(client, bravo.admin)
    assert legend(page) == {"succeeded": 0, "failed": 0, "retrying": 7, "sending": 9, "pending": 0}
    assert "bravo/bravo-gone" in page and "bravo/bravo-box" in page and "bravo/bravo-gpu" in page
    assert "alpha" not in page


def test_an_admin_of_one_team_and_viewer_of_another_sees_only_the_first(client, sides):
    alpha, bravo = sides
    add_member(bravo.team, alpha.admin, Role.VIEWER)
    page = index(client, alpha.admin)
    assert "alpha/alpha-gpu" in page and "bravo" not in page


def test_a_superuser_sees_every_team(client, sides):
    page = index(client, make_user("root", superuser=True))
    assert legend(page) == {"succeeded": 4, "failed": 2, "retrying": 7, "sending": 9, "pending": 0}
    for name in ("alpha/alpha-gone", "bravo/bravo-flaky", "alpha/alpha-gpu", "bravo/bravo-gpu", "bravo/bravo-box"):
        assert name in page
    assert re.search(r'overview-big">2</span> of 8', page)


def test_a_staff_viewer_sees_no_overview(client, sides):
    alpha, _ = sides
    viewer = add_member(alpha.team, make_user("watcher", staff=True), Role.VIEWER)
    page = index(client, viewer)
    assert "registry-overview" not in page
    assert "alpha" not in page


def test_a_staff_member_without_teams_sees_the_plain_index(client, sides):
    page = index(client, make_user("loner", staff=True))
    assert "registry-overview" not in page


def test_no_deliveries_and_no_queues_still_render(client):
    admin = make_user("solo", staff=True)
    make_team("solo", admin=admin)
    page = index(client, admin)
    assert legend(page) == {"succeeded": 0, "failed": 0, "retrying": 0, "sending": 0, "pending": 0}
    assert bar_segments(page) == []
    assert "No run queues." in page and "All webhooks are enabled" in page


def test_index_queries_do_not_grow_with_deliveries(client, sides):
    alpha, _ = sides
    client.force_login(alpha.admin)
    client.get("/admin/")  # warm caches (content types, sessions) that are not the overview's doing

    make_deliveries(alpha.team, "pending", 5)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/admin/").status_code == 200
    for hours_ago in range(0, 23):
        make_deliveries(alpha.team, "succeeded", 2, hours_ago=hours_ago)
    make_deliveries(alpha.team, "pending", 45)
    with CaptureQueriesContext(connection) as many:
        page = client.get("/admin/").content.decode()
    assert legend(page)["pending"] == 50
    assert len(many) == len(few), [q["sql"] for q in many]
    assert len(few) <= 15
