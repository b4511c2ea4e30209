"""``Registry``: the Python API for the daily work on the model registry.

from registry_client import Registry

registry = Registry()  # REGISTRY_URL / REGISTRY_TOKEN / REGISTRY_TEAM, or what `registry login` saved
version = registry.log_artifact("out/", project="training", name="classifier", metadata={"accuracy": 0.95})
model_version = registry.link(version.reference, "classifier", aliases=["staging"])
registry.wait(registry.add_alias(f"classifier:{model_version.version}", "production"))
registry.download("classifier:production", "model/")  # a registered model's alias, in your team
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from .config import resolve_settings, save_config
from .download import Downloader
from .errors import BadRequest, ConfigError, Conflict, DigestMismatch, NotAuthorized, NotFound, ServerError
from .hashcache import CHUNK, HashCache
from .manifest import LocalFile, Reference, canonical_digest, parse_reference, path_check, scan
from .progress import NoProgress, Progress
from .refs import artifact_ref, model_ref
from .transport import Transport, seg
from .types import (
    ApiToken,
    ArtifactVersion,
    Automation,
    AutomationRun,
    Delivery,
    DownloadResult,
    Event,
    EventRef,
    LaunchItem,
    MissingFile,
    ModelVersion,
    Preview,
    WaitResult,
)
from .wait import DEFAULT_TIMEOUT, Update, wait_for

__all__ = ["Registry"]

Change = ArtifactVersion | ModelVersion | Iterable[EventRef | Event | str]


class _Reader:
    """A file sent as a request body, reporting the bytes read; its length gives the request's Content-Length."""

    def __init__(self, path: Path, size: int, progress: Progress) -> None:
        self._handle: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by the transport after the request)
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(CHUNK if size is None or size < 0 else max(size, 1 << 16))
        self._progress.advance(len(chunk))
        return chunk

    def close(self) -> None:
        self._handle.close()


