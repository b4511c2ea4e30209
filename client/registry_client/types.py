"""What the API answers, as typed values. Each keeps the whole JSON it was read from in ``raw``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ServerError

__all__ = [
    "DELIVERY_SETTLED",
    "ITEM_SETTLED",
    "ApiToken",
    "ArtifactVersion",
    "Automation",
    "AutomationRun",
    "Delivery",
    "DownloadResult",
    "Event",
    "EventRef",
    "LaunchItem",
    "ManifestFile",
    "ManifestReference",
    "MissingFile",
    "ModelVersion",
    "Preview",
    "WaitResult",
]

# A delivery that is `retrying` has not settled: another attempt is due.
DELIVERY_SETTLED = ("succeeded", "failed")
DELIVERY_FAILED = ("failed",)
ITEM_SETTLED = ("finished", "failed", "cancelled")
ITEM_FAILED = ("failed", "cancelled")


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ServerError(f"The server's answer is not {what}: {str(data)[:200]!r}.")
    return data


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(data: dict[str, Any], key: str) -> bool:
    return data.get(key) is True


def _strs(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    return [str(item) for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _dicts(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class EventRef:
    """An event a change fired, as the change's answer names it."""

    id: str
    type: str
    alias: str | None = None
    tag: str | None = None
    manual: bool = False  # recorded to run one automation by hand

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRef:
        return cls(
            id=_str(data, "id"),
            type=_str(data, "type"),
            alias=_opt_str(data, "alias") or None,
            tag=_opt_str(data, "tag") or None,
            manual=_bool(data, "manual"),
        )


def _events(data: dict[str, Any]) -> list[EventRef]:
    return [EventRef.from_json(item) for item in _dicts(data, "events")]


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestFile:
        return cls(path=_str(data, "path"), size=_int(data, "size"), sha256=_str(data, "sha256"))


@dataclass(frozen=True)
class ManifestReference:
    """Bytes kept elsewhere: the client lists them, never fetches them."""

    path: str
    uri: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestReference:
        return cls(path=_str(data, "path"), uri=_str(data, "uri"), size=_int(data, "size"), sha256=_str(data, "sha256"))


