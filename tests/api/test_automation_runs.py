"""An automation's history, throttle, runs by hand and previews, through the API.

History: every event an automation matched and what it did (a delivery or a queue item, with how it went) or why it
skipped it. Throttle: at most N runs per window; an event over it is a skipped run with the reason. Run now: a
manual event of the automation's type for a chosen version, for that automation alone, refused when it is disabled
and outside the throttle. Preview: the payload rendered against a past event, sent nowhere.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from automations import services as automations
from automations.models import AutomationRun, Delivery
from core.roles import Role
from launch import services as launch
from launch.models import RunQueueItem
from registry import outbox
from registry.models import Event
from secrets_vault import services as vault
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(settings):
    """Team acme: 'classifier' v0 holds production; a webhook; an automation on its links."""
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user("ada")
    team = f.make_team("acme", admin=admin)
    f.link(f.make_registered_model(team, "classifier"), user=admin, aliases=["production"])
    vault.secret_create(team=team, name="TOKEN", value="s3cr3t-value", user=admin)
    webhook = automations.webhook_create(team=team, name="hook", url=f.PARKED_URL, user=admin)
    f.dispatch_all()
    return team, admin, webhook


def automation(team, admin, webhook, **changes):
    values = {
        "name": "notify", "event_type": "LINK_ARTIFACT", "action_type": "WEBHOOK", "webhook": webhook.pk,
        "payload": {"v": "${artifact_version_string}", "token": "${TOKEN}"}, "registered_model": "classifier",
    }  # fmt: skip
    return automations.automation_create(team=team, user=admin, **{**values, **changes})


def link_again(team, admin, n: int = 1) -> None:
    for _ in range(n):
        f.link(f.make_registered_model(team, "classifier"), user=admin)
        f.dispatch_all()


def api(team, client, path: str, method: str = "get", body=None):
    return getattr(client, method)(f"/api/v1/teams/{team.name}/{path}", body, format="json")


# --- History ----------------------------------------------------------------------------------------------


def test_the_history_lists_each_run_with_its_delivery_and_its_status(acme):
    team, admin, webhook = acme
    on_links = automation(team, admin, webhook)
    link_again(team, admin, 2)
    Delivery.objects.filter(event__context__version="v1").update(status="succeeded")
    Delivery.objects.filter(event__context__version="v2").update(status="failed")

    answer = api(team, f.api_client(admin), f"automations/{on_links.pk}/runs/")

    assert answer.status_code == 200, answer.content
    runs = answer.json()["results"]
    assert [(r["version"], r["outcome"], r["delivery_status"], r["manual"]) for r in runs] == [
        ("acme/model-registry/classifier:v2", "delivery", "failed", False),
        ("acme/model-registry/classifier:v1", "delivery", "succeeded", False),
    ]
    assert {r["delivery"] for r in runs} == {str(d.pk) for d in Delivery.objects.all()}
    # Every role reads it.
    viewer = f.add_member(team, role=Role.VIEWER)
    assert api(team, f.api_client(viewer), f"automations/{on_links.pk}/runs/").json()["results"] == runs


def test_a_launch_automation_s_runs_name_their_queue_items(acme):
    team, admin, _ = acme
    f.make_project(team, "evaluation")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=["python", "eval.py"])
    launch.run_queue_create(team=team, name="gpu")
    evaluate = automations.automation_create(
        team=team, user=admin, name="evaluate", event_type="LINK_ARTIFACT", action_type="LAUNCH_JOB", job="evaluate",
        job_version="v0", queue="gpu", destination_project="evaluation", overrides={"model": "${artifact_version}"},
    )  # fmt: skip
    link_again(team, admin)

    (run,) = api(team, f.api_client(admin), f"automations/{evaluate.pk}/runs/").json()["results"]

    assert (run["outcome"], run["item"], run["item_state"]) == ("queued", str(RunQueueItem.objects.get().pk), "pending")


# --- Throttle ---------------------------------------------------------------------------------------------


def test_events_over_the_throttle_are_skipped_with_the_reason(acme):
    team, admin, webhook = acme
    throttled = automation(team, admin, webhook, throttle_runs=2, throttle_window=60)

    link_again(team, admin, 4)

    assert Delivery.objects.count() == 2
    runs = list(AutomationRun.objects.filter(automation=throttled).order_by("created_at", "pk"))
    assert [r.outcome for r in runs] == ["delivery", "delivery", "skipped", "skipped"]
    assert runs[2].reason == "Throttled: 2 runs in the last minute, at most 2 per minute."
    skipped = api(team, f.api_client(admin), f"automations/{throttled.pk}/runs/", body={"outcome": "skipped"})
    assert [r["reason"] for r in skipped.json()["results"]] == [runs[2].reason] * 2


def test_the_window_slides(acme):
    team, admin, webhook = acme
    throttled = automation(team, admin, webhook, throttle_runs=1, throttle_window=60)
    link_again(team, admin)
    AutomationRun.objects.update(created_at=AutomationRun.objects.get().created_at.replace(year=2000))

    link_again(team, admin)

    assert [r.outcome for r in AutomationRun.objects.filter(automation=throttled)] == ["delivery", "delivery"]


@pytest.mark.django_db(transaction=True)
def test_events_dispatched_at_once_never_pass_the_throttle(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    admin = f.make_user()
    team = f.make_team("acme", admin=admin)
    model = f.make_registered_model(team, "classifier")
    webhook = automations.webhook_create(team=team, name="hook", url=f.PARKED_URL, user=admin)
    automation(team, admin, webhook, throttle_runs=1, throttle_window=3600, payload={"a": 1})
    events = [Event.objects.get(type="LINK_ARTIFACT", model_version=f.link(model, user=admin)).pk for _ in range(6)]
    barrier = threading.Barrier(len(events))

    def dispatch(event_id) -> None:
        barrier.wait()
        try:
            outbox.event_dispatch(event_id=event_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatch, args=(pk,)) for pk in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Event.objects.filter(pk__in=events, dispatched_at__isnull=False).count() == 6
    assert sorted(AutomationRun.objects.values_list("outcome", flat=True)) == ["delivery"] + ["skipped"] * 5


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"throttle_runs": 5}, "throttle_window", "both"),
        ({"throttle_window": 60}, "throttle_runs", "both"),
        ({"throttle_runs": 0, "throttle_window": 60}, "throttle_runs", "from 1 to"),
        ({"throttle_runs": 5, "throttle_window": 10**9}, "throttle_window", "from 1 to 604800"),
        ({"throttle_runs": True, "throttle_window": 60}, "throttle_runs", "integer"),
        ({"throttle_runs": "many", "throttle_window": 60}, "throttle_runs", "integer"),
    ],
)
def test_a_bad_throttle_is_refused_naming_the_field(acme, body, field, reason):
    team, admin, webhook = acme
    on_links = automation(team, admin, webhook)

    answer = api(team, f.api_client(admin), f"automations/{on_links.pk}/", "patch", body)

    assert answer.status_code == 400, answer.content
    assert list(answer.json()["errors"]) == [field] and reason in answer.json()["errors"][field][0], answer.json()
    on_links.refresh_from_db()
    assert (on_links.throttle_runs, on_links.throttle_window) == (None, None)


def test_a_throttle_is_set_read_and_cleared(acme):
    team, admin, webhook = acme
    on_links = automation(team, admin, webhook)
    client = f.api_client(admin)
    path = f"automations/{on_links.pk}/"

    set_ = api(team, client, path, "patch", {"throttle_runs": 5, "throttle_window": 3600})
    cleared = api(team, client, path, "patch", {"throttle_runs": None, "throttle_window": None})

    assert (set_.json()["throttle_runs"], set_.json()["throttle_window"]) == (5, 3600)
    assert (cleared.json()["throttle_runs"], cleared.json()["throttle_window"]) == (None, None)


# --- Run now ----------------------------------------------------------------------------------------------


def test_run_now_fires_one_manual_event_for_that_automation_alone(acme):
    team, admin, webhook = acme
    deploy = automation(team, admin, webhook, name="deploy", event_type="ADD_ARTIFACT_ALIAS", alias_regex="^prod")
    automation(team, admin, webhook, name="also on aliases", event_type="ADD_ARTIFACT_ALIAS", registered_model=None)
    throttled = {"throttle_runs": 1, "throttle_window": 3600}
    automations.automation_update(automation=deploy, **throttled)
    client = f.api_client(admin)

    answers = [
        api(team, client, f"automations/{deploy.pk}/run/", "post", {"version": "classifier:production"})
        for _ in range(2)
    ]
    f.dispatch_all()

    assert [a.status_code for a in answers] == [202, 202], answers[0].content
    (fired,) = answers[0].json()["events"]
    assert (fired["type"], fired["alias"], fired["manual"]) == ("ADD_ARTIFACT_ALIAS", "production", True)
    event = Event.objects.get(pk=fired["id"])
    assert event.manual_for == deploy.pk and event.context["artifact_version_string"].endswith(":production")
    # Only the automation run, and both runs although the throttle allows one an hour: manual runs are outside it.
    assert sorted(Delivery.objects.values_list("automation_name", flat=True)) == ["deploy", "deploy"]
    assert list(AutomationRun.objects.values_list("manual", "outcome")) == [(True, "delivery")] * 2
    feed = api(team, client, "events/", body={"type": "ADD_ARTIFACT_ALIAS"}).json()["results"]
    assert [(e["manual"], e["automation"]) for e in feed if e["id"] == fired["id"]] == [(True, deploy.pk)]


@pytest.mark.parametrize(
    "version", ["classifier:production", "model-registry/classifier:production", "acme/model-registry/classifier:v0"]
)
def test_run_now_takes_every_form_of_a_model_version_reference(acme, version):
    team, admin, webhook = acme
    on_links = automation(team, admin, webhook, name="on links")

    answer = api(team, f.api_client(admin), f"automations/{on_links.pk}/run/", "post", {"version": version})

    assert answer.status_code == 202, answer.content
    assert Event.objects.get(pk=answer.json()["events"][0]["id"]).context["version"] == "v0"


def test_run_now_takes_a_version_with_an_alias_named_apart(acme):
    team, admin, webhook = acme
    deploy = automation(team, admin, webhook, name="deploy", event_type="ADD_ARTIFACT_ALIAS")
    client = f.api_client(admin)

    answer = api(team, client, f"automations/{deploy.pk}/run/", "post", {"version": "v0", "alias": "staging"})
    missing = api(team, client, f"automations/{deploy.pk}/run/", "post", {"version": "classifier:v0"})

    assert answer.status_code == 202 and answer.json()["events"][0]["alias"] == "staging"
    assert missing.status_code == 400 and list(missing.json()["errors"]) == ["alias"]


def test_run_now_for_an_artifact_event(acme):
    team, admin, webhook = acme
    on_created = automation(
        team, admin, webhook, name="created", event_type="CREATE_ARTIFACT", registered_model=None,
        project="training", payload={"v": "${artifact_version_string}"},
    )  # fmt: skip
    tagged = automation(
        team, admin, webhook, name="tagged", event_type="ADD_ARTIFACT_TAG", registered_model=None,
        project="training", collection="classifier", payload={"tag": "${tag}"},
    )  # fmt: skip
    client = f.api_client(admin)

    created = api(team, client, f"automations/{on_created.pk}/run/", "post", {"version": "training/classifier:v0"})
    with_tag = api(team, client, f"automations/{tagged.pk}/run/", "post", {"version": "v0", "tag": "reviewed"})
    no_tag = api(team, client, f"automations/{tagged.pk}/run/", "post", {"version": "v0"})

    assert created.status_code == 202 and with_tag.status_code == 202, (created.content, with_tag.content)
    assert Event.objects.get(pk=with_tag.json()["events"][0]["id"]).context["tag"] == "reviewed"
    assert no_tag.status_code == 400 and list(no_tag.json()["errors"]) == ["tag"]


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"version": "detector:v0"}, "version", "watches classifier"),
        ({"version": "classifier:v9"}, "version", "no version"),
        ({"version": ""}, "version", "blank"),
        ({}, "version", "required"),
        ({"version": "classifier:production", "alias": "bad alias"}, "alias", "Invalid alias"),
    ],
)
def test_run_now_refuses_what_it_cannot_run_and_records_nothing(acme, body, field, reason):
    team, admin, webhook = acme
    deploy = automation(team, admin, webhook, name="deploy", event_type="ADD_ARTIFACT_ALIAS")
    events = Event.objects.count()

    answer = api(team, f.api_client(admin), f"automations/{deploy.pk}/run/", "post", body)

    assert answer.status_code == 400, answer.content
    assert list(answer.json()["errors"]) == [field] and reason in answer.json()["errors"][field][0], answer.json()
    assert Event.objects.count() == events


def test_run_now_is_refused_for_a_disabled_automation_and_for_members(acme):
    team, admin, webhook = acme
    deploy = automation(team, admin, webhook, name="deploy", event_type="ADD_ARTIFACT_ALIAS", enabled=False)
    member = f.add_member(team, role=Role.MEMBER)
    body = {"version": "classifier:production"}
    events = Event.objects.count()

    disabled = api(team, f.api_client(admin), f"automations/{deploy.pk}/run/", "post", body)
    by_member = api(team, f.api_client(member), f"automations/{deploy.pk}/run/", "post", body)

    assert disabled.status_code == 409 and "is disabled" in disabled.json()["detail"]
    assert by_member.status_code == 403
    assert Event.objects.count() == events


# --- Preview ----------------------------------------------------------------------------------------------


def test_preview_renders_against_a_chosen_past_event_and_sends_nothing(acme):
    team, admin, webhook = acme
    on_links = automation(team, admin, webhook)
    first = Event.objects.get(type="LINK_ARTIFACT")
    link_again(team, admin)
    client = f.api_client(admin)
    deliveries = Delivery.objects.count()

    latest = api(team, client, f"automations/{on_links.pk}/preview/")
    chosen = client.get(f"/api/v1/teams/acme/automations/{on_links.pk}/preview/", {"event": str(first.pk)})

    assert latest.status_code == 200 and chosen.status_code == 200, latest.content
    assert latest.json()["version"] == "acme/model-registry/classifier:v1"
    assert chosen.json()["body"] == '{"v":"acme/model-registry/classifier:v0","token":"${TOKEN}"}'
    assert "s3cr3t-value" not in latest.content.decode()
    assert Delivery.objects.count() == deliveries


def test_preview_refuses_an_event_of_another_type_or_team(acme):
    team, admin, webhook = acme
    on_links = automation(team, admin, webhook)
    alias_event = Event.objects.get(type="ADD_ARTIFACT_ALIAS")
    client = f.api_client(admin)

    for value in (str(alias_event.pk), "not-an-id", "00000000-0000-0000-0000-000000000000"):
        answer = client.get(f"/api/v1/teams/acme/automations/{on_links.pk}/preview/", {"event": value})
        assert answer.status_code == 400 and list(answer.json()["errors"]) == ["event"], answer.content


def test_preview_of_a_launch_automation_is_its_queue_items_config(acme):
    team, admin, _ = acme
    f.make_project(team, "evaluation")
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=["python", "eval.py"], default_config={"epochs": 1})
    launch.run_queue_create(team=team, name="gpu")
    evaluate = automations.automation_create(
        team=team, user=admin, name="evaluate", event_type="LINK_ARTIFACT", action_type="LAUNCH_JOB", job="evaluate",
        job_version="v0", queue="gpu", destination_project="evaluation",
        overrides={"model": "${artifact_version_string}"},
    )  # fmt: skip

    answer = api(team, f.api_client(admin), f"automations/{evaluate.pk}/preview/")

    assert answer.json()["config"] == {"epochs": 1, "model": "acme/model-registry/classifier:v0"}
