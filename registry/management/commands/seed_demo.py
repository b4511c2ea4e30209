"""Seed a demo: an admin, team ``demo``, project ``training``, artifact ``classifier:v0``, registered model
``classifier``. Safe to run any number of times; prints the credentials and a curl walkthrough.

The admin's password comes from DEMO_ADMIN_PASSWORD, or is generated once and kept in ``var/demo-admin-password``
(mode 0600) so every run prints the same one.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from registry import services
from registry.models import ArtifactVersion, Membership, Project, RegisteredModel, Team

ADMIN_USERNAME = "admin"
TEAM = "demo"
PROJECT = "training"
COLLECTION = "classifier"
REGISTERED_MODEL = "classifier"


def _default_base_url() -> str:
    return settings.PUBLIC_BASE_URL


def _password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-admin-password"


def _stored_or_new_password() -> str:
    path = _password_file()
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


class Command(BaseCommand):
    help = "Create the demo admin, team, project, artifact and registered model (idempotent) and print how to use them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--base-url",
            default=_default_base_url(),
            help="Where the web process listens, for the printed URLs (default: from WEB_BIND and PORT).",
        )

    def handle(self, *args, base_url: str, **options):
        password, password_known = self._admin()
        admin = get_user_model().objects.get(username=ADMIN_USERNAME)
        with transaction.atomic():
            self._registry(admin)
        self._print(base_url=base_url.rstrip("/"), password=password if password_known else None)

    def _admin(self) -> tuple[str, bool]:
        """Create the superuser, or leave an existing one alone unless DEMO_ADMIN_PASSWORD says otherwise.

        Returns the password and whether it is the admin's current password.
        """
        User = get_user_model()
        from_env = os.environ.get("DEMO_ADMIN_PASSWORD", "")
        password = from_env or _stored_or_new_password()
        user = User.objects.filter(username=ADMIN_USERNAME).first()
        if user is None:
            User.objects.create_superuser(username=ADMIN_USERNAME, email="admin@example.com", password=password)
            self.stdout.write(f"Created superuser {ADMIN_USERNAME!r}.")
            return password, True
        if user.check_password(password):
            return password, True
        if from_env:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"Set the password of {ADMIN_USERNAME!r} from DEMO_ADMIN_PASSWORD.")
            return password, True
        return password, False

    def _registry(self, admin) -> None:
        team = Team.objects.filter(name=TEAM).first()
        if team is None:
            team = services.team_create(name=TEAM, creator=admin)
            self.stdout.write(f"Created team {TEAM!r}.")
        elif not Membership.objects.filter(team=team, user=admin).exists():
            services.membership_set(team=team, username=admin.get_username(), role="admin")

        project = Project.objects.filter(team=team, name=PROJECT).first()
        if project is None:
            project = services.project_create(team=team, name=PROJECT, description="Demo training runs.")
            self.stdout.write(f"Created project {TEAM}/{PROJECT}.")

        if not ArtifactVersion.objects.filter(collection__project=project, collection__name=COLLECTION).exists():
            version = services.artifact_version_create(
                project=project,
                collection_name=COLLECTION,
                type="model",
                user=admin,
                metadata={"accuracy": 0.93, "framework": "sklearn"},
                description="Demo classifier.",
            )
            self.stdout.write(f"Logged artifact version {version.reference}.")

        if not RegisteredModel.objects.filter(team=team, name=REGISTERED_MODEL).exists():
            services.registered_model_create(
                team=team, name=REGISTERED_MODEL, description="Demo registered model; link versions to it."
            )
            self.stdout.write(f"Created registered model {TEAM}/{REGISTERED_MODEL}.")

    def _print(self, *, base_url: str, password: str | None) -> None:
        api = "$BASE/api/v1"
        models = f"{api}/teams/{TEAM}/registered-models/{REGISTERED_MODEL}"
        json_header = "-H 'Content-Type: application/json'"
        auth = '-H "Authorization: Token $TOKEN"'
        credentials = json.dumps({"username": ADMIN_USERNAME, "password": password or "<password>"})

        def body(data: dict) -> str:
            return shlex.quote(json.dumps(data))

        if password is None:
            password_line = (
                f"  password: (unchanged; {ADMIN_USERNAME!r} existed with another password; "
                "set DEMO_ADMIN_PASSWORD to reset it)"
            )
        else:
            password_line = f"  password: {password}"
        lines = [
            "",
            "Demo ready.",
            f"  admin:    {base_url}/admin/",
            f"  API docs: {base_url}/api/docs/",
            f"  username: {ADMIN_USERNAME}",
            password_line,
            "",
            "Try it (bash, with python3 for reading JSON):",
            "",
            f"BASE={base_url}",
            f"TOKEN=$(curl -s -X POST {api}/auth/token/ {json_header} -d {shlex.quote(credentials)} \\",
            "  | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"token\"])')",
            "",
            "# log another version of the artifact (the demo already holds v0)",
            f"curl -s -X POST {api}/teams/{TEAM}/projects/{PROJECT}/artifacts/{COLLECTION}/versions/ \\",
            f"  {auth} {json_header} -d {body({'type': 'model', 'metadata': {'accuracy': 0.95}})}",
            "",
            "# link v0 to the registered model: fires LINK_ARTIFACT",
            f"curl -s -X POST {models}/versions/ \\",
            f"  {auth} {json_header} -d {body({'artifact': f'{TEAM}/{PROJECT}/{COLLECTION}:v0'})}",
            "",
            "# put 'production' on the model version: fires ADD_ARTIFACT_ALIAS",
            f"curl -s -X POST {models}/versions/v0/aliases/ \\",
            f"  {auth} {json_header} -d {body({'alias': 'production'})}",
            "",
            "# the events, each with dispatched_at set once the worker has handled it",
            f"curl -s {api}/teams/{TEAM}/events/ {auth}",
            "",
        ]
        self.stdout.write("\n".join(lines))
