"""The example GitHub Actions workflow (examples/github-actions/deploy-on-production.yml) run against the live
server with the body of a real delivery as its ``repository_dispatch`` event: a Celery worker sends the
``github_repository_dispatch`` automation's payload to a loopback receiver, and the workflow's shell steps run with
bash as GitHub would run them, with the ``${{ }}`` expressions filled from that body and the test's secrets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests
import yaml

from harness.receiver import Receiver, Reply
from harness.util import wait_until

from .conftest import write_tree

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "github-actions" / "deploy-on-production.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
WORKER = {
    "queues": "events,deliveries",
    "pool": "threads",
    "concurrency": 2,
    "extra_env": {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"},
}
FILES = {"model.bin": bytes(range(256)) * 512, "config/params.json": b'{"layers": 3}', "it's $HOME.txt": b"odd name"}


def substitute(value: str, *, event: dict, secrets: dict[str, str]) -> str:
    """Fills ``${{ github.event.client_payload.X }}`` and ``${{ secrets.X }}``; any other expression fails."""

    def one(match: re.Match) -> str:
        expression = match.group(1)
        if expression.startswith("github.event.client_payload."):
            return str(event["client_payload"][expression.removeprefix("github.event.client_payload.")])
        if expression.startswith("secrets."):
            return secrets[expression.removeprefix("secrets.")]
        raise AssertionError(f"the workflow uses {expression!r}, which this run does not provide")

    return EXPRESSION.sub(one, value)


def test_the_example_workflow_downloads_the_version_a_real_github_dispatch_names_even_after_the_alias_moved(
    registry, account, settings, worker_factory, tmp_path
):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    api = f"{account.url}/api/v1/teams/{account.team.name}"
    headers = {"Authorization": f"Token {account.token}"}

    version = registry.log_artifact(write_tree(tmp_path / "out", FILES), project="training", name="classifier")
    registry.link(version.reference, "classifier")
    newer = registry.log_artifact(
        write_tree(tmp_path / "newer", {"model.bin": b"v1"}), project="training", name="classifier"
    )
    registry.link(newer.reference, "classifier")
    with Receiver(Reply(204)) as receiver:
        webhook = requests.post(
            f"{api}/webhooks/", json={"name": "github", "url": receiver.url}, headers=headers, timeout=10
        )
        assert webhook.status_code == 201, webhook.text
        automation = requests.post(
            f"{api}/automations/",
            json={
                "name": "deploy on production", "event_type": "ADD_ARTIFACT_ALIAS", "registered_model": "classifier",
                "alias_regex": "production", "action_type": "WEBHOOK", "webhook": webhook.json()["id"],
                "preset": "github_repository_dispatch",
            },
            headers=headers,
            timeout=10,
        )  # fmt: skip
        assert automation.status_code == 201, automation.text
        worker_factory(**WORKER)
        registry.add_alias("classifier:v0", "production")
        wait_until(lambda: receiver.requests, timeout=60, message="the dispatch to reach the receiver")
        event = json.loads(receiver.requests[0].body)
        registry.add_alias("classifier:v1", "production")  # moved again before the workflow runs

    assert event["event_type"] in triggers["repository_dispatch"]["types"]
    assert event["client_payload"]["artifact_version"] == f"registry-artifact://_id/{version.id}"
    secrets = {"REGISTRY_URL": account.url, "REGISTRY_TOKEN": account.token}
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]["name"]
    job = workflow["jobs"]["deploy"]
    assert workflow["defaults"]["run"]["shell"] == "bash"
    work = tmp_path / "runner"
    work.mkdir()
    ran = []
    for step in job["steps"]:
        if "uses" in step:
            continue  # actions/setup-python: this machine's Python and .venv stand in for it
        assert "${{" not in step["run"], f"{step.get('name')}: expressions reach the shell only through env"
        env = {
            name: substitute(str(value), event=event, secrets=secrets)
            for name, value in {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}.items()
        }
        if "pip install" in step["run"]:
            assert env["CLIENT"].startswith(f"{client} @ "), env["CLIENT"]  # the client is installed in .venv already
            continue
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=work,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "HOME": str(tmp_path / "home"),
                "REGISTRY_CONFIG": str(tmp_path / "home" / "registry" / "config.json"),
                "REGISTRY_CACHE_DIR": str(tmp_path / "home" / "cache"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{step.get('name')}: {done.stdout}{done.stderr}"
        assert account.token not in done.stdout + done.stderr
        ran.append((step.get("name"), done.stdout))

    assert [name for name, _ in ran] == ["Download the model", "Deploy"]
    assert "3 file(s) written" in ran[0][1]
    model = f"{account.team.name}/model-registry/classifier:production"
    assert f"Deploying {model} (registry-artifact://_id/{version.id})" in ran[1][1]
    written = {str(p.relative_to(work / "model")): p.read_bytes() for p in (work / "model").rglob("*") if p.is_file()}
    assert written == FILES
