"""The driver's side of the API: a small client, and the data each scenario sets up through it."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass

import requests

from .stack import PYTHON, ROOT, Stack

SIGNING_SECRET = "whsec_YmVuY2htYXJrLXNpZ25pbmcta2V5LTAxMjM0NTY3"  # noqa: S105 (a benchmark's throwaway key)


class ApiError(RuntimeError):
    pass


class Api:
    """JSON over one keep-alive session (gunicorn's sync workers close it anyway, as in production)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = f"{base_url}/api/v1"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Token {token}"})

    def post(self, path: str, body: dict | None = None, *, expect: tuple[int, ...] = (200, 201)) -> dict:
        response = self.session.post(f"{self.base}/{path.lstrip('/')}", json=body or {}, timeout=30)
        if response.status_code not in expect:
            raise ApiError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
        return response.json() if response.content else {}

    def get(self, path: str) -> dict:
        response = self.session.get(f"{self.base}/{path.lstrip('/')}", timeout=30)
        if response.status_code != 200:
            raise ApiError(f"GET {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()


def djhelper(stack: Stack, *args: str, stdin: object = None) -> dict:
    done = subprocess.run(  # noqa: S603
        [PYTHON, "-m", "bench.djhelper", *args], cwd=ROOT, env=stack.env, capture_output=True, check=False,
        timeout=300, input=json.dumps(stdin).encode() if stdin is not None else None,
    )  # fmt: skip
    if done.returncode != 0:
        raise ApiError(f"bench.djhelper {' '.join(args)} failed:\n{done.stderr.decode()[-2000:]}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def admin_api(stack: Stack) -> Api:
    """A superuser's API token (made inside Django: the API's own token route needs a password)."""
    return Api(stack.base_url, djhelper(stack, "admin")["token"])


@dataclass
class Team:
    api: Api
    name: str
    model: str = "clf"

    def alias(self, alias: str, version: str) -> None:
        self.api.post(f"teams/{self.name}/registered-models/{self.model}/versions/{version}/aliases/", {"alias": alias})

    def webhook(self, name: str, url: str) -> int:
        body = {"name": name, "url": url, "secret": "SIGNING"}
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