class Registry:
    """A connection to one registry. Settings not given come from the environment (``REGISTRY_URL``,
    ``REGISTRY_TOKEN``, ``REGISTRY_TEAM``) or the config file ``registry login`` writes. ``team`` is the default
    for references that name none; when unset and the user belongs to one team, that one.

    ``hash_cache`` (default on) remembers the SHA-256 of local files by their stat, so logging or downloading
    unchanged files again reads nothing.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        team: str | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        hash_cache: bool | HashCache = True,
    ) -> None:
        settings = resolve_settings(url=url, token=token, team=team)
        self.url = settings.url
        self._team = settings.team
        self.transport = Transport(settings.url, settings.token, timeout=timeout)
        self.hash_cache = hash_cache if isinstance(hash_cache, HashCache) else HashCache(enabled=hash_cache)

    def __repr__(self) -> str:
        return f"Registry({self.transport.base_url!r}, team={self._team!r})"

    def close(self) -> None:
        self.transport.close()
        self.hash_cache.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Login and teams --

    @classmethod
    def login(
        cls,
        url: str,
        username: str,
        password: str,
        *,
        team: str | None = None,
        save: bool = True,
        token_name: str | None = None,
    ) -> Registry:
        """Exchange a username and password for an API token; with ``save``, write it to the config file (0600)."""
        name = token_name or f"registry-client on {socket.gethostname()}"
        anonymous = Transport(url, None)
        try:
            answer = anonymous.json(
                "POST", "/auth/token/", json={"username": username, "password": password, "name": name[:128]}
            )
        except BadRequest as exc:
            if exc.code == "authentication_failed":
                raise NotAuthorized(f"Not authorised: {exc.message.split(': ', 1)[-1]}", status=exc.status) from exc
            raise
        finally:
            anonymous.close()
        if not isinstance(answer, dict) or not isinstance(answer.get("token"), str):
            raise ServerError("The server's token answer holds no token.")
        return cls.use_token(url, answer["token"], team=team, save=save)

    @classmethod
    def use_token(cls, url: str, token: str, *, team: str | None = None, save: bool = True) -> Registry:
        """A registry with this token, checked against the server; with ``save``, written to the config file."""
        registry = cls(url=url, token=token, team=team)
        teams = registry.teams()  # refuses a bad token before it is saved
        if team is not None and team not in teams:
            raise NotFound(f"You are not a member of team {team!r} (your teams: {', '.join(teams) or 'none'}).")
        if save:
            save_config(url=url, token=token, team=team or (teams[0] if len(teams) == 1 else None))
        return registry

    def tokens(self) -> list[ApiToken]:
        """Your API tokens (name, prefix, when made and last used), never their values."""
        return [ApiToken.from_json(row) for row in self.transport.pages("/auth/tokens/")]

    def revoke_token(self, token_id: int) -> None:
        """Revoke one of your tokens: it stops working at once. Revoking the one in use logs this client out."""
        self.transport.request("DELETE", f"/auth/tokens/{seg(str(token_id))}/")

    def teams(self) -> list[str]:
        return [str(t.get("name")) for t in self.transport.pages("/teams/") if isinstance(t, dict)]

    @property
    def team(self) -> str:
        """The default team: the one configured, else the user's only team."""
        if self._team is None:
            teams = self.teams()
            if len(teams) != 1:
                raise ConfigError(
                    f"Which team? You belong to {len(teams)} ({', '.join(teams) or 'none'}): pass team=, --team "
                    "or set REGISTRY_TEAM."
                )
            self._team = teams[0]
        return self._team

    def _default_team(self) -> str:
        return self.team

    # -- Artifact versions --

    def log_artifact(
        self,
        source: str | os.PathLike[str] | None,
        *,
        project: str,
        name: str,
        type: str = "model",
        metadata: Mapping[str, Any] | None = None,
        description: str = "",
        references: Iterable[Reference | Mapping[str, Any] | str] = (),
        file_name: str | None = None,
        team: str | None = None,
        create_project: bool = True,
        progress: Progress | None = None,
        workers: int = 4,
    ) -> ArtifactVersion:
        """Log a new version of ``team/project/name`` from a file or a folder (or ``None``: references only).

        The manifest (path, size, SHA-256 of each file) is computed here and sent with the references, which are
        recorded and never fetched. Only the files whose SHA-256 the team does not store yet are uploaded
        (``workers`` at a time), then the version is committed. ``file_name`` is the path a single file is logged
        under (default: its own name); the project is made if missing and ``create_project``. Returns the
        committed version; its ``events`` name what committing fired.
        """
        team = team or self.team
        progress = progress or NoProgress()
        files = scan(source, cache=self.hash_cache, name=file_name) if source is not None else []
        refs = [
            r if isinstance(r, Reference) else parse_reference(dict(r) if isinstance(r, Mapping) else r)
            for r in references
        ]
        body = {
            "type": type,
            "metadata": dict(metadata or {}),
            "description": description,
            "digest": canonical_digest(files, refs),
            "files": [f.entry() for f in files],
            "references": [r.entry() for r in refs],
        }
        versions = f"/teams/{seg(team)}/projects/{seg(project)}/artifacts/{seg(name)}/versions/"
        try:
            version = ArtifactVersion.from_json(self.transport.json("POST", versions, json=body))
        except NotFound:
            if not create_project:
                raise
            with contextlib.suppress(Conflict):  # made meanwhile by someone else
                self.transport.json("POST", f"/teams/{seg(team)}/projects/", json={"name": project})
            version = ArtifactVersion.from_json(self.transport.json("POST", versions, json=body))
        by_digest = {f.sha256: f for f in files}
        commit = f"{versions}{seg(version.version)}/commit/"
        for attempt in range(2):
            if version.committed:
                return version
            self._upload(team, by_digest, version.missing, progress=progress, workers=workers)
            try:
                return ArtifactVersion.from_json(self.transport.json("POST", commit))
            except Conflict:
                # A file stored a moment ago may have been cleaned up since: upload what is missing now, once.
                if attempt:
                    raise
                version = ArtifactVersion.from_json(self.transport.json("GET", f"{versions}{seg(version.version)}/"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _upload(
        self,
        team: str,
        files: Mapping[str, LocalFile],
        missing: Sequence[MissingFile],
        *,
        progress: Progress,
        workers: int,
    ) -> None:
        if not missing:
            return
        unknown = [m.sha256 for m in missing if m.sha256 not in files]
        if unknown:
            raise ServerError(f"The server asks for files this version does not name: {', '.join(unknown)}.")
        progress.start(f"upload {len(missing)} file(s)", sum(m.size for m in missing))

        def put(entry: MissingFile) -> None:
            local = files[entry.sha256]
            try:
                self.transport.request(
                    "PUT",
                    f"/teams/{seg(team)}/blobs/{entry.sha256}/",
                    data=lambda: _Reader(local.source, local.size, progress),
                    headers={"Content-Type": "application/octet-stream"},
                )
            except BadRequest as exc:
                if exc.code == "digest_mismatch":
                    raise DigestMismatch(
                        f"{local.source} changed while it was being logged: its bytes no longer have the SHA-256 "
                        f"computed a moment before. Log the version again.",
                        status=exc.status,
                    ) from exc
                raise

        try:
            if workers <= 1 or len(missing) == 1:
                for entry in missing:
                    put(entry)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for future in [pool.submit(put, entry) for entry in missing]:
                        future.result()
        finally:
            progress.close()

    def resolve(self, reference: str) -> ArtifactVersion:
        """The artifact version any reference names, with its manifest (``team/project/collection:vN|alias``,
        ``team/model-registry/model:vN|alias``, ``registry-artifact://_id/<id>``; see ``refs``)."""
        ref = artifact_ref(reference, self._default_team)
        answer = self.transport.json("GET", f"/teams/{seg(ref.team)}/resolve/", params={"reference": ref.reference})
        return ArtifactVersion.from_json(answer)

    def download(
        self,
        reference: str,
        directory: str | os.PathLike[str] = ".",
        *,
        file: str | None = None,
        progress: Progress | None = None,
    ) -> DownloadResult:
        """Download the version's files (or only ``file``) into ``directory``, each checked against its SHA-256.

        Files already there with the right SHA-256 are left alone. Nothing is written outside ``directory``
        whatever the manifest says (``UnsafePath``). References are returned, never fetched.
        """
        version = self.resolve(reference)
        if not version.committed:
            raise Conflict(f"{version.reference} is {version.state}: its files can be downloaded once it is committed.")
        files, references = version.files, version.references
        if file is not None:
            files = [f for f in files if f.path == file]
            references = [r for r in references if r.path == file]
            if not files and not references:
                raise NotFound(f"{version.reference} has no file {file!r}.", field="file")
        progress = progress or NoProgress()
        downloader = Downloader(self.transport, directory, cache=self.hash_cache, progress=progress)
        for entry in files:  # every path is checked before anything is written
            path_check(entry.path)
        base = (
            f"/teams/{seg(version.team)}/projects/{seg(version.project)}/artifacts/{seg(version.collection)}"
            f"/versions/{seg(version.version)}/files/"
        )
        written, unchanged = [], []
        progress.start(f"download {version.reference}", sum(f.size for f in files))
        try:
            for entry in files:
                url_path = base + "/".join(seg(s) for s in entry.path.split("/"))
                if downloader.fetch(url_path, path=entry.path, size=entry.size, sha256=entry.sha256):
                    written.append(entry.path)
                else:
                    unchanged.append(entry.path)
        finally:
            progress.close()
            downloader.finish()
        return DownloadResult(
            version=version,
            directory=str(downloader.root),
            written=written,
            unchanged=unchanged,
            references=references,
        )

    # -- Registered models and aliases --

    def link(
        self, artifact: str, model: str, *, aliases: Sequence[str] = (), create_model: bool = True
    ) -> ModelVersion:
        """Link an artifact version to a registered model (made first if missing and ``create_model``), putting
        ``aliases`` on the new model version. Its ``events`` name what the link fired."""
        ref = artifact_ref(artifact, self._default_team)
        target = model_ref(model, lambda: ref.team, version=False)
        if target.team != ref.team:
            raise BadRequest(f"{artifact!r} and {model!r} are in different teams.", field="model")
        path = f"/teams/{seg(target.team)}/registered-models/{seg(target.name)}/versions/"
        body = {"artifact": ref.reference, "aliases": list(aliases)}
        try:
            return ModelVersion.from_json(self.transport.json("POST", path, json=body))
        except NotFound:
            if not create_model:
                raise
        with contextlib.suppress(Conflict):  # made meanwhile by someone else
            self.transport.json("POST", f"/teams/{seg(target.team)}/registered-models/", json={"name": target.name})
        return ModelVersion.from_json(self.transport.json("POST", path, json=body))

    def model_version(self, reference: str) -> ModelVersion:
        """A registered model's version: ``model:vN`` or ``model:alias`` (``team/`` or ``team/model-registry/``
        in front for another team)."""
        ref = model_ref(reference, self._default_team, version=True)
        path = f"/teams/{seg(ref.team)}/registered-models/{seg(ref.name)}/versions/{seg(ref.version or '')}/"
        return ModelVersion.from_json(self.transport.json("GET", path))

    def add_alias(self, model_version: str, alias: str) -> ModelVersion:
        """Put ``alias`` on ``model:vN`` (or ``model:other-alias``); another version holding it loses it (a move).
        Its ``events`` name what it fired (none when the version already had the alias)."""
        ref = model_ref(model_version, self._default_team, version=True)
        path = f"/teams/{seg(ref.team)}/registered-models/{seg(ref.name)}/versions/{seg(ref.version or '')}/aliases/"
        return ModelVersion.from_json(self.transport.json("POST", path, json={"alias": alias}))

    move_alias = add_alias

    def remove_alias(self, model: str, alias: str) -> None:
        ref = model_ref(model, self._default_team, version=False)
        self.transport.request(
            "DELETE", f"/teams/{seg(ref.team)}/registered-models/{seg(ref.name)}/aliases/{seg(alias)}/"
        )

    # -- Tags --

    def add_tag(self, artifact: str, tag: str) -> ArtifactVersion:
        """Tag the artifact version any reference names (``project/collection:vN``, or
        ``model-registry/model:production`` for the one behind a model version). Its ``events`` name the
        ADD_ARTIFACT_TAG (none when the version already had the tag); its manifest is not in this answer."""
        return ArtifactVersion.from_json(self.transport.json("POST", self._tags_path(artifact), json={"tag": tag}))

    def remove_tag(self, artifact: str, tag: str) -> None:
        """Take ``tag`` off the artifact version ``artifact`` names; fires REMOVE_ARTIFACT_TAG."""
        self.transport.request("DELETE", self._tags_path(artifact) + f"{seg(tag)}/")

    def _tags_path(self, artifact: str) -> str:
        version = self.resolve(artifact)  # a model version's reference names its artifact version here
        return (
            f"/teams/{seg(version.team)}/projects/{seg(version.project)}/artifacts/{seg(version.collection)}"
            f"/versions/{seg(version.version)}/tags/"
        )

    # -- Automations, events, deliveries, launch items --

    def automations(self, *, registered_model: str | None = None, team: str | None = None) -> list[Automation]:
        params = {"registered_model": registered_model} if registered_model else {}
        rows = self.transport.pages(f"/teams/{seg(team or self.team)}/automations/", params=params)
        return [Automation.from_json(row) for row in rows]

    def _automation_path(self, automation_id: int | str, team: str | None) -> str:
        return f"/teams/{seg(team or self.team)}/automations/{seg(str(automation_id))}/"

    def run_automation(
        self, automation_id: int | str, version: str, *, alias: str = "", tag: str = "", team: str | None = None
    ) -> list[EventRef]:
        """Run an automation by hand for a version that exists already (team admins), e.g. to deploy the version
        holding ``production`` with an automation made today. The server records one manual event of the
        automation's type for that automation alone (outside its throttle and filters) and returns it: pass it to
        ``wait`` to follow what it started.

        ``version`` is ``model:vN`` or ``model:alias`` (``vN`` alone when the automation watches one model), or
        ``project/collection:vN`` for artifact events. ``alias`` names the alias of an alias event when the version
        is not named by it; ``tag`` is a tag event's tag. A disabled automation raises ``Conflict``.
        """
        body = {"version": version, "alias": alias, "tag": tag}
        answer = self.transport.json("POST", self._automation_path(automation_id, team) + "run/", json=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("events"), list):
            raise ServerError("The run answered no events.")
        return [EventRef.from_json(item) for item in answer["events"] if isinstance(item, dict)]

    def automation_runs(
        self, automation_id: int | str, *, outcome: str | None = None, team: str | None = None
    ) -> list[AutomationRun]:
        """The automation's history, newest first: each event it matched and what it did (``outcome``
        ``delivery`` or ``queued``, with how that went) or why it skipped it (``skipped``, e.g. its throttle)."""
        params = {"outcome": outcome} if outcome else {}
        rows = self.transport.pages(self._automation_path(automation_id, team) + "runs/", params=params)
        return [AutomationRun.from_json(row) for row in rows]

    def preview_automation(
        self, automation_id: int | str, *, event: str | None = None, team: str | None = None
    ) -> Preview:
        """What the automation would send for a past event of its type (default: the latest), sent nowhere: the
        webhook body with secrets as ``${NAME}``, or the launch job's config. To check a payload before it fires."""
        params = {"event": event} if event else None
        answer = self.transport.json("GET", self._automation_path(automation_id, team) + "preview/", params=params)
        return Preview.from_json(answer)

    def events(
        self,
        *,
        type: str | None = None,
        registered_model: str | None = None,
        limit: int | None = 100,
        team: str | None = None,
    ) -> list[Event]:
        """The team's events, newest first."""
        params = {k: v for k, v in (("type", type), ("registered_model", registered_model)) if v}
        rows = self.transport.pages(f"/teams/{seg(team or self.team)}/events/", params=params, limit=limit)
        return [Event.from_json(row) for row in rows]

    def event(self, event_id: str, *, team: str | None = None) -> Event:
        return Event.from_json(self.transport.json("GET", f"/teams/{seg(team or self.team)}/events/{seg(event_id)}/"))

    def deliveries(
        self,
        *,
        event: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        team: str | None = None,
    ) -> list[Delivery]:
        """Webhook deliveries, newest first (their URL and error for team admins only); ``event`` keeps those one
        event started."""
        params = {k: v for k, v in (("event", event), ("status", status)) if v}
        rows = self.transport.pages(f"/teams/{seg(team or self.team)}/deliveries/", params=params, limit=limit)
        return [Delivery.from_json(row) for row in rows]

    def items(
        self,
        *,
        event: str | None = None,
        queue: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        team: str | None = None,
    ) -> list[LaunchItem]:
        """Launch queue items: of one queue, or of the team (``event`` keeps those one event started)."""
        team = team or self.team
        params = {k: v for k, v in (("event", event), ("state", state)) if v}
        path = f"/teams/{seg(team)}/launch/queues/{seg(queue)}/items/" if queue else f"/teams/{seg(team)}/launch/items/"
        return [LaunchItem.from_json(row) for row in self.transport.pages(path, params=params, limit=limit)]

    def test_webhook(
        self, webhook_id: int | str, payload: Mapping[str, Any] | None = None, *, team: str | None = None
    ) -> dict[str, Any]:
        """Send ``payload`` once to the webhook through the delivery path (nothing recorded): the endpoint's
        ``status_code``, ``headers``, ``body``, ``duration_ms`` and ``error``."""
        path = f"/teams/{seg(team or self.team)}/webhooks/{seg(str(webhook_id))}/test/"
        answer = self.transport.json("POST", path, json={"payload": dict(payload or {})})
        if not isinstance(answer, dict):
            raise ServerError("The webhook test answered no result.")
        return answer

    # -- Waiting --

    def wait(
        self,
        change: Change,
        *,
        team: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        poll: float = 1.0,
        on_update: Callable[[Update], None] | None = None,
    ) -> WaitResult:
        """Wait until every delivery and launch item the change's events started has settled.

        ``change`` is what ``link``, ``add_alias``, ``log_artifact`` or ``run_automation`` returned, or event ids.
        Returns when all succeeded or finished; raises ``WaitFailed`` if any failed or was cancelled, ``TimedOut``
        after ``timeout`` seconds. ``on_update`` hears of each event, delivery and item as it appears or changes.
        """
        if isinstance(change, ArtifactVersion | ModelVersion):
            if "events" not in change.raw:
                raise ServerError("This server's answers do not name the events a change fired; wait on event ids.")
            team = team or change.team
            ids = [e.id for e in change.events]
        else:
            ids = [e if isinstance(e, str) else e.id for e in change]
        return wait_for(self, ids, team=team or self.team, timeout=timeout, poll=poll, on_update=on_update)
