"""The data each scenario sets up through the API (the harness's client), and the one thing done inside Django."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

from harness.api import Api, ApiError
from harness.stack import Stack
from harness.util import tail

from .stack import PYTHON, ROOT

SIGNING_SECRET = "whsec_YmVuY2htYXJrLXNpZ25pbmcta2V5LTAxMjM0NTY3"  # noqa: S105 (a benchmark's throwaway key)


def djhelper(stack: Stack, *args: str, stdin: object = None) -> dict:
    done = subprocess.run(  # noqa: S603
        [PYTHON, "-m", "bench.djhelper", *args], cwd=ROOT, env=stack.env, capture_output=True, check=False,
        timeout=300, input=json.dumps(stdin).encode() if stdin is not None else None,
    )  # fmt: skip
    if done.returncode != 0:
        raise ApiError(f"bench.djhelper {' '.join(args)} failed:\n{tail(done.stderr.decode())}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def admin_api(stack: Stack) -> Api:
    """A superuser's API token (made inside Django: the API's own token route needs a password)."""
    return Api(f"{stack.base_url}/api/v1", token=djhelper(stack, "admin")["token"])


@dataclass
class Team:
    api: Api
    name: str
    model: str = "clf"

    def alias(self, alias: str, version: str) -> None:
        self.api.post(f"teams/{self.name}/registered-models/{self.model}/versions/{version}/aliases/", {"alias": alias})

    def webhook(self, name: str, url: str, **options: object) -> int:
        body = {"name": name, "url": url, "secret": "SIGNING", **options}
        return self.api.post(f"teams/{self.name}/webhooks/", body)["id"]

    def automation(self, name: str, webhook: int, payload: dict) -> int:
        body = {
            "name": name,
            "event_type": "ADD_ARTIFACT_ALIAS",
            "registered_model": self.model,
            "action_type": "WEBHOOK",
            "webhook": webhook,
            "payload": payload,
        }
        return self.api.post(f"teams/{self.name}/automations/", body)["id"]


# What every benchmark webhook sends: a marker the receiver reads, and the variables a real CI hook would use.
PAYLOAD = {
    "m": "${alias}",
    "event_type": "${event_type}",
    "model": "${artifact_version_string}",
    "artifact": "${artifact_version}",
    "author": "${event_author}",
}


def team_create(api: Api, name: str, *, versions: int = 2) -> Team:
    """A team with a project, ``versions`` artifact versions linked to registered model ``clf`` (v0, v1, ...) and
    a signing secret ``SIGNING``, all through the API."""
    api.post("teams/", {"name": name})
    api.post(f"teams/{name}/projects/", {"name": "training"})
    api.post(f"teams/{name}/registered-models/", {"name": "clf"})
    for index in range(versions):
        api.post(
            f"teams/{name}/projects/training/artifacts/clf/versions/",
            {"type": "model", "metadata": {"accuracy": 0.9 + index / 1000}},
        )
        api.post(f"teams/{name}/registered-models/clf/versions/", {"artifact": f"{name}/training/clf:v{index}"})
    api.post(f"teams/{name}/secrets/", {"name": "SIGNING", "value": SIGNING_SECRET})
    return Team(api=api, name=name)


def fan_out(team: Team, url_for, *, webhooks: int, per_webhook: int) -> None:
    """The fan-out scenarios' setup: ``per_webhook`` automations on each of ``webhooks`` webhooks (``url_for(i)``,
    distinct URLs), then wait until the setup's own events are dispatched."""
    for w in range(webhooks):
        hook = team.webhook(f"hook-{w}", url_for(w))
        for a in range(per_webhook):
            team.automation(f"auto-{w}-{a}", hook, PAYLOAD)
    wait_idle(team.api, team.name)


def wait_idle(api: Api, team: str, *, timeout: float = 30) -> None:
    """Until the team's events are all dispatched (setup's own link events must not leak into a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = api.get(f"teams/{team}/events/?limit=500")
        rows = events["results"] if isinstance(events, dict) else events
        if all(row.get("dispatched_at") for row in rows):
            return
        time.sleep(0.2)
    raise ApiError(f"events of {team} still undispatched after {timeout:.0f} s")
