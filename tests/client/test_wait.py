"""``wait`` end to end: a real Celery worker dispatches the events and sends the deliveries to a loopback receiver,
an agent (this test, over the agent API) claims and reports the launch item; the client follows it all over HTTP."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from registry_client import Delivery, LaunchItem, Registry, TimedOut, WaitFailed
from registry_client.cli import main

from automations import services as automations
from core.roles import Role
from harness.receiver import Receiver, Reply
from launch import services as launch
from registry import services

from ..factories import add_member, make_project
from .conftest import deploy_automation

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WORKER = {
    "queues": "events,deliveries",
    "pool": "threads",
    "concurrency": 4,
    # a retried delivery waits a minute: long enough to still be `retrying` when a short wait gives up
    "extra_env": {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32", "WEBHOOK_RETRY_SCHEDULE": "60"},
}


@pytest.fixture(autouse=True)
def loopback_webhooks(settings, monkeypatch, account) -> None:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    monkeypatch.setenv("REGISTRY_TOKEN", account.token)  # for the command line


def on_production(account, url: str, *, launch_job: bool = False) -> None:
    """Automations on ADD_ARTIFACT_ALIAS production: a webhook to ``url``, and with ``launch_job`` a launch job."""
    team, admin = account.team, account.user
    webhook = automations.webhook_create(team=team, name="ci", url=url, user=admin)
    automations.automation_create(
        team=team, user=admin, name="notify", event_type="ADD_ARTIFACT_ALIAS", alias_regex="production",
        action_type="WEBHOOK", webhook=webhook.pk, payload={"model": "${artifact_version_string}"},
    )  # fmt: skip
    if launch_job:
        make_project(team, "evaluation")
        launch.run_queue_create(team=team, name="cpu")
        job = launch.job_create(team=team, name="evaluate", project="evaluation")
        launch.job_version_create(job=job, entrypoint=["true"], default_config={})
        automations.automation_create(
            team=team, user=admin, name="evaluate", event_type="ADD_ARTIFACT_ALIAS", alias_regex="production",
            action_type="LAUNCH_JOB", job="evaluate", job_version="v0", queue="cpu", destination_project="evaluation",
        )  # fmt: skip


def linked(registry, tmp_path) -> None:
    (tmp_path / "m.bin").write_bytes(b"weights")
    version = registry.log_artifact(tmp_path / "m.bin", project="training", name="classifier")
    registry.link(version.reference, "classifier")


def run_agent(account, stop: threading.Event) -> threading.Thread:
    """Claims the launch item over the agent API, reports it running, then finished."""
    _, token = launch.agent_create(team=account.team, name="box", queues=["cpu"])
    api = f"{account.url}/api/v1/teams/{account.team.name}/launch"
    headers = {"Authorization": f"Bearer {token}"}

    def work() -> None:
        while not stop.is_set():
            claimed = requests.post(f"{api}/queues/cpu/claim/", headers=headers, timeout=10)
            if claimed.status_code == 200:
                item = claimed.json()["id"]
                requests.patch(f"{api}/items/{item}/", json={"state": "running"}, headers=headers, timeout=10)
                time.sleep(0.5)
                done = {"state": "finished", "exit_code": 0}
                requests.patch(f"{api}/items/{item}/", json=done, headers=headers, timeout=10)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_wait_follows_an_alias_until_its_delivery_and_launch_item_have_settled(account, worker_factory, tmp_path):
    # As a training script runs it: a member's token, not an admin's.
    member = add_member(account.team, role=Role.MEMBER)
    _, token = services.api_token_create(user=member)
    with Registry(url=account.url, token=token, team=account.team.name) as registry, Receiver(Reply(200)) as receiver:
        on_production(account, receiver.url, launch_job=True)
        linked(registry, tmp_path)
        worker_factory(**WORKER)
        stop = threading.Event()
        agent = run_agent(account, stop)
        seen: list = []

        change = registry.add_alias("classifier:v0", "production")
        try:
            result = registry.wait(change, timeout=60, poll=0.2, on_update=seen.append)
        finally:
            stop.set()
            agent.join(10)

    assert [e.id for e in result.events] == [e.id for e in change.events] and result.events[0].dispatched
    assert [(d.status, d.automation_name) for d in result.deliveries] == [("succeeded", "notify")]
    assert [(i.state, i.exit_code) for i in result.items] == [("finished", 0)]
    assert len(receiver.requests) == 1
    item_states = [u.state for u in seen if isinstance(u, LaunchItem)]
    assert item_states[-1] == "finished" and len(item_states) >= 2  # reported as it moved, not only at the end
    assert [u.status for u in seen if isinstance(u, Delivery)][-1] == "succeeded"


def test_a_failed_delivery_fails_the_wait_and_a_retrying_one_has_not_settled(
    registry, account, worker_factory, tmp_path, capsys
):
    with Receiver(Reply(400), Reply(503)) as receiver:  # refused for good (4xx), then a 503 that will be retried
        on_production(account, receiver.url)
        linked(registry, tmp_path)
        worker_factory(**WORKER)

        failing = registry.add_alias("classifier:v0", "production")
        with pytest.raises(WaitFailed, match="failed") as failed:
            registry.wait(failing, timeout=60, poll=0.2)
        assert [d.status for d in failed.value.result.deliveries] == ["failed"]
        event = failing.events[0].id
        assert main(["--url", account.url, "wait", event, "--poll", "0.2"]) == WaitFailed.exit_code
        assert "registry: error: 1 of 1 failed: delivery" in capsys.readouterr().err

        registry.remove_alias("classifier", "production")
        retrying = registry.add_alias("classifier:v0", "production")
        started = time.monotonic()
        with pytest.raises(TimedOut, match="retrying"):
            registry.wait(retrying, timeout=4, poll=0.2)
        assert 4 <= time.monotonic() - started < 10
        assert len(receiver.requests) == 2


def test_a_run_by_hand_waits_until_its_delivery_has_settled(registry, account, worker_factory, tmp_path, capsys):
    with Receiver(Reply(200)) as receiver:
        linked(registry, tmp_path)
        deploy = deploy_automation(account, url=receiver.url)
        worker_factory(**WORKER)

        code = main(["--url", account.url, "automation", "run", str(deploy.pk), "v0", "--alias", "production",
                     "--wait", "--poll", "0.2", "--timeout", "60"])  # fmt: skip

    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "run by hand: ADD_ARTIFACT_ALIAS production manual" in captured.out
    assert "settled: 1 event(s), 1 of 1 delivery(ies) succeeded" in captured.out
    assert "ADD_ARTIFACT_ALIAS production (manual)" in captured.err  # the event, as the wait saw it
    (delivered,) = receiver.requests
    assert json.loads(delivered.body) == {
        "v": f"{account.team.name}/model-registry/classifier:production", "token": "s3cr3t-value"
    }  # fmt: skip
