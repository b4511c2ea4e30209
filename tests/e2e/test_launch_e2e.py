"""Launch end to end: live server, a real Celery worker, real `launch-agent` processes running real job scripts."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import requests

from automations import services as automations
from harness.util import wait_until
from launch import services as launch
from launch.models import RunQueueItem
from registry import blobs, manifests
from registry import services as registry_services
from registry.models import Blob, Event
from tests.factories import link, make_project, make_registered_model, make_team, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class AgentProcess:
    def __init__(self, url: str, token: str, log_path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "registry_client.agent", "--url", url, "--queue", "cpu", "--poll-interval", "0.1",
             "--heartbeat", "0.5", "--grace", "2", *args],
            env={**os.environ, "LAUNCH_AGENT_TOKEN": token}, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def agents(live_server, tmp_path):
    started: list[AgentProcess] = []

    def start(token: str, *args: str) -> AgentProcess:
        agent = AgentProcess(live_server.url, token, tmp_path / f"agent-{len(started)}.log", *args)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def script(tmp_path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


@pytest.fixture
def cpu_team():
    admin = make_user()
    team = make_team(admin=admin)
    make_project(team, "evaluation")
    launch.run_queue_create(team=team, name="cpu")
    launch.job_create(team=team, name="job", project="evaluation")
    return team, admin


def settled(item_pk, *states: str, timeout: float = 30) -> RunQueueItem:
    def check():
        item = RunQueueItem.objects.get(pk=item_pk)
        return item if item.state in states else None

    return wait_until(check, timeout=timeout, message=f"item to become {states}")


def test_an_alias_launches_a_job_that_receives_the_rendered_overrides(
    cpu_team, agents, worker_factory, tmp_path, live_server
):
    team, admin = cpu_team
    received = tmp_path / "received.json"
    entrypoint = script(tmp_path, "evaluate.py", f"""
        import json, os
        config = json.load(open(os.environ["LAUNCH_CONFIG_FILE"]))
        event = json.loads(os.environ["LAUNCH_EVENT"])
        json.dump({{"config": config, "alias": event.get("alias")}}, open({str(received)!r}, "w"))
        print("evaluated", config["model"])
    """)  # fmt: skip
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=entrypoint, default_config={"threshold": 0.9})
    model = make_registered_model(team)
    automations.automation_create(
        team=team, user=admin, name="evaluate staging", event_type="ADD_ARTIFACT_ALIAS", alias_regex="staging",
        action_type="LAUNCH_JOB", job="evaluate", job_version="v0", queue="cpu", destination_project="evaluation",
        overrides={"model": "${artifact_version_string}", "by": "${event_author}"},
    )  # fmt: skip
    _, token = launch.agent_create(team=team, name="box", queues=["cpu"])
    worker_factory()
    agent = agents(token)

    link(model)
    _, user_token = registry_services.api_token_create(user=admin)
    response = requests.post(
        f"{live_server.url}/api/v1/teams/{team.name}/registered-models/{model.name}/versions/v0/aliases/",
        json={"alias": "staging"}, headers={"Authorization": f"Token {user_token}"}, timeout=10,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    item = settled(wait_until(lambda: RunQueueItem.objects.first(), message="the queued item").pk, "finished")

    assert item.exit_code == 0 and "evaluated" in item.log_tail
    assert json.loads(received.read_text()) == {
        "config": {"threshold": 0.9, "model": f"{team.name}/model-registry/{model.name}:staging", "by": admin.username},
        "alias": "staging",
    }
    wait_until(lambda: "finished exit=0" in agent.log(), timeout=5, message="the agent's log line")


@pytest.mark.timeout(300)
def test_eight_agents_claim_five_hundred_items_exactly_once(cpu_team, agents):
    team, _ = cpu_team
    job = launch.job_create(team=team, name="noop", project="evaluation")
    version = launch.job_version_create(job=job, entrypoint=["true"])
    queue = team.run_queues.get(name="cpu")
    project = team.projects.get(name="evaluation")
    for _ in range(500):
        launch.item_enqueue(queue=queue, job_version=version, destination_project=project)
    for n in range(8):
        agents(launch.agent_create(team=team, name=f"a{n}", queues=["cpu"])[1], "--max-jobs", "4")

    wait_until(
        lambda: not RunQueueItem.objects.exclude(state="finished").exists(),
        timeout=240, interval=0.5, message="all 500 items finished",
    )  # fmt: skip
    items = RunQueueItem.objects.all()
    assert items.count() == 500
    assert set(items.values_list("attempts", flat=True)) == {1}  # claimed once each, by exactly one agent
    assert items.values("agent").distinct().count() > 1


def test_an_agent_killed_mid_job_loses_its_item_to_another_after_the_lease(
    cpu_team, agents, worker_factory, settings, tmp_path
):
    settings.LAUNCH_LEASE_SECONDS = 2
    team, _ = cpu_team
    job = launch.job_create(team=team, name="slow", project="evaluation")
    version = launch.job_version_create(job=job, entrypoint=script(tmp_path, "slow.py", "import time; time.sleep(2)"))
    item = launch.item_enqueue(
        queue=team.run_queues.get(name="cpu"),
        job_version=version,
        destination_project=team.projects.get(name="evaluation"),
    )
    worker_factory(beat=True, extra_env={"LAUNCH_LEASE_SWEEP_INTERVAL": "0.5"})
    first = agents(launch.agent_create(team=team, name="doomed", queues=["cpu"])[1])
    settled(item.pk, "running")
    first.stop(signal.SIGKILL)

    agents(launch.agent_create(team=team, name="survivor", queues=["cpu"])[1])
    item = settled(item.pk, "finished", timeout=40)
    assert item.agent.name == "survivor"
    assert item.attempts == 2 and item.exit_code == 0


def test_a_failing_job_fails_with_its_exit_code_and_last_lines_and_a_cancelled_one_is_killed(
    cpu_team, agents, tmp_path
):
    team, _ = cpu_team
    queue, project = team.run_queues.get(name="cpu"), team.projects.get(name="evaluation")
    failing = launch.job_version_create(
        job=launch.job_create(team=team, name="failing", project="evaluation"),
        entrypoint=script(tmp_path, "fail.py", "for i in range(300): print('line', i)\nraise SystemExit(3)"),
    )
    marker = tmp_path / "still-running"
    sleeper = launch.job_version_create(
        job=launch.job_create(team=team, name="sleeper", project="evaluation"),
        entrypoint=script(tmp_path, "sleep.py", f"""
            import time
            for _ in range(600):
                open({str(marker)!r}, "w").write("x")
                time.sleep(0.1)
        """),
    )  # fmt: skip
    failed = launch.item_enqueue(queue=queue, job_version=failing, destination_project=project)
    long = launch.item_enqueue(queue=queue, job_version=sleeper, destination_project=project)
    agents(launch.agent_create(team=team, name="box", queues=["cpu"])[1], "--max-jobs", "2")

    failed = settled(failed.pk, "failed")
    assert failed.exit_code == 3
    assert "line 299" in failed.log_tail and "line 0\n" not in failed.log_tail

    settled(long.pk, "running")
    launch.item_cancel(item=long)
    long = settled(long.pk, "cancelled", timeout=20)
    marker.unlink()
    time.sleep(1)
    assert not marker.exists()  # the process is gone: it no longer touches its file


def test_a_job_that_aliases_again_triggers_the_next_automation_until_the_chain_limit(
    cpu_team, agents, worker_factory, tmp_path, live_server
):
    team, admin = cpu_team
    _, user_token = registry_services.api_token_create(user=admin)
    token_file = tmp_path / "token"
    token_file.write_text(user_token)
    model = make_registered_model(team)
    link(model)
    entrypoint = script(tmp_path, "promote.py", f"""
        import json, os, requests
        config = json.load(open(os.environ["LAUNCH_CONFIG_FILE"]))
        model = "{live_server.url}/api/v1/teams/{team.name}/registered-models/{model.name}/"
        headers = {{"Authorization": "Token " + open({str(token_file)!r}).read(),
                   "X-Registry-Caused-By": os.environ["LAUNCH_CAUSED_BY"]}}
        # Re-adding an alias a version already holds is a no-op: take it off first so the add is a change.
        requests.delete(model + "aliases/" + config["next"] + "/", headers=headers, timeout=10)
        response = requests.post(
            model + "versions/v0/aliases/", json={{"alias": config["next"]}}, headers=headers, timeout=10
        )
        print(response.status_code)
        raise SystemExit(0 if response.status_code == 201 else 1)
    """)  # fmt: skip
    job = launch.job_create(team=team, name="promote", project="evaluation")
    launch.job_version_create(job=job, entrypoint=entrypoint)
    for this, following in (("ping", "pong"), ("pong", "ping")):  # each alias launches a job adding the other
        automations.automation_create(
            team=team, user=admin, name=f"on {this}", event_type="ADD_ARTIFACT_ALIAS", alias_regex=this,
            action_type="LAUNCH_JOB", job="promote", job_version="v0", queue="cpu",
            destination_project="evaluation", overrides={"next": following},
        )  # fmt: skip
    worker_factory(extra_env={"EVENT_CHAIN_LIMIT": "3"})
    agents(launch.agent_create(team=team, name="box", queues=["cpu"])[1])

    registry_services.alias_add(model_version=model.versions.get(), name="ping", user=admin)

    def stopped():
        # The job's removal of the alias before its add is in the chain too (REMOVE_ARTIFACT_ALIAS, at the same
        # depth, recorded just before the add): wait for the add at depth 4.
        deepest = Event.objects.filter(type="ADD_ARTIFACT_ALIAS", depth=4, dispatch_note__contains="exceeds the limit")
        return deepest.first()

    last = wait_until(stopped, timeout=60, interval=0.2, message="the chain to stop at its limit")
    chain = list(Event.objects.filter(type="ADD_ARTIFACT_ALIAS").order_by("depth").values_list("depth", "alias"))
    assert chain == [(0, "ping"), (1, "pong"), (2, "ping"), (3, "pong"), (4, "ping")]
    assert RunQueueItem.objects.count() == 4  # depths 0..3 launched; depth 4 was not dispatched
    assert last.caused_by.depth == 3


def test_an_agent_of_team_a_cannot_claim_from_or_see_team_b(cpu_team, agents, live_server):
    team, _ = cpu_team
    other = make_team(admin=make_user())
    make_project(other, "evaluation")
    theirs = launch.item_enqueue(
        queue=launch.run_queue_create(team=other, name="cpu"),  # the same queue name in another team
        job_version=launch.job_version_create(job=launch.job_create(team=other, name="job", project="evaluation"),
                                              entrypoint=["true"]),
        destination_project=other.projects.get(name="evaluation"),
    )  # fmt: skip
    token = launch.agent_create(team=team, name="box", queues=["cpu"])[1]
    agent = agents(token)
    wait_until(lambda: "serving queue cpu" in agent.log(), timeout=10, message="the agent to start polling")

    headers = {"Authorization": f"Bearer {token}"}
    base = f"{live_server.url}/api/v1/teams/{other.name}/launch/"
    assert requests.post(base + "queues/cpu/claim/", headers=headers, timeout=10).status_code == 404
    assert requests.get(base + "queues/", headers=headers, timeout=10).status_code == 404
    assert requests.get(base + "queues/cpu/items/", headers=headers, timeout=10).status_code == 404
    assert requests.get(base + f"items/{theirs.pk}/", headers=headers, timeout=10).status_code == 404
    assert requests.post(base + f"items/{theirs.pk}/heartbeat/", headers=headers, timeout=10).status_code == 404
    time.sleep(1)  # ten polls of the agent's own "cpu" queue
    theirs.refresh_from_db()
    assert theirs.state == "pending" and theirs.agent is None and theirs.attempts == 0


# --- The event's model version ----------------------------------------------------------------------------


def committed_version(team, files: dict[str, bytes]):
    """A committed artifact version of training/classifier holding ``files``, stored as an upload would."""
    for data in files.values():
        digest = hashlib.sha256(data).hexdigest()
        blobs.blob_receive(team=team, sha256=digest, size=len(data), stream=io.BytesIO(data))
    version = manifests.artifact_version_log(
        project=make_project(team, "training"), collection_name="classifier", type="model", user=None,
        files=[{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()],
    )  # fmt: skip
    return manifests.artifact_version_commit(artifact_version=version)[0]


def test_a_job_gets_the_events_model_version_checked_in_its_folder_and_a_corrupt_one_fails_the_item(
    cpu_team, agents, worker_factory, tmp_path
):
    team, admin = cpu_team
    received = tmp_path / "received"
    received.mkdir()
    entrypoint = script(tmp_path, "evaluate.py", f"""
        import hashlib, json, os, pathlib
        folder = pathlib.Path(os.environ["LAUNCH_ARTIFACT_DIR"])
        files = {{str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in folder.rglob("*") if p.is_file()}}
        seen = {{"folder": str(folder), "cwd": os.getcwd(), "files": files,
                "event": json.loads(os.environ["LAUNCH_EVENT"])["artifact_version"]}}
        (pathlib.Path({str(received)!r}) / os.environ["LAUNCH_ITEM_ID"]).write_text(json.dumps(seen))
    """)  # fmt: skip
    job = launch.job_create(team=team, name="evaluate", project="evaluation")
    launch.job_version_create(job=job, entrypoint=entrypoint, download_artifact=True)
    model = make_registered_model(team)
    automations.automation_create(
        team=team, user=admin, name="evaluate each link", event_type="LINK_ARTIFACT", action_type="LAUNCH_JOB",
        job="evaluate", job_version="v0", queue="cpu", destination_project="evaluation",
    )  # fmt: skip
    good_files = {"model.bin": b"\x00weights" * 5000, "config/params.json": b'{"layers": 3}'}
    good = committed_version(team, good_files)
    bad = committed_version(team, {"model.bin": b"other weights" * 100})
    # The stored bytes of the second version change under the registry (a disk fault): same size, other content.
    blob = Blob.objects.get(team=team, sha256=hashlib.sha256(b"other weights" * 100).hexdigest())
    stored = blobs.artifact_storage().path(blobs.blob_key(blob))
    with open(stored, "r+b") as handle:
        handle.write(b"X")
    worker_factory()
    agent = agents(launch.agent_create(team=team, name="box", queues=["cpu"])[1])

    registry_services.model_version_link(registered_model=model, artifact_version=good, user=admin)
    first = settled(wait_until(lambda: RunQueueItem.objects.first(), message="the first item").pk, "finished", "failed")
    registry_services.model_version_link(registered_model=model, artifact_version=bad, user=admin)
    second = wait_until(lambda: RunQueueItem.objects.exclude(pk=first.pk).first(), message="the second item")
    second = settled(second.pk, "finished", "failed")

    # The good version is in artifact/ of the job's working directory, every file as logged.
    assert (first.state, first.exit_code) == ("finished", 0), (first.log_tail, agent.log())
    seen = json.loads((received / str(first.pk)).read_text())
    assert seen["files"] == {path: hashlib.sha256(data).hexdigest() for path, data in good_files.items()}
    assert seen["folder"] == os.path.join(seen["cwd"], "artifact")
    assert seen["event"] == f"registry-artifact://_id/{good.public_id}"
    assert "downloaded registry-artifact://" in first.log_tail
    # The corrupt one fails the item, saying why, and the job never starts.
    assert second.state == "failed" and second.exit_code is None, (second.log_tail, agent.log())
    assert f"could not download the event's model version registry-artifact://_id/{bad.public_id}" in second.reason
    assert "model.bin" in second.reason and "SHA-256" in second.reason
    assert second.reason in second.log_tail
    assert not (received / str(second.pk)).exists()