@dataclass(frozen=True)
class MissingFile:
    sha256: str
    size: int
    paths: list[str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MissingFile:
        paths = data.get("paths")
        return cls(
            sha256=_str(data, "sha256"),
            size=_int(data, "size"),
            paths=[str(p) for p in paths] if isinstance(paths, list) else [],
        )


@dataclass(frozen=True)
class ArtifactVersion:
    """A version with its manifest. ``reference`` is ``team/project/collection:vN``."""

    id: str
    reference: str
    version: str
    project: str
    collection: str
    type: str
    state: str
    digest: str
    metadata: dict[str, Any]
    description: str
    created_by: str | None
    created_at: str | None
    committed_at: str | None
    uri: str
    files: list[ManifestFile]
    references: list[ManifestReference]
    missing: list[MissingFile]
    tags: list[str] = field(default_factory=list)
    events: list[EventRef] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def team(self) -> str:
        return self.reference.split("/", 1)[0]

    @property
    def committed(self) -> bool:
        return self.state == "committed"

    @classmethod
    def from_json(cls, data: Any) -> ArtifactVersion:
        data = _object(data, "an artifact version")
        if not data.get("reference") or not data.get("version"):
            raise ServerError(f"The server's answer is not an artifact version: {str(data)[:200]!r}.")
        metadata = data.get("metadata")
        return cls(
            id=_str(data, "id"),
            reference=_str(data, "reference"),
            version=_str(data, "version"),
            project=_str(data, "project"),
            collection=_str(data, "collection"),
            type=_str(data, "type"),
            state=_str(data, "state"),
            digest=_str(data, "digest"),
            metadata=metadata if isinstance(metadata, dict) else {},
            description=_str(data, "description"),
            created_by=_opt_str(data, "created_by"),
            created_at=_opt_str(data, "created_at"),
            committed_at=_opt_str(data, "committed_at"),
            uri=_str(data, "uri"),
            files=[ManifestFile.from_json(item) for item in _dicts(data, "files")],
            references=[ManifestReference.from_json(item) for item in _dicts(data, "references")],
            missing=[MissingFile.from_json(item) for item in _dicts(data, "missing")],
            tags=_strs(data, "tags"),
            events=_events(data),
            raw=data,
        )


@dataclass(frozen=True)
class ModelVersion:
    """A registered model's version: the artifact version linked there and the aliases on it."""

    registered_model: str
    version: str
    artifact: str
    artifact_id: str
    aliases: list[str]
    metadata: dict[str, Any]
    linked_by: str | None
    linked_at: str | None
    tags: list[str] = field(default_factory=list)  # its artifact version's
    events: list[EventRef] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def team(self) -> str:
        return self.artifact.split("/", 1)[0]

    @classmethod
    def from_json(cls, data: Any) -> ModelVersion:
        data = _object(data, "a model version")
        aliases = data.get("aliases")
        metadata = data.get("metadata")
        return cls(
            registered_model=_str(data, "registered_model"),
            version=_str(data, "version"),
            artifact=_str(data, "artifact"),
            artifact_id=_str(data, "artifact_id"),
            aliases=[str(a) for a in aliases] if isinstance(aliases, list) else [],
            tags=_strs(data, "tags"),
            metadata=metadata if isinstance(metadata, dict) else {},
            linked_by=_opt_str(data, "linked_by"),
            linked_at=_opt_str(data, "linked_at"),
            events=_events(data),
            raw=data,
        )


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    registered_model: str | None
    artifact: str
    version: str
    alias: str | None
    author: str
    created_at: str | None
    dispatched_at: str | None
    caused_by: str | None
    tag: str | None = None
    manual: bool = False  # recorded to run one automation by hand: ``automation``, alone
    automation: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dispatched(self) -> bool:
        return self.dispatched_at is not None

    @classmethod
    def from_json(cls, data: Any) -> Event:
        data = _object(data, "an event")
        return cls(
            id=_str(data, "id"),
            type=_str(data, "type"),
            registered_model=_opt_str(data, "registered_model"),
            artifact=_str(data, "artifact"),
            version=_str(data, "version"),
            alias=_opt_str(data, "alias") or None,
            tag=_opt_str(data, "tag") or None,
            author=_str(data, "author"),
            created_at=_opt_str(data, "created_at"),
            dispatched_at=_opt_str(data, "dispatched_at"),
            caused_by=_opt_str(data, "caused_by"),
            manual=_bool(data, "manual"),
            automation=_opt_int(data, "automation"),
            raw=data,
        )


@dataclass(frozen=True)
class Delivery:
    id: str
    status: str
    event: str
    event_type: str
    automation: int | None
    automation_name: str
    webhook: int | None
    webhook_name: str
    url: str
    attempt_count: int
    last_status_code: int | None
    last_error: str
    next_attempt_at: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def settled(self) -> bool:
        return self.status in DELIVERY_SETTLED

    @property
    def failed(self) -> bool:
        return self.status in DELIVERY_FAILED

    @classmethod
    def from_json(cls, data: Any) -> Delivery:
        data = _object(data, "a delivery")
        return cls(
            id=_str(data, "id"),
            status=_str(data, "status"),
            event=_str(data, "event"),
            event_type=_str(data, "event_type"),
            automation=_opt_int(data, "automation"),
            automation_name=_str(data, "automation_name"),
            webhook=_opt_int(data, "webhook"),
            webhook_name=_str(data, "webhook_name"),
            url=_str(data, "url"),
            attempt_count=_int(data, "attempt_count"),
            last_status_code=_opt_int(data, "last_status_code"),
            last_error=_str(data, "last_error"),
            next_attempt_at=_opt_str(data, "next_attempt_at"),
            raw=data,
        )


@dataclass(frozen=True)
class LaunchItem:
    id: str
    state: str
    queue: str
    job_version: str
    event: str | None
    automation: int | None
    automation_name: str
    agent: str | None
    exit_code: int | None
    reason: str
    log_tail: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def settled(self) -> bool:
        return self.state in ITEM_SETTLED

    @property
    def failed(self) -> bool:
        return self.state in ITEM_FAILED

    @classmethod
    def from_json(cls, data: Any) -> LaunchItem:
        data = _object(data, "a launch item")
        return cls(
            id=_str(data, "id"),
            state=_str(data, "state"),
            queue=_str(data, "queue"),
            job_version=_str(data, "job_version"),
            event=_opt_str(data, "event"),
            automation=_opt_int(data, "automation"),
            automation_name=_str(data, "automation_name"),
            agent=_opt_str(data, "agent"),
            exit_code=_opt_int(data, "exit_code"),
            reason=_str(data, "reason"),
            log_tail=_str(data, "log_tail"),
            raw=data,
        )


@dataclass(frozen=True)
class Automation:
    id: int | None
    name: str
    enabled: bool
    event_type: str
    action_type: str
    trigger_type: str
    action_name: str
    registered_model: str | None
    alias_regex: str | None
    # A filter expression in the MongoDB operator form ({} when none, or from a server without filters).
    filter: dict[str, Any] = field(default_factory=dict)
    # At most ``throttle_runs`` runs in any ``throttle_window`` seconds (None: no throttle). Runs by hand are outside.
    throttle_runs: int | None = None
    throttle_window: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Automation:
        data = _object(data, "an automation")
        return cls(
            id=_opt_int(data, "id"),
            name=_str(data, "name"),
            enabled=bool(data.get("enabled")),
            event_type=_str(data, "event_type"),
            action_type=_str(data, "action_type"),
            trigger_type=_str(data, "trigger_type"),
            action_name=_str(data, "action_name"),
            registered_model=_opt_str(data, "registered_model"),
            alias_regex=_opt_str(data, "alias_regex"),
            filter=data["filter"] if isinstance(data.get("filter"), dict) else {},
            throttle_runs=_opt_int(data, "throttle_runs"),
            throttle_window=_opt_int(data, "throttle_window"),
            raw=data,
        )


@dataclass(frozen=True)
class AutomationRun:
    """One entry of an automation's history: an event it matched and what it did with it. ``outcome`` is
    ``delivery`` (a webhook delivery, with its status), ``queued`` (a launch item, with its state) or ``skipped``
    (``reason`` says why, e.g. its throttle)."""

    id: int | None
    created_at: str | None
    event: str
    event_type: str
    version: str
    manual: bool
    outcome: str
    reason: str
    delivery: str | None
    delivery_status: str | None
    item: str | None
    item_state: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> AutomationRun:
        data = _object(data, "an automation run")
        return cls(
            id=_opt_int(data, "id"),
            created_at=_opt_str(data, "created_at"),
            event=_str(data, "event"),
            event_type=_str(data, "event_type"),
            version=_str(data, "version"),
            manual=_bool(data, "manual"),
            outcome=_str(data, "outcome"),
            reason=_str(data, "reason"),
            delivery=_opt_str(data, "delivery"),
            delivery_status=_opt_str(data, "delivery_status"),
            item=_opt_str(data, "item"),
            item_state=_opt_str(data, "item_state"),
            raw=data,
        )


@dataclass(frozen=True)
class Preview:
    """What an automation would send for a past event, rendered by the server and sent nowhere: a webhook's
    ``body`` (secrets shown as ``${NAME}``), or a launch job's ``config``."""

    event: str
    event_type: str
    version: str
    body: str | None = None
    config: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Preview:
        data = _object(data, "a preview")
        config = data.get("config")
        return cls(
            event=_str(data, "event"),
            event_type=_str(data, "event_type"),
            version=_str(data, "version"),
            body=_opt_str(data, "body"),
            config=config if isinstance(config, dict) else None,
            raw=data,
        )


@dataclass(frozen=True)
class DownloadResult:
    """What ``download`` did: files written, files already there with the right SHA-256, and the references
    (listed with their URIs, not fetched)."""

    version: ArtifactVersion
    directory: str
    written: list[str]
    unchanged: list[str]
    references: list[ManifestReference]


@dataclass
class WaitResult:
    """Everything the events started, as last seen: every delivery and launch item has settled."""

    events: list[Event]
    deliveries: list[Delivery]
    items: list[LaunchItem]

    @property
    def failures(self) -> list[Delivery | LaunchItem]:
        return [d for d in self.deliveries if d.failed] + [i for i in self.items if i.failed]


@dataclass(frozen=True)
class ApiToken:
    """One of your API tokens as the server lists it: never its value."""

    id: int
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> ApiToken:
        data = _object(data, "an API token")
        return cls(
            id=_int(data, "id"),
            name=_str(data, "name"),
            prefix=_str(data, "prefix"),
            created_at=_str(data, "created_at"),
            last_used_at=_opt_str(data, "last_used_at"),
            raw=data,
        )
